#!/usr/bin/env bash
# Plots the newest benchmark results (bench/results/<date>.tsv and
# <date>-freshness.tsv) with gnuplot: docs/bench-throughput.png (events/s
# per contender per workload) and docs/bench-freshness.png (event-to-visible
# latency of each probe over time, rebuild marked).
#   bash bench/plot.sh [bench/results/<date>.tsv]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v gnuplot >/dev/null || { echo "plot.sh: gnuplot not installed, no plots" >&2; exit 0; }
TSV=${1:-$(ls bench/results/*.tsv | grep -v -e soak -e freshness | sort | tail -n 1)}
FRESH=${TSV%.tsv}-freshness.tsv
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# One row per workload, one column per contender (M events/s).
perl -F'\t' -lane '
  next if $. == 1;
  push @w, $F[0] unless $seen_w{$F[0]}++;
  push @c, $F[1] unless $seen_c{$F[1]}++;
  $r{$F[0]}{$F[1]} = $F[4] / 1e6;
  END {
    print join("\t", "workload", @c);
    for my $w (@w) { print join("\t", $w, map { $r{$w}{$_} // "NaN" } @c) }
  }' "$TSV" > "$TMP/rates.tsv"
ncols=$(head -n 1 "$TMP/rates.tsv" | awk -F'\t' '{print NF}')
# a run of freshness and replay only (BENCH_ONLY=none) has no throughput to draw
[ "$(wc -l < "$TMP/rates.tsv")" -gt 1 ] && [ "$ncols" -gt 1 ] && gnuplot <<GP
set terminal png size 1100,520 noenhanced
set output 'docs/bench-throughput.png'
set title "Throughput per contender and workload (M events/s, medians; $(basename "$TSV" .tsv))"
set datafile separator "\t"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key outside right top vertical
set ylabel "M events/s"
set grid ytics
set yrange [0:*]
plot for [i=2:$ncols] '$TMP/rates.tsv' using i:xtic(1) title columnheader(i)
GP
if [ -f "$FRESH" ]; then
    gnuplot <<GP
set terminal png size 900,450 noenhanced
set output 'docs/bench-freshness.png'
set title "Event-to-visible latency of probe events at a steady rate ($(basename "$TSV" .tsv))"
set datafile separator "\t"
set xlabel "seconds since the stream started"
set ylabel "ms"
set grid
set key top left
plot '$FRESH' using 1:(\$3 == 0 ? \$2 : 1/0) with points pt 7 ps 0.6 title "steady", \
     '$FRESH' using 1:(\$3 == 1 ? \$2 : 1/0) with points pt 7 ps 0.6 title "while a rebuild replays", \
     '$FRESH' using 1:(\$3 == 2 ? \$2 : 1/0) with points pt 7 ps 0.6 title "while a new view fills"
GP
fi
echo "plots: docs/bench-throughput.png${FRESH:+ docs/bench-freshness.png}"
