#!/usr/bin/env bash
# HTTP keep-alive requests/s: lb, HAProxy and nginx as reverse proxies, one worker
# thread each, in front of the same two nginx backends, driven by wrk in several
# interleaved rounds. Prints a table with the ratio to HAProxy. Loopback only.
#
# Rows: lb as shipped (default conf: io_uring, proven at start), lb-defer (the
# ring mode only when asked, `tune.io-uring defer-taskrun`), lb-epoll (`tune.io-uring off`), HAProxy, nginx as a
# proxy, and direct (wrk to one nginx backend, no proxy).
# Usage: benches/compare.sh [ROUNDS] [SECONDS]      (defaults: 3 rounds, 5 s)
# Env: CONNS (50), WRK_THREADS (1), FILE_BYTES (1024), LB_OLD, EXTRA and DETAIL (below),
# THREADS (1): worker threads of lb and HAProxy (`nbthread`); the nginx proxy stays
# at one worker (`master_process off` runs one).
# CONNS may be a list ("50 200"): one whole run, with its own table, per value.
# PIN=CPU pins every proxy to that CPU (`taskset`, all threads, each proxy alike), as
# HAProxy's `cpu-map` would; wrk and the backends stay free. Unset: nothing pinned.
# HTTP/2 (when h2load is installed, Debian's nghttp2-client; H2=0 skips it): lb and
# HAProxy with `bind ... proto h2` (h2c) in front of the same two backends,
# `h2load -c $H2_CONNS -m $H2_STREAMS -t 1 -n $H2_REQUESTS` (50, 10, 200000), ROUNDS
# interleaved rounds, req/s and CPU per request. H2_ONLY=1 runs only this part.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-5}
CONNS=${CONNS:-50}
if [ "$CONNS" != "${CONNS%% *}" ]; then
    for c in $CONNS; do CONNS=$c "$0" "$@"; done
    exit
fi
WRK_THREADS=${WRK_THREADS:-1}
THREADS=${THREADS:-1}
FILE_BYTES=${FILE_BYTES:-1024}
for t in wrk nginx haproxy; do
    command -v $t >/dev/null || [ -x /usr/sbin/$t ] || { echo "missing $t (apt-get install -y wrk nginx haproxy)"; exit 1; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
cargo build --release -q
. benches/lib.sh

mkdir -p "$dir/www" "$dir/tmp"
head -c "$FILE_BYTES" /dev/zero | tr '\0' 'x' > "$dir/www/file.txt"

nginx_conf() { # name, port, body
    cat > "$dir/$1.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
error_log $dir/$1.err;
pid $dir/$1.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/tmp; proxy_temp_path $dir/tmp; fastcgi_temp_path $dir/tmp;
  uwsgi_temp_path $dir/tmp; scgi_temp_path $dir/tmp;
  keepalive_requests 1000000;
  $3
}
CONF
    "$NGINX" -c "$dir/$1.conf" -p "$dir" &
    pids+=($!)
    wait_port "$2"
}

B1=$(free_port); B2=$(free_port)
nginx_conf backend1 "$B1" "server { listen 127.0.0.1:$B1; root $dir/www; }"
nginx_conf backend2 "$B2" "server { listen 127.0.0.1:$B2; root $dir/www; }"

