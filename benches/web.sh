#!/usr/bin/env bash
# Two measurements, loopback only, wrk with keep-alive:
#  1. static: one 1 KiB file from lb's `web` section next to nginx serving the
#     same file from the same directory, one worker each, interleaved rounds; ratio web/nginx.
#  2. app: GET /api/items/KEY through the whole foobar topology (frontend ->
#     web -> app -> kv replica), lb with its default threads.
#
# Usage: benches/web.sh [ROUNDS] [SECONDS]      (defaults: 3 rounds, 5 s)
# Env: CONNS (50), WRK_THREADS (1), FILE_BYTES (1024)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-5}
CONNS=${CONNS:-50}
WRK_THREADS=${WRK_THREADS:-1}
FILE_BYTES=${FILE_BYTES:-1024}
for t in wrk nginx curl; do
    command -v $t >/dev/null || [ -x /usr/sbin/$t ] || { echo "missing $t (apt-get install -y wrk nginx curl)"; exit 1; }
done
cargo build --release -q
. benches/lib.sh

mkdir -p "$dir/www" "$dir/tmp"
head -c "$FILE_BYTES" /dev/zero | tr '\0' 'x' > "$dir/www/file.txt"

PN=$(free_port)
nginx_static "$PN" "$dir/www" "include /etc/nginx/mime.types; keepalive_requests 1000000;"

PW=$(free_port)
cat > "$dir/web.conf" <<CONF
global
    nbthread 1
web bench
    bind 127.0.0.1:$PW
    root $dir/www
CONF
./target/release/lb --conf "$dir/web.conf" >/dev/null 2>&1 &
pids+=($!)
wait_port "$PW"

run() { # url -> requests/s
    wrk -t"$WRK_THREADS" -c"$CONNS" -d"${SECS}s" "$1" > "$dir/wrk.out"
    if grep -q "Non-2xx" "$dir/wrk.out"; then echo "errors:" >&2; cat "$dir/wrk.out" >&2; exit 1; fi
    awk '/Requests\/sec/ {print $2}' "$dir/wrk.out"
}

declare -A total=([web]="" [nginx]="")
declare -A url=([web]="http://127.0.0.1:$PW/file.txt" [nginx]="http://127.0.0.1:$PN/file.txt")
for n in web nginx; do run "${url[$n]}" >/dev/null; done  # warm up
for r in $(seq "$ROUNDS"); do
    for n in web nginx; do
        rps=$(run "${url[$n]}")
        total[$n]="${total[$n]} $rps"
        echo "round $r $n $rps" >&2
    done
done
w=$(echo "${total[web]}" | median)
g=$(echo "${total[nginx]}" | median)
kill "${pids[@]}" 2>/dev/null || true
wait 2>/dev/null || true
pids=()

# The whole topology: conf/foobar.conf with free ports and an absolute root.
declare -A P
for p in 8080 8081 8082 9001 9002 6379 6380; do P[$p]=$(free_port); done
sed -e "s|root www|root $PWD/conf/www|" conf/foobar.conf > "$dir/foobar.conf"
for p in "${!P[@]}"; do sed -i "s/127.0.0.1:$p\b/127.0.0.1:${P[$p]}/" "$dir/foobar.conf"; done
./target/release/lb --conf "$dir/foobar.conf" >/dev/null 2>&1 &
pids+=($!)
wait_port "${P[8080]}"
FRONT="http://127.0.0.1:${P[8080]}"
curl -sf -X PUT --data-binary 'hello' "$FRONT/api/items/bench" >/dev/null
curl -sf "$FRONT/api/items/bench" >/dev/null
app=""
run "$FRONT/api/items/bench" >/dev/null  # warm up
for r in $(seq "$ROUNDS"); do
    rps=$(run "$FRONT/api/items/bench")
    app="$app $rps"
    echo "round $r topology-app $rps" >&2
done
a=$(echo "$app" | median)

echo
echo "wrk -t$WRK_THREADS -c$CONNS -d${SECS}s, keep-alive, median of $ROUNDS interleaved rounds, $(nproc) cores"
echo "| what | requests/s | ratio |"
echo "|---|---:|---:|"
printf "| nginx, 1 worker, %s B static file | %.0f | 1.00x |\n" "$FILE_BYTES" "$g"
printf "| lb web, 1 thread, same file | %.0f | %.2fx |\n" "$w" "$(echo "$w / $g" | bc -l)"
printf "| GET /api/items/bench through conf/foobar.conf (lb -> web -> app -> kv replica) | %.0f | |\n" "$a"
