#!/usr/bin/env bash
# Line-rate benchmark: whole-process replay of one capture by portent (2 threads and 1),
# against tcpdump (read and write back), tshark (DNS names; on a prefix, it is slow) and a
# bare read of the file. Median of RUNS runs each, with a warm page cache; portent, tcpdump
# and the bare read take turns run by run. Each row has wall and CPU seconds: on a shared or
# virtual machine the CPU time (user + system) is the steadier of the two. When a
# profile-guided build is there (scripts/build-pgo.sh; PORTENT_PGO names another), it takes
# its turns beside the plain one.
#
#   benches/replay.sh [FILE]
#   RUNS=5 SIZE_MB=1000 benches/replay.sh          # generates /tmp/portent-bench.pcap if absent
#   TSHARK_PACKETS=20000 RESULTS=benches/RESULTS.md benches/replay.sh FILE
#
# Needs: target/release/portent (built if missing), /usr/bin/time, capinfos, editcap,
# tcpdump, tshark. A missing tool skips its row. Writes the table to standard output and
# into RESULTS (between the replay markers; the rest of that file is kept).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=${RUNS:-5}
SIZE_MB=${SIZE_MB:-1000}
SEED=${SEED:-1}
TSHARK_PACKETS=${TSHARK_PACKETS:-20000}
RESULTS=${RESULTS:-$ROOT/benches/RESULTS.md}
FILE=${1:-/tmp/portent-bench.pcap}
PORTENT=${PORTENT:-$ROOT/target/release/portent}
GEN=$ROOT/target/release/examples/gen_capture
WORK=$(mktemp -d /tmp/portent-bench.XXXXXX)
ALERTS=/tmp/portent-bench-alerts.ndjson
trap 'rm -rf "$WORK"' EXIT