# nginx as the reverse proxy.
PN=$(free_port)
nginx_conf proxy "$PN" "upstream b { server 127.0.0.1:$B1; server 127.0.0.1:$B2; keepalive $((CONNS > 64 ? CONNS : 64)); }
  server { listen 127.0.0.1:$PN; location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"

# HAProxy.
PH=$(free_port)
cat > "$dir/haproxy.cfg" <<CONF
global
    nbthread $THREADS
    maxconn 4000
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    http-reuse safe
frontend f
    bind 127.0.0.1:$PH
    default_backend b
backend b
    balance roundrobin
    server s1 127.0.0.1:$B1
    server s2 127.0.0.1:$B2
CONF
"$HAPROXY" -db -f "$dir/haproxy.cfg" >/dev/null 2>&1 &
pids+=($!)
HPID=$!
wait_port "$PH"

# lb.
PL=$(free_port)
cat > "$dir/lb.conf" <<CONF
global
    nbthread $THREADS
defaults
    mode http
frontend f
    bind 127.0.0.1:$PL
    default_backend b
backend b
    balance roundrobin
    server s1 127.0.0.1:$B1
    server s2 127.0.0.1:$B2
CONF
./target/release/lb --conf "$dir/lb.conf" >/dev/null 2>&1 &
pids+=($!)
LPID=$!
wait_port "$PL"

# The same lb with `tune.io-uring $1`; sets VPORT and VPID.
lb_variant() {
    VPORT=$(free_port)
    sed -e "s/127.0.0.1:$PL/127.0.0.1:$VPORT/" -e "s/nbthread $THREADS/nbthread $THREADS\n    tune.io-uring $1/" "$dir/lb.conf" > "$dir/lb-$1.conf"
    ./target/release/lb --conf "$dir/lb-$1.conf" >/dev/null 2>&1 &
    pids+=($!)
    VPID=$!
    wait_port "$VPORT"
}
# Its epoll data path (also the fallback when `signal` fails its start-up proof),
# and the other ring mode, used only when asked (docs/operations.md).
lb_variant off
PE=$VPORT EPID=$VPID
lb_variant defer-taskrun
PS=$VPORT SPID=$VPID

declare -A total cpu
# direct: wrk straight to one nginx backend, no proxy: the ceiling a proxy is
# measured against at one connection.
names=(lb lb-defer lb-epoll haproxy nginx direct)
declare -A port=([lb]=$PL [lb-defer]=$PS [lb-epoll]=$PE [haproxy]=$PH [nginx]=$PN [direct]=$B1)
# LB_OLD=path/to/lb adds another lb build to the same run (regression checks).
if [ -n "${LB_OLD:-}" ]; then
    PO=$(free_port)
    sed "s/127.0.0.1:$PL/127.0.0.1:$PO/" "$dir/lb.conf" > "$dir/lb-old.conf"
    "$LB_OLD" --conf "$dir/lb-old.conf" >/dev/null 2>&1 &
    pids+=($!)
    OPID=$!
    wait_port "$PO"
    names=(lb lb-old lb-defer lb-epoll haproxy nginx direct)
    port[lb-old]=$PO
fi
# EXTRA=path/to/binary adds an experimental proxy started as
# `binary 127.0.0.1:PORT 127.0.0.1:B1 127.0.0.1:B2` (see experiments/uring-ceiling).
if [ -n "${EXTRA:-}" ]; then
    PX=$(free_port)
    "$EXTRA" "127.0.0.1:$PX" "127.0.0.1:$B1" "127.0.0.1:$B2" >/dev/null 2>&1 &
    pids+=($!)
    XPID=$!
    wait_port "$PX"
    names+=(extra)
    port[extra]=$PX
fi
NPID=$(cat "$dir/proxy.pid")
declare -A pid=([lb]=$LPID [lb-defer]=$SPID [lb-epoll]=$EPID [haproxy]=$HPID [nginx]=$NPID [direct]=$(cat "$dir/backend1.pid"))
[ -n "${LB_OLD:-}" ] && pid[lb-old]=$OPID
[ -n "${EXTRA:-}" ] && pid[extra]=$XPID
if [ -n "${PIN:-}" ]; then
    for n in "${names[@]}"; do [ "$n" = direct ] || taskset -a -p -c "$PIN" "${pid[$n]}" >/dev/null; done
fi
# CPU time (user+system, clock ticks) of a process: efficiency next to throughput,
# since on a small shared machine the proxy is not the only thing that limits req/s.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
# DETAIL=1 also prints, per round, where the machine's CPU went: wrk's and the two
# backends' CPU µs per request and the share of the cores left idle, together and
# each (see README).
backends() { echo $(( $(ticks "$(cat "$dir/backend1.pid")") + $(ticks "$(cat "$dir/backend2.pid")") )); }
run() { # port -> requests/s
    if [ -n "${DETAIL:-}" ]; then
        local b0 c0 b1 c1 rps
        b0=$(backends); c0=$(cores)
        perf stat -x, -e task-clock -o "$dir/wrk.perf" \
            wrk -t"$WRK_THREADS" -c"$CONNS" -d"${SECS}s" "http://127.0.0.1:$1/file.txt" > "$dir/wrk.out"
        b1=$(backends); c1=$(cores)
        rps=$(awk '/Requests\/sec/ {print $2}' "$dir/wrk.out")
        echo "$b0 $b1 $(cut -d, -f1 "$dir/wrk.perf" | grep -E '^[0-9.]+$') $rps $HZ $SECS" | awk -v idle="$(core_idle "$c0" "$c1")" '{
            printf "  detail: idle %s, wrk %.2f µs/request, backends %.2f µs/request\n",
                idle, $3 * 1000 / ($4 * $6), ($2 - $1) / $5 * 1e6 / ($4 * $6) }' > "$dir/detail"
        echo "$rps"
        return
    fi
    wrk -t"$WRK_THREADS" -c"$CONNS" -d"${SECS}s" --latency "http://127.0.0.1:$1/file.txt" > "$dir/wrk.out"
    if grep -q "Non-2xx" "$dir/wrk.out"; then echo "errors:" >&2; cat "$dir/wrk.out" >&2; fi
    awk '/Requests\/sec/ {print $2}' "$dir/wrk.out"
}
# The proxy's CPU time comes from `perf stat -e task-clock` when perf is installed,
# else from /proc's utime+stime. The two agree for HAProxy, nginx and lb-epoll; for
# lb on io_uring, task-clock reads 8-15% more than the scheduler charges (not steal
# time; cause unknown). The higher figure is the one that cannot flatter lb.
PERF=$(command -v perf || true)
run_cpu() { # name -> "req/s cpu-µs-per-request"
    local t0 t1 rps pp="" ms=""
    rm -f "$dir/proxy.perf"
    if [ -n "$PERF" ]; then
        "$PERF" stat -x, -e task-clock -p "${pid[$1]}" -o "$dir/proxy.perf" 2>/dev/null &
        pp=$!
    fi
    t0=$(ticks "${pid[$1]}")
    rps=$(run "${port[$1]}")
    t1=$(ticks "${pid[$1]}")
    if [ -n "$pp" ]; then
        kill -INT "$pp" 2>/dev/null || true
        wait "$pp" || true
        ms=$(grep task-clock "$dir/proxy.perf" 2>/dev/null | cut -d, -f1 | grep -E '^[0-9.]+$' || true)
    fi
    if [ -n "$ms" ]; then
        echo "$rps $(echo "$ms * 1000 / ($rps * $SECS)" | bc -l)"
    else
        echo "$rps $(echo "($t1 - $t0) / $HZ * 1000000 / ($rps * $SECS)" | bc -l)"
    fi
}
if [ -z "${H2_ONLY:-}" ]; then
for n in "${names[@]}"; do total[$n]=""; cpu[$n]=""; run "${port[$n]}" >/dev/null; done  # warm up
for r in $(seq "$ROUNDS"); do
    for n in "${names[@]}"; do
        read -r rps us <<<"$(run_cpu "$n")"
        total[$n]="${total[$n]} $rps"
        cpu[$n]="${cpu[$n]} $us"
        echo "round $r $n $rps req/s, $us CPU µs/request" >&2
        if [ -n "${DETAIL:-}" ]; then cat "$dir/detail" >&2; fi
    done
