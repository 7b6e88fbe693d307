#!/bin/bash
# Checks an nftables ruleset (default: conf/examples/nftables-lb.nft) in two throwaway network namespaces joined by a veth pair:
# 80/443 open from outside, 9000 and anything else closed from outside, everything open over loopback. Needs root; changes nothing on the host.
# Usage: sudo conf/examples/nftables-lb-check.sh [RULESET]
set -u
A=edgefw-srv; B=edgefw-cli
ip netns add $A && ip netns add $B || exit 2
trap 'ip netns del $A; ip netns del $B' EXIT
ip link add edgefw0 type veth peer name edgefw1
ip link set edgefw0 netns $A; ip link set edgefw1 netns $B
ip -n $A addr add 10.99.0.1/24 dev edgefw0; ip -n $B addr add 10.99.0.2/24 dev edgefw1
ip -n $A link set edgefw0 up; ip -n $B link set edgefw1 up; ip -n $A link set lo up; ip -n $B link set lo up
ip netns exec $A nft -f "${1:-conf/examples/nftables-lb.nft}" || exit 3
# listeners on 80, 443, 9000 and 8080 in the server namespace
ip netns exec $A python3 -c '
import socket, threading, time
def serve(p):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", p)); s.listen()
    while True:
        c, _ = s.accept(); c.close()
for p in (80, 443, 9000, 8080):
    threading.Thread(target=serve, args=(p,), daemon=True).start()
time.sleep(8)
' &
LPID=$!
probe() { # namespace host port -> open|closed
  ip netns exec "$1" python3 -c '
import socket, sys
s = socket.socket(); s.settimeout(1)
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); print("open")
except Exception:
    print("closed")' "$2" "$3"
}
fail=0
check() { got=$(probe "$1" "$2" "$3"); [ "$got" = "$4" ] && echo "ok   $1 -> $2:$3 $got" || { echo "FAIL $1 -> $2:$3 $got (want $4)"; fail=1; }; }
# wait until the listeners are up (bounded)
for i in $(seq 50); do [ "$(probe $A 127.0.0.1 9000)" = open ] && break; done
check $B 10.99.0.1 80 open
check $B 10.99.0.1 443 open
check $B 10.99.0.1 9000 closed
check $B 10.99.0.1 8080 closed
check $A 127.0.0.1 9000 open
check $A 127.0.0.1 8080 open
kill $LPID 2>/dev/null; wait $LPID 2>/dev/null
exit $fail
