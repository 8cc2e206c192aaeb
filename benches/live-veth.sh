#!/bin/sh
# Highest tcpreplay rate (packets/s) that `portent live` takes on a veth pair with no drop
# (kernel ring or our queue). Needs root, ip netns and tcpreplay. Not a test: a measurement.
#   benches/live-veth.sh [capture.pcap] [rates...]
# PORTENT=path/to/portent (default: target/release/portent, else target/debug/portent).
# LOOPS=n replays the capture n times per step (default 200). BPF=default uses portent's
# own capture filter instead of none (for an edge mix such as gen_capture's).
# Prints, per step, the rate tcpreplay reached (on a 2-CPU machine it tops out well under
# what is asked), drops, and the CPU of portent and of its capture thread over the step.
set -eu
cd "$(dirname "$0")/.."
PCAP=${1:-captures/dns-calc.pcap}
[ $# -gt 0 ] && shift
RATES=${*:-"1000 2000 5000 10000 20000 50000 100000 200000"}
LOOPS=${LOOPS:-200}
# The capture filter: none by default (every packet of the capture is one the detectors
# want); BPF=default leaves portent its own.
BPF=${BPF-}
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

# CPU ticks (user + system) of a process or thread, from /proc.
ticks() { awk '{print $14 + $15}' "$1/stat" 2>/dev/null || echo 0; }
hz=$(getconf CLK_TCK)

best=0
for pps in $RATES; do
    rm -f "$TMP"/*.ndjson
    if [ "$BPF" = default ]; then
        ip netns exec "$A" "$BIN" live -i "$VA" -q -a /dev/null --stats "$TMP/stats.ndjson" --stats-interval 0 &
    else
        ip netns exec "$A" "$BIN" live -i "$VA" --bpf "$BPF" -q -a /dev/null \
            --stats "$TMP/stats.ndjson" --stats-interval 0 &
    fi
    PID=$!
    sleep 1
    # The capture thread of the one interface, by its name.
    CAP=$(grep -l '^portent-cap' /proc/$PID/task/*/comm 2>/dev/null | head -1 | xargs -r dirname)
    p0=$(ticks /proc/$PID); c0=$(ticks "${CAP:-/nonexistent}"); t0=$(date +%s.%N)
    ip netns exec "$B" tcpreplay -q -i "$VB" --pps "$pps" --loop "$LOOPS" "$PCAP" >"$TMP/tcpreplay.txt" 2>&1
    p1=$(ticks /proc/$PID); c1=$(ticks "${CAP:-/nonexistent}"); t1=$(date +%s.%N)
    sleep 0.5
    kill -TERM "$PID"; wait "$PID" || true; PID=
    line=$(tail -1 "$TMP/stats.ndjson")
    read -r got kdrop qdrop <<EOT
$(printf '%s' "$line" | python3 -c '
import json,sys
r=json.loads(sys.stdin.read()); i=list(r["interfaces"].values())[0]
print(i["captured"], i["pcap_dropped"], i["queue_dropped_packets"])')
EOT
    sent=$(grep -o 'Actual: [0-9]* packets' "$TMP/tcpreplay.txt" | grep -o '[0-9]*' | head -1)
    # What tcpreplay reached, which on a small machine can be well under what was asked.
    actual=$(grep -o '[0-9.]* pps' "$TMP/tcpreplay.txt" | head -1 | cut -d' ' -f1)
    cpu=$(echo "$p0 $p1 $c0 $c1 $t0 $t1 $hz" | awk '{s = $6 - $5; printf "%.0f%% %.0f%%", 100 * ($2 - $1) / $7 / s, 100 * ($4 - $3) / $7 / s}')
    echo "asked=$pps actual_pps=${actual%.*} sent=$sent captured=$got kernel_dropped=$kdrop queue_dropped=$qdrop cpu(portent, capture thread)=$cpu"
    # With a filter, fewer packets reach portent than were sent; the drop counters say it all.
    if [ "$kdrop" = 0 ] && [ "$qdrop" = 0 ] && { [ -n "$BPF" ] || [ "$got" -ge "$sent" ]; }; then
        [ "${actual%.*}" -gt "$best" ] && best=${actual%.*}
    else
        break
    fi
done
echo "highest rate with no drops: $best packets/s as tcpreplay measured it ($BIN, $PCAP x$LOOPS per step, filter: ${BPF:-none})"
