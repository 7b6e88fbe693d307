# Shared by the bench scripts (sourced, not run): a scratch directory and the
# processes to stop on exit, a free loopback port, waiting for a port, medians.
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened"; exit 1; }
# Median of whitespace-separated numbers on stdin (the lower middle one for an even count).
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Idle and total clock ticks of each core, for `core_idle` (DETAIL=1 output).
cores() { awk '/^cpu[0-9]/ {printf "%d %d ", $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
# The share of the cores left idle between two `cores` readings, together and
# each: "12.5% (per core 4% 21%)".
core_idle() {
    echo "$1|$2" | awk -F'|' '{ n = split($1, a, " "); split($2, b, " "); s = ""; idle = 0; all = 0;
        for (i = 1; i < n; i += 2) {
            s = s sprintf("%s%.0f%%", s == "" ? "" : " ", 100 * (b[i] - a[i]) / (b[i + 1] - a[i + 1]));
            idle += b[i] - a[i]; all += b[i + 1] - a[i + 1] }
        printf "%.1f%% (per core %s)\n", 100 * idle / all, s }'
}
# A one-worker nginx serving the static files under ROOT on PORT (stopped on
# exit): nginx_static PORT ROOT [MORE http-block lines].
nginx_static() {
    mkdir -p "$dir/tmp"
    cat > "$dir/nginx-$1.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
error_log $dir/nginx-$1.err;
pid $dir/nginx-$1.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/tmp; proxy_temp_path $dir/tmp; fastcgi_temp_path $dir/tmp;
  uwsgi_temp_path $dir/tmp; scgi_temp_path $dir/tmp;
  ${3:-}
  server { listen 127.0.0.1:$1; root $2; }
}
CONF
    "$(command -v nginx || echo /usr/sbin/nginx)" -c "$dir/nginx-$1.conf" -p "$dir" &
    pids+=($!)
    wait_port "$1"
}
