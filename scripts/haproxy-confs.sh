#!/bin/sh
# haproxy-confs.sh DIR [LB]: runs `lb check` on every DIR/*.cfg (public HAProxy
# confs kept outside the project, see DIR/SOURCES.md) and prints the tally.
# Certificate paths are rewritten by DIR/with-paths.sh when it exists; with
# HAProxy installed, `haproxy -c` runs on the same file for comparison.
dir=${1:?usage: haproxy-confs.sh DIR [LB]}
lb=${2:-$(dirname "$0")/../target/debug/lb}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok=0; n=0
for f in "$dir"/*.cfg; do
  n=$((n + 1))
  if [ -x "$dir/with-paths.sh" ]; then p=$("$dir/with-paths.sh" "$f" "$tmp"); else p=$f; fi
  hap=-
  if command -v haproxy >/dev/null; then
    if haproxy -c -q -f "$p" >/dev/null 2>&1; then hap=ok; else hap=FAIL; fi
  fi
  if out=$("$lb" check "$p" 2>&1); then
    ok=$((ok + 1)); printf 'ok    (haproxy %s) %s\n' "$hap" "$(basename "$f")"
  else
    printf 'FAIL  (haproxy %s) %s\n' "$hap" "$(basename "$f")"
    echo "$out" | grep -v '^warning' | sed "s#$tmp/##; s/^/      /" | head -${LINES_PER_FILE:-8}
  fi
done
echo "lb check: $ok of $n load"
