# phases.gp - the two phases of input, measured: median time per segment, one bar per model.
# Data: plots/run-all's phases.dat (from loadgen -c 1 --think MS runs).
load 'plots/common.gp'
set multiplot title "Where one request's time goes (median µs, 1 connection, client pauses before each request)"
set style data histogram
set style histogram rowstacked
set style fill solid 0.85 border -1
set boxwidth 0.6
set xtics rotate by -45 left
set ylabel 'microseconds'
set bmargin at screen 0.1
set tmargin at screen 0.86
set yrange [0:*]
unset key
set title 'all phases: waiting for data dominates'
set lmargin at screen 0.10
set rmargin at screen 0.40
plot datafile using 2:xtic(1) lc rgb '#c7c7c7', '' using 3 lc rgb '#ff7f0e', \
     '' using 4 lc rgb '#9467bd', '' using 5 lc rgb '#1f77b4', '' using 6 lc rgb '#2ca02c'
set title 'without the wait: told, then copying'
set lmargin at screen 0.49
set rmargin at screen 0.75
set key at screen 0.76, screen 0.8 left top vertical Left reverse samplen 2 spacing 1.3
plot datafile using (0/0) title 'wait for data' with boxes lc rgb '#c7c7c7', \
     '' using 3:xtic(1) title 'notification' lc rgb '#ff7f0e', \
     '' using 4 title 'dispatch' lc rgb '#9467bd', \
     '' using 5 title 'copy data' lc rgb '#1f77b4', \
     '' using 6 title 'processing' lc rgb '#2ca02c'
unset multiplot
