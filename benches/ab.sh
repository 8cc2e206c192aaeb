#!/usr/bin/env bash
# A/B of portent builds on one capture: is a change faster, and does it write the same thing?
#
#   benches/ab.sh [-n ROUNDS] [-t THREADS] FILE BASE CANDIDATE...
#   benches/ab.sh -n 15 -t 2 /tmp/portent-bench.pcap /tmp/portent-main target/release/portent
#
# First every CANDIDATE must write byte for byte BASE's alerts and DNS log on FILE at THREADS
# (a difference is reported and the script exits 1: a faster build that writes something else
# is not a speed-up). Then the builds take turns, ROUNDS rounds, so that a slow spell of a
# shared machine falls on all of them; the table gives the medians of the wall time and of
# each thread's CPU time from portent's own summary (`cpu_seconds`: reader, workers summed,
# output), and each candidate's change against BASE. On this project's VM the machine's speed
# moves by 20-30% over minutes: compare builds within one run, and trust 10+ rounds.
set -euo pipefail

ROUNDS=11
THREADS=2
while getopts "n:t:" opt; do
    case $opt in
        n) ROUNDS=$OPTARG ;;
        t) THREADS=$OPTARG ;;
        *) sed -n '2,13p' "$0" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
if [[ $# -lt 3 ]]; then
    sed -n '2,13p' "$0" >&2
    exit 2
fi
FILE=$1
shift
BINS=("$@")
[[ -r $FILE ]] || { echo "ab: cannot read $FILE" >&2; exit 2; }
for b in "${BINS[@]}"; do
    [[ -x $b ]] || { echo "ab: $b is not an executable" >&2; exit 2; }
done
# median, cpu_split
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
WORK=$(mktemp -d /tmp/portent-ab.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

cat "$FILE" >/dev/null
echo "ab: checking that every build writes what ${BINS[0]} writes (--threads $THREADS)" >&2
"${BINS[0]}" replay -q --threads "$THREADS" -a "$WORK/base-a" --dns-log "$WORK/base-d" "$FILE"
same=1
for ((i = 1; i < ${#BINS[@]}; i++)); do
    "${BINS[i]}" replay -q --threads "$THREADS" -a "$WORK/a" --dns-log "$WORK/d" "$FILE"
    for kind in a d; do
        if ! cmp -s "$WORK/base-$kind" "$WORK/$kind"; then
            echo "ab: ${BINS[i]} writes other $([[ $kind == a ]] && echo alerts || echo "DNS log records") than ${BINS[0]}" >&2
            same=0
        fi
    done
done
[[ $same == 1 ]] || exit 1

# One line per run: wall seconds, reader, workers (summed) and output CPU seconds.
run() {
    local out=$1 bin=$2 t0 t1
    rm -f "$WORK/run-a"
    t0=$(date +%s%N)
    "$bin" replay -q --threads "$THREADS" -a "$WORK/run-a" --summary-json "$WORK/s.json" "$FILE"
    t1=$(date +%s%N)
    echo "$(awk -v w="$(((t1 - t0) / 1000))" 'BEGIN {printf "%.6f", w / 1e6}') $(cpu_split "$WORK/s.json")" >>"$out"
}
echo "ab: $ROUNDS rounds in turns, --threads $THREADS, $FILE" >&2
for ((r = 0; r < ROUNDS; r++)); do
    for ((i = 0; i < ${#BINS[@]}; i++)); do
        run "$WORK/runs-$i" "${BINS[i]}"
    done
done

col() {
    if awk -v c="$2" '$c == "-" {bad = 1} END {exit !bad}' "$1"; then
        echo -
    else
        awk -v c="$2" '{print $c}' "$1" | median
    fi
}
f3() { awk -v x="$1" 'BEGIN {if (x == "-") print x; else printf "%.3f", x}'; }
# The last 40 characters of a path, for the table.
tail40() { local s=$1; ((${#s} > 40)) && s=${s:${#s}-40}; printf '%s' "$s"; }
printf '%-40s %9s %9s %9s %9s %8s %8s\n' build "wall s" "reader s" "workers s" "output s" "wall" "workers"
for ((i = 0; i < ${#BINS[@]}; i++)); do
    read -r w rd wk o <<<"$(for c in 1 2 3 4; do col "$WORK/runs-$i" $c; done | tr '\n' ' ')"
    if ((i == 0)); then
        bw=$w bwk=$wk
        dw="" dwk=""
    else
        dw=$(awk -v a="$w" -v b="$bw" 'BEGIN {printf "%+.1f%%", (a / b - 1) * 100}')
        dwk=$(awk -v a="$wk" -v b="$bwk" 'BEGIN {if (a == "-" || b == "-") print "-"; else printf "%+.1f%%", (a / b - 1) * 100}')
    fi
    printf '%-40s %9.3f %9s %9s %9s %8s %8s\n' "$(tail40 "${BINS[i]}")" "$w" "$(f3 "$rd")" "$(f3 "$wk")" "$(f3 "$o")" "$dw" "$dwk"
done
