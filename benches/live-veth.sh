#!/bin/sh
# Highest tcpreplay rate (packets/s) that `portent live` takes on a veth pair with no drop
# (kernel ring or our queue). Needs root, ip netns and tcpreplay. Not a test: a measurement.
#   benches/live-veth.sh [capture.pcap] [rates...]
# PORTENT=path/to/portent (default: target/release/portent, else target/debug/portent).
# LOOPS=n replays the capture n times per step (default 200).
set -eu
cd "$(dirname "$0")/.."
PCAP=${1:-captures/dns-calc.pcap}
[ $# -gt 0 ] && shift
RATES=${*:-"1000 2000 5000 10000 20000 50000 100000 200000"}
LOOPS=${LOOPS:-200}
BIN=${PORTENT:-target/release/portent}
[ -x "$BIN" ] || BIN=target/debug/portent
[ -x "$BIN" ] || { echo "build portent first (cargo build --release)"; exit 2; }
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)"; exit 2; }

A=pbench-$$-a B=pbench-$$-b VA=pb$$a VB=pb$$b
TMP=$(mktemp -d)
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
    ip netns del "$A" 2>/dev/null || true
    ip netns del "$B" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
ip netns add "$A"; ip netns add "$B"
ip link add "$VA" netns "$A" type veth peer name "$VB" netns "$B"
ip -n "$A" link set "$VA" up; ip -n "$B" link set "$VB" up

best=0
for pps in $RATES; do
    rm -f "$TMP"/*.ndjson
    ip netns exec "$A" "$BIN" live -i "$VA" --bpf "" -q -a /dev/null \
        --stats "$TMP/stats.ndjson" --stats-interval 0 &
    PID=$!
    sleep 1
    ip netns exec "$B" tcpreplay -q -i "$VB" --pps "$pps" --loop "$LOOPS" "$PCAP" >"$TMP/tcpreplay.txt" 2>&1
    sleep 0.5
    kill -TERM "$PID"; wait "$PID" || true; PID=
    line=$(tail -1 "$TMP/stats.ndjson")
    read -r sent got kdrop qdrop <<EOT
$(printf '%s' "$line" | python3 -c '
import json,sys
r=json.loads(sys.stdin.read()); i=list(r["interfaces"].values())[0]
print(r["packets"], i["captured"], i["pcap_dropped"], i["queue_dropped_packets"])' | sed "s/^[0-9]*/$(grep -o 'Actual: [0-9]* packets' "$TMP/tcpreplay.txt" | grep -o '[0-9]*' | head -1)/")
EOT
    echo "pps=$pps sent=$sent captured=$got kernel_dropped=$kdrop queue_dropped=$qdrop"
    if [ "$kdrop" = 0 ] && [ "$qdrop" = 0 ] && [ "$got" -ge "$sent" ]; then best=$pps; else break; fi
done
echo "highest rate with no drops: $best packets/s ($BIN, $PCAP x$LOOPS per step)"