done
h=$(echo "${total[haproxy]}" | median)
hc=$(echo "${cpu[haproxy]}" | median)
d=$(echo "${total[direct]}" | median)
echo
echo "HTTP keep-alive, $THREADS worker thread(s) each${PIN:+, pinned to CPU $PIN}, 2 nginx backends, ${FILE_BYTES} B file, wrk -t$WRK_THREADS -c$CONNS -d${SECS}s, median of $ROUNDS interleaved rounds"
echo "| proxy | requests/s | vs HAProxy | vs direct | proxy CPU µs/request | HAProxy's CPU per request / this one's |"
echo "|---|---:|---:|---:|---:|---:|"
for n in "${names[@]}"; do
    m=$(echo "${total[$n]}" | median)
    c=$(echo "${cpu[$n]}" | median)
    printf "| %s | %.0f | %.2fx | %.2fx | %.1f | %.2fx |\n" "$n" "$m" "$(echo "$m / $h" | bc -l)" "$(echo "$m / $d" | bc -l)" "$c" "$(echo "$hc / $c" | bc -l)"
done
fi

# HTTP/2 to the proxy (h2c, prior knowledge), HTTP/1.1 to the backends.
if [ "${H2:-1}" != 0 ] && command -v h2load >/dev/null; then
    H2_CONNS=${H2_CONNS:-50}
    H2_STREAMS=${H2_STREAMS:-10}
    H2_REQUESTS=${H2_REQUESTS:-200000}
    P2L=$(free_port)
    sed "s/bind 127.0.0.1:$PL\$/bind 127.0.0.1:$P2L proto h2/" "$dir/lb.conf" > "$dir/lb-h2.conf"
    ./target/release/lb --conf "$dir/lb-h2.conf" >/dev/null 2>&1 &
    pids+=($!)
    P2LPID=$!
    P2H=$(free_port)
    sed "s/bind 127.0.0.1:$PH\$/bind 127.0.0.1:$P2H proto h2/" "$dir/haproxy.cfg" > "$dir/haproxy-h2.cfg"
    "$HAPROXY" -db -f "$dir/haproxy-h2.cfg" >/dev/null 2>&1 &
    pids+=($!)
    P2HPID=$!
    wait_port "$P2L"
    wait_port "$P2H"
    if [ -n "${PIN:-}" ]; then
        for p in "$P2LPID" "$P2HPID"; do taskset -a -p -c "$PIN" "$p" >/dev/null; done
    fi
    H2LOAD="h2load -c $H2_CONNS -m $H2_STREAMS -t 1 -n $H2_REQUESTS"
    h2_run() { # pid port -> "req/s cpu-µs-per-request"
        local t0 t1 rps ok pp="" ms=""
        rm -f "$dir/proxy.perf"
        if [ -n "$PERF" ]; then
            "$PERF" stat -x, -e task-clock -p "$1" -o "$dir/proxy.perf" 2>/dev/null &
            pp=$!
        fi
        t0=$(ticks "$1")
        $H2LOAD "http://127.0.0.1:$2/file.txt" > "$dir/h2load.out"
        t1=$(ticks "$1")
        if [ -n "$pp" ]; then
            kill -INT "$pp" 2>/dev/null || true
            wait "$pp" || true
            ms=$(grep task-clock "$dir/proxy.perf" 2>/dev/null | cut -d, -f1 | grep -E '^[0-9.]+$' || true)
        fi
        rps=$(awk '/^finished in/ {print $4}' "$dir/h2load.out")
        ok=$(awk '/^requests:/ {print $8}' "$dir/h2load.out")
        if [ "$ok" != "$H2_REQUESTS" ]; then echo "h2load: $ok of $H2_REQUESTS succeeded:" >&2; cat "$dir/h2load.out" >&2; fi
        if grep -q "status codes: 0 2xx" "$dir/h2load.out"; then echo "h2load: no 2xx" >&2; fi
        if [ -n "$ms" ]; then
            echo "$rps $(echo "$ms * 1000 / $H2_REQUESTS" | bc -l)"
        else
            echo "$rps $(echo "($t1 - $t0) / $HZ * 1000000 / $H2_REQUESTS" | bc -l)"
        fi
    }
    h2names=(lb haproxy)
    declare -A h2pid=([lb]=$P2LPID [haproxy]=$P2HPID) h2port=([lb]=$P2L [haproxy]=$P2H) h2total h2cpu
    for n in "${h2names[@]}"; do h2total[$n]=""; h2cpu[$n]=""; h2_run "${h2pid[$n]}" "${h2port[$n]}" >/dev/null; done  # warm up
    for r in $(seq "$ROUNDS"); do
        for n in "${h2names[@]}"; do
            read -r rps us <<<"$(h2_run "${h2pid[$n]}" "${h2port[$n]}")"
            h2total[$n]="${h2total[$n]} $rps"
            h2cpu[$n]="${h2cpu[$n]} $us"
            echo "h2 round $r $n $rps req/s, $us CPU µs/request" >&2
        done
    done
    h=$(echo "${h2total[haproxy]}" | median)
    hc=$(echo "${h2cpu[haproxy]}" | median)
    echo
    echo "HTTP/2 (h2c, \`bind ... proto h2\`) to the proxy, HTTP/1.1 to 2 nginx backends, $THREADS worker thread(s) each${PIN:+, pinned to CPU $PIN}, ${FILE_BYTES} B file, $H2LOAD, median of $ROUNDS interleaved rounds"
    echo "| proxy | requests/s | vs HAProxy | proxy CPU µs/request | HAProxy's CPU per request / this one's |"
    echo "|---|---:|---:|---:|---:|"
    for n in "${h2names[@]}"; do
        m=$(echo "${h2total[$n]}" | median)
        c=$(echo "${h2cpu[$n]}" | median)
        printf "| %s | %.0f | %.2fx | %.1f | %.2fx |\n" "$n" "$m" "$(echo "$m / $h" | bc -l)" "$c" "$(echo "$hc / $c" | bc -l)"
    done
elif [ "${H2:-1}" != 0 ]; then
    echo
    echo "HTTP/2: skipped (no h2load: apt-get install -y nghttp2-client)"
fi