say() { printf '%s\n' "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }

if [[ ! -x /usr/bin/time ]]; then
    say "installing time (for peak RSS)"
    apt-get install -y time >/dev/null
fi
if [[ ! -x $PORTENT ]]; then
    say "building portent (release)"
    (cd "$ROOT" && cargo build --release --bin portent)
fi
if [[ ! -s $FILE ]]; then
    if [[ ! -x $GEN ]]; then
        say "building gen_capture (release)"
        (cd "$ROOT" && cargo build --release --example gen_capture)
    fi
    say "generating $FILE (~$SIZE_MB MB, seed $SEED)"
    "$GEN" --out "$FILE" --size-mb "$SIZE_MB" --seed "$SEED"
fi

BYTES=$(stat -c %s "$FILE")
# Other work on the machine skews every row; the table records how busy it was.
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "warming the page cache"
cat "$FILE" >/dev/null
if have capinfos; then
    PACKETS=$(capinfos -M -c "$FILE" | awk -F: '/Number of packets/ {gsub(/ /, "", $2); print $2}')
else
    "$PORTENT" replay --threads 1 -q --alerts /dev/null --summary-json "$WORK/s.json" "$FILE"
    PACKETS=$(grep -o '"packets": *[0-9]*' "$WORK/s.json" | head -1 | grep -o '[0-9]*$')
fi
say "$FILE: $PACKETS packets, $BYTES bytes; $RUNS runs each"

# median, cpu_split
source "$ROOT/benches/lib.sh"

# run_once NAME CMD: runs CMD once (a shell string, so redirections work) and records its wall
# seconds (from a nanosecond clock), its CPU seconds (user + system, its children included)
# and its peak RSS in KiB. summarize NAME: the medians of what run_once recorded.
declare -A WALL RSS CPUS
key() { printf '%s' "$1" | tr -c 'a-zA-Z0-9' '_'; }
run_once() {
    local k t0 t1
    k=$(key "$1")
    t0=$(date +%s%N)
    /usr/bin/time -f "%M %U %S" -o "$WORK/time" bash -c "$2"
    t1=$(date +%s%N)
    echo "$(((t1 - t0) / 1000)) 1000000" | awk '{printf "%.6f\n", $1 / $2}' >>"$WORK/$k.wall"
    tail -1 "$WORK/time" | awk '{print $1}' >>"$WORK/$k.rss"
    tail -1 "$WORK/time" | awk '{printf "%.2f\n", $2 + $3}' >>"$WORK/$k.cpu"
}
summarize() {
    local k
    k=$(key "$1")
    WALL[$1]=$(median <"$WORK/$k.wall")
    RSS[$1]=$(median <"$WORK/$k.rss")
    CPUS[$1]=$(median <"$WORK/$k.cpu")
    say "$(printf '%-28s median %8.3f s, cpu %5.2f s  (runs: %s)  rss %s KiB' "$1" "${WALL[$1]}" \
        "${CPUS[$1]}" "$(tr '\n' ' ' <"$WORK/$k.wall")" "${RSS[$1]}")"
}
# measure NAME CMD: RUNS runs of one command, one after another.
measure() {
    local i
    for ((i = 0; i < RUNS; i++)); do run_once "$1" "$2"; done
    summarize "$1"
}

declare -A NPKT NBYTE
# portent, tcpdump and the bare read take turns, round by round, so that a slow spell of a
# shared machine falls on all of them rather than on one row: their ratios are the result.
declare -A CMD
CMD["portent --threads 2"]="'$PORTENT' replay --threads 2 -q --alerts $ALERTS --summary-json '$WORK/summary2.json' '$FILE'"
CMD["portent --threads 1"]="'$PORTENT' replay --threads 1 -q --alerts $ALERTS --summary-json '$WORK/summary1.json' '$FILE'"
SIDE=("portent --threads 2" "portent --threads 1")
# The profile-guided build (scripts/build-pgo.sh), when there is one, takes its turns too.
PGO=${PORTENT_PGO:-$ROOT/target/pgo/release/portent}
PGO_FROM=""
if [[ -x $PGO ]]; then
    PGO_FROM=$(cat "$(dirname "$(dirname "$PGO")")/COMMIT" 2>/dev/null || echo "an unknown commit")
    CMD["portent PGO --threads 2"]="'$PGO' replay --threads 2 -q --alerts $ALERTS '$FILE'"
    CMD["portent PGO --threads 1"]="'$PGO' replay --threads 1 -q --alerts $ALERTS '$FILE'"
    SIDE+=("portent PGO --threads 2" "portent PGO --threads 1")
    say "also timing the PGO build $PGO (built from $PGO_FROM)"
fi
if have tcpdump; then
    CMD["tcpdump -r -w /dev/null"]="tcpdump -r '$FILE' -w /dev/null 2>/dev/null"
    SIDE+=("tcpdump -r -w /dev/null")
fi
CMD["cat > /dev/null"]="cat '$FILE' >/dev/null"
SIDE+=("cat > /dev/null")
for ((round = 0; round < RUNS; round++)); do
    # Each run writes a new alerts file, as a replay into a fresh output does: truncating the
    # last run's file made ext4 drop its pages at open and flush the new ones at close
    # (auto_da_alloc), about 15 ms of portent's time that no other row pays.
    for r in "${SIDE[@]}"; do
        [[ $r == portent* ]] && rm -f "$ALERTS"
        run_once "$r" "${CMD[$r]}"
    done
    cpu_split "$WORK/summary2.json" >>"$WORK/split2"
    cpu_split "$WORK/summary1.json" >>"$WORK/split1"
done
# The medians of each thread's CPU seconds: reader, workers (summed), output.
split_median() {
    local f=$1
    for c in 1 2 3; do awk -v c=$c '{print $c}' "$f" | median; done | tr '\n' ' '
}
read -r R2 W2 O2 <<<"$(split_median "$WORK/split2")"
read -r R1 W1 O1 <<<"$(split_median "$WORK/split1")"
for r in "${SIDE[@]}"; do
    summarize "$r"
    NPKT[$r]=$PACKETS
    NBYTE[$r]=$BYTES
done
ALERT_LINES=$(wc -l <"$ALERTS")
TSHARK_ROW=""
if have tshark && have editcap; then
    PREFIX=$WORK/prefix.pcap
    editcap -r "$FILE" "$PREFIX" "1-$TSHARK_PACKETS"
    cat "$PREFIX" >/dev/null
    TSHARK_ROW="tshark -Y dns (prefix)"
    measure "$TSHARK_ROW" "tshark -r '$PREFIX' -Y dns -T fields -e dns.qry.name >/dev/null 2>&1"
    NPKT[$TSHARK_ROW]=$(capinfos -M -c "$PREFIX" | awk -F: '/Number of packets/ {gsub(/ /, "", $2); print $2}')
    NBYTE[$TSHARK_ROW]=$(stat -c %s "$PREFIX")
    # tshark spends about a second registering dissectors before the first packet; time it on
    # a one-packet file and subtract, for the steady-state rate.
    editcap -r "$FILE" "$WORK/one.pcap" 1
    measure "tshark start-up (1 packet)" "tshark -r '$WORK/one.pcap' -Y dns -T fields -e dns.qry.name >/dev/null 2>&1"
    TSHARK_SS="tshark -Y dns (prefix, minus start-up)"
    WALL[$TSHARK_SS]=$(awk -v a="${WALL[$TSHARK_ROW]}" -v b="${WALL["tshark start-up (1 packet)"]}" \
        'BEGIN {d = a - b; printf "%.6f", (d > 0.001) ? d : 0.001}')
    RSS[$TSHARK_SS]=${RSS[$TSHARK_ROW]}
    CPUS[$TSHARK_SS]=$(awk -v a="${CPUS[$TSHARK_ROW]}" -v b="${CPUS["tshark start-up (1 packet)"]}" \
        'BEGIN {d = a - b; printf "%.2f", (d > 0.01) ? d : 0.01}')
    NPKT[$TSHARK_SS]=$((NPKT[$TSHARK_ROW] - 1))
    NBYTE[$TSHARK_SS]=${NBYTE[$TSHARK_ROW]}
fi

pps() { awk -v p="${NPKT[$1]}" -v w="${WALL[$1]}" 'BEGIN {printf "%.0f", p / w}'; }
gbps() { awk -v b="${NBYTE[$1]}" -v w="${WALL[$1]}" 'BEGIN {printf "%.2f", b * 8 / w / 1e9}'; }
ratio() { awk -v a="$(pps "$1")" -v b="$(pps "$2")" 'BEGIN {printf "%.2f", a / b}'; }

ROWS=("portent --threads 2" "portent --threads 1")
[[ -n $PGO_FROM ]] && ROWS+=("portent PGO --threads 2" "portent PGO --threads 1")
[[ -n ${WALL["tcpdump -r -w /dev/null"]:-} ]] && ROWS+=("tcpdump -r -w /dev/null")
[[ -n $TSHARK_ROW ]] && ROWS+=("$TSHARK_ROW" "$TSHARK_SS")
ROWS+=("cat > /dev/null")

COMMIT=$(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet HEAD -- src Cargo.toml || echo "+dirty")
CPU=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
MEM=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
{
    echo "<!-- replay:begin (written by benches/replay.sh) -->"
    echo "### Replay, $(date -u +%Y-%m-%dT%H:%MZ), portent $COMMIT"
    echo
    echo "Machine: $(nproc) CPUs ($CPU), $MEM; $(uname -sr); load average $LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at end."
    echo "Capture: \`$FILE\`, $PACKETS packets, $BYTES bytes; page cache warm; median of $RUNS runs; portent, tcpdump and cat take turns run by run."
    echo "portent raised $ALERT_LINES alert lines on it."
    echo
    echo "| command | wall s (median) | CPU s, user + system (median) | packets/s | Gbit/s (file bytes) | peak RSS MiB |"
    echo "|---|---:|---:|---:|---:|---:|"
    for r in "${ROWS[@]}"; do
        printf '| %s | %.3f | %.2f | %s | %s | %.1f |\n' "$r" "${WALL[$r]}" "${CPUS[$r]}" "$(pps "$r")" "$(gbps "$r")" \
            "$(awk -v k="${RSS[$r]}" 'BEGIN {print k / 1024}')"
    done
    echo
    echo "Ratios of packets/s: portent(2 threads)/tcpdump $(
        [[ -n ${WALL["tcpdump -r -w /dev/null"]:-} ]] && ratio "portent --threads 2" "tcpdump -r -w /dev/null" || echo n/a
    ), portent(2 threads)/tshark $(
        [[ -n $TSHARK_ROW ]] && ratio "portent --threads 2" "$TSHARK_ROW" || echo n/a
    ) (against tshark's steady state $(
        [[ -n $TSHARK_ROW ]] && ratio "portent --threads 2" "$TSHARK_SS" || echo n/a
    )), threads 2/threads 1 $(ratio "portent --threads 2" "portent --threads 1")."
    if [[ -n $PGO_FROM ]]; then
        echo
        echo "The PGO build (\`scripts/build-pgo.sh\`, from $PGO_FROM): $(ratio "portent PGO --threads 2" "portent --threads 2")x the plain build's packets/s at 2 threads,"
        echo "$(ratio "portent PGO --threads 1" "portent --threads 1")x at 1; portent PGO(2 threads)/tcpdump $(
            [[ -n ${WALL["tcpdump -r -w /dev/null"]:-} ]] && ratio "portent PGO --threads 2" "tcpdump -r -w /dev/null" || echo n/a
        ), threads 2/threads 1 $(ratio "portent PGO --threads 2" "portent PGO --threads 1")."
    fi
    echo
    echo "CPU seconds by thread (medians, from portent's summary): --threads 2 reader $R2, workers $W2 (summed), output $O2;"
    echo "--threads 1 reader $R1, worker $W1, output $O1. --threads 1 cannot end before its one worker has done its $W1 s,"
    echo "nor --threads 2 before $(nproc) CPUs have done all $(awk -v a="$R2" -v b="$W2" -v c="$O2" 'BEGIN {printf "%.3f", a + b + c}') s of its threads: on this machine threads 2/threads 1"
    echo "is at most $(nproc) x $W1 / that = $(awk -v n="$(nproc)" -v w="$W1" -v a="$R2" -v b="$W2" -v c="$O2" 'BEGIN {printf "%.2f", n * w / (a + b + c)}')."
    if [[ -n $TSHARK_ROW ]]; then
        echo
        echo "tshark ran on the first ${NPKT[$TSHARK_ROW]} packets (${NBYTE[$TSHARK_ROW]} bytes, \`editcap -r FILE prefix 1-$TSHARK_PACKETS\`);"
        echo "its packets/s and Gbit/s are scaled from that prefix. The first tshark row includes its start-up (dissector registration,"
        echo "${WALL["tshark start-up (1 packet)"]} s on a one-packet file), which understates tshark on a long capture; the second row subtracts it."
        echo "portent's rows include its own start-up too (a few ms)."
    fi
    echo "<!-- replay:end -->"
} >"$WORK/section.md"

cat "$WORK/section.md"
if [[ -f $RESULTS ]] && grep -q '<!-- replay:begin' "$RESULTS"; then
    awk -v sec="$WORK/section.md" '
        /<!-- replay:begin/ {while ((getline l < sec) > 0) print l; skip = 1; next}
        /<!-- replay:end -->/ {skip = 0; next}
        !skip {print}' "$RESULTS" >"$WORK/results.md"
    cp "$WORK/results.md" "$RESULTS"
else
    { echo "# portent benchmark results"; echo; cat "$WORK/section.md"; } >>"$RESULTS"
fi
say "wrote $RESULTS"
