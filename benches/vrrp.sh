#!/usr/bin/env bash
# VRRP failover gaps: lb vs keepalived, in network namespaces (needs root, iproute2, keepalived).
#
# Usage: benches/vrrp.sh [ROUNDS]     (default 5)
# Runs tests/vrrp.rs ROUNDS times, one test at a time (so the scenarios of a round
# share the machine's state), and collects the longest gap the client saw in each
# failover scenario: a client requests the virtual address every 10 ms; the master
# is killed with SIGKILL and its link taken down (or sent SIGTERM); advert interval
# 100 ms everywhere (lb `advert-int 100ms`, keepalived `advert_int 0.1`), masters at
# priority 150, backups at 100. Prints the median and worst gap per scenario and
# fails when an lb takeover's worst gap reaches 1 s (the bar of issue 23).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-5}
command -v keepalived >/dev/null || { echo "vrrp.sh: keepalived not found (apt-get install keepalived)" >&2; exit 1; }
command -v ip >/dev/null || { echo "vrrp.sh: ip not found (apt-get install iproute2)" >&2; exit 1; }

cargo build --quiet --tests
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in $(seq "$ROUNDS"); do
    cargo test --quiet --test vrrp -- --nocapture --test-threads=1 2>&1 | grep -o 'vrrp-gap .*' >>"$out" || true
done
if [ ! -s "$out" ]; then
    echo "vrrp.sh: no gap measured (tests skipped: not root, no namespaces?)" >&2
    exit 1
fi

echo "| scenario | rounds | median gap (s) | worst gap (s) |"
echo "|---|---:|---:|---:|"
fail=0
sed -E 's/^vrrp-gap (.*): ([0-9.]+) s$/\1\t\2/' "$out" | sort -t$'\t' -k1,1 -k2,2n |
    awk -F'\t' '
    { v[$1] = v[$1] " " $2; n[$1]++ }
    END {
        for (k in v) {
            split(substr(v[k], 2), a, " ");
            m = a[int((n[k] + 1) / 2)];
            print k "\t" n[k] "\t" m "\t" a[n[k]];
        }
    }' | sort | while IFS=$'\t' read -r name n med worst; do
        echo "| $name | $n | $med | $worst |"
    done
# The bar: every takeover by lb under 1 s.
if awk '/lb backup takes over|a takes its address/ { if ($NF == "s" && $(NF-1) + 0 >= 1.0) bad = 1 } END { exit !bad }' "$out"; then
    echo "vrrp.sh: an lb takeover took 1 s or more" >&2
    fail=1
fi
exit $fail
