#!/usr/bin/env bash
# Kafka benchmark: records/s from a line-rate replay to a real broker (tansu on 127.0.0.1),
# alerts and every DNS transaction record (--kafka-dns-topic), against the same replay
# writing the DNS log to a file. Median of RUNS runs; the records are read back once with a
# real consumer and counted, so the figure is for records the broker holds.
#
#   benches/kafka.sh [FILE]
#   RUNS=3 SIZE_MB=1000 benches/kafka.sh                # generates /tmp/portent-kafka-bench.pcap if absent
#   RESULTS=benches/RESULTS.md benches/kafka.sh FILE
#
# Needs: target/release/portent (built if missing, with the default `kafka` feature), the
# tansu broker (scripts/build-tansu.sh), python3 with confluent-kafka (for the count).
# Writes a table to standard output and into RESULTS between the kafka markers.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${RUNS:-3}
SIZE_MB=${SIZE_MB:-1000}
THREADS=${THREADS:-2}
RESULTS=${RESULTS:-$ROOT/benches/RESULTS.md}
FILE=${1:-/tmp/portent-kafka-bench.pcap}
PORTENT=${PORTENT:-$ROOT/target/release/portent}
GEN=$ROOT/target/release/examples/gen_capture
WORK=$(mktemp -d /tmp/portent-kafka-bench.XXXXXX)
BROKER_PID=
cleanup() {
    [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
say() { printf '%s\n' "$*" >&2; }

TANSU=$("$ROOT/scripts/build-tansu.sh")
if [ ! -x "$PORTENT" ] || [ ! -x "$GEN" ]; then
    say "building portent and gen_capture (release)"
    (cd "$ROOT" && cargo build --release --bin portent --example gen_capture)
fi
if [ ! -f "$FILE" ]; then
    say "generating $FILE ($SIZE_MB MB)"
    "$GEN" --out "$FILE" --size-mb "$SIZE_MB" --seed 1 >&2
fi
python3 -c "import confluent_kafka" 2>/dev/null || { say "kafka.sh: pip install confluent-kafka first"; exit 1; }

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$TANSU" broker --listener-url "tcp://127.0.0.1:$PORT" --advertised-listener-url "tcp://127.0.0.1:$PORT" \
    --storage-engine memory://tansu/ >"$WORK/tansu.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done

# One run: wall seconds and the summary JSON. $1: tag, rest: extra flags.
run() {
    local tag=$1
    shift
    local t0 t1
    t0=$(date +%s.%N)
    "$PORTENT" replay "$FILE" -q --threads "$THREADS" -a "$WORK/alerts.ndjson" --summary-json "$WORK/$tag.json" "$@"
    t1=$(date +%s.%N)
    python3 -c "print(f'{$t1 - $t0:.3f}')"
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

say "file output only (--dns-log to a file), $RUNS runs"
for i in $(seq "$RUNS"); do run file --dns-log "$WORK/dns.ndjson"; done >"$WORK/file.times"
say "Kafka: alerts and DNS records to the broker, $RUNS runs (each to fresh topics)"
: >"$WORK/kafka.times"
for i in $(seq "$RUNS"); do
    "$TANSU" topic create --broker "tcp://127.0.0.1:$PORT" --partitions 3 "bench-alerts-$i" >/dev/null
    "$TANSU" topic create --broker "tcp://127.0.0.1:$PORT" --partitions 3 "bench-dns-$i" >/dev/null
    rm -rf "$WORK/spool"
    run "kafka-$i" --kafka-brokers "127.0.0.1:$PORT" --kafka-alerts-topic "bench-alerts-$i" \
        --kafka-dns-topic "bench-dns-$i" --kafka-spool-dir "$WORK/spool" >>"$WORK/kafka.times"
done

alerts=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['alerts']['total'])" "$WORK/kafka-1.json")
# The file run wrote every DNS record; the Kafka runs must have delivered as many.
dns=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['dns_log_records'])" "$WORK/file.json")
packets=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['packets'])" "$WORK/kafka-1.json")
kfig=$(python3 -c "import json,sys; k=json.load(open(sys.argv[1]))['kafka']; print(k['delivered']['alerts'], k['delivered']['dns'], k['delivered_bytes'], k['spooled']['alerts']+k['spooled']['dns'], k['dropped_spool_full']['alerts']+k['dropped_spool_full']['dns'])" "$WORK/kafka-1.json")
read -r d_alerts d_dns d_bytes spooled dropped <<<"$kfig"
say "reading run 1's topics back"
read_back=$(python3 "$ROOT/tests/kafka_consume.py" "127.0.0.1:$PORT" "bench-alerts-1=$alerts" "bench-dns-1=$dns" \
    --timeout 300 --grace 2 | wc -l)

tf=$(median <"$WORK/file.times")
tk=$(median <"$WORK/kafka.times")
records=$((alerts + dns))
rate() { python3 -c "print(f'{$1 / $2:,.0f}')"; }
table=$(cat <<TABLE
### Kafka output, $(date -u +%Y-%m-%dT%H:%MZ), portent $(cd "$ROOT" && git rev-parse --short HEAD)

Machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; broker: tansu (in-memory) on the same machine.
Capture: \`$FILE\`, $packets packets; replay \`--threads $THREADS\`; median of $RUNS runs.
Per run: $alerts alerts and $dns DNS transaction records ($records records); run 1 delivered
$d_alerts alerts and $d_dns DNS records ($d_bytes bytes before lz4), spooled $spooled, dropped $dropped; a
consumer read $read_back records back from run 1's topics.

| run | wall s (median) | packets/s | records/s |
|---|---:|---:|---:|
| DNS log and alerts to files | $tf | $(rate "$packets" "$tf") | $(rate "$records" "$tf") |
| alerts and DNS records to Kafka (and alerts to a file) | $tk | $(rate "$packets" "$tk") | $(rate "$records" "$tk") |
TABLE
)
printf '%s\n' "$table"
if [ -f "$RESULTS" ]; then
    python3 - "$RESULTS" "$table" <<'PY'
import sys
path, table = sys.argv[1], sys.argv[2]
text = open(path).read()
begin, end = "<!-- kafka:begin (written by benches/kafka.sh) -->", "<!-- kafka:end -->"
block = begin + "\n" + table + "\n" + end
if begin in text and end in text:
    text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
else:
    text = text.rstrip("\n") + "\n\n" + block + "\n"
open(path, "w").write(text)
PY
fi
