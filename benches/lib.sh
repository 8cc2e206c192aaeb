# Helpers shared by benches/replay.sh and benches/ab.sh (sourced, not run).

# median: the median of the numbers on standard input, one per line (the mean of the middle
# two for an even count).
median() { sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

# cpu_split SUMMARY: the reader's, all workers' (summed) and the output's CPU seconds from
# portent's --summary-json (`cpu_seconds`), or "- - -" for a build from before the thread
# clocks.
cpu_split() {
    { grep -o '"cpu_seconds":{[^}]*}' "$1" || true; } | tr '{}[],:' '      ' | awk '
        {
            for (i = 1; i <= NF; i++) {
                if ($i == "\"reader\"") r = $(i + 1)
                else if ($i == "\"output\"") o = $(i + 1)
                else if ($i == "\"workers\"") for (j = i + 1; j <= NF && $j ~ /^[0-9.e+-]+$/; j++) w += $j
            }
            found = 1
        }
        END { if (found) printf "%.3f %.3f %.3f\n", r, w, o; else print "- - -" }'
}
