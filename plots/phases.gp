# phases.gp - the two phases of input, measured: median time per segment, one bar per model.
# Data: plots/run-all's phases.dat (from loadgen -c 1 --think MS runs).
load 'plots/common.gp'
set multiplot layout 1,2 title "Where one request's time goes (median µs, 1 connection, client pauses before each request)"
set style data histogram
set style histogram rowstacked
set style fill solid 0.85 border -1
set boxwidth 0.6
set ylabel 'microseconds'
set key top left inside
set title 'all phases: waiting for data dominates'
plot datafile using 2:xtic(1) title 'wait for data' lc rgb '#c7c7c7', \
     '' using 3 title 'notification' lc rgb '#ff7f0e', \
     '' using 4 title 'dispatch' lc rgb '#9467bd', \
     '' using 5 title 'copy data' lc rgb '#1f77b4', \
     '' using 6 title 'processing' lc rgb '#2ca02c'
set title 'without the wait: learning of the data, and copying it'
plot datafile using 3:xtic(1) title 'notification' lc rgb '#ff7f0e', \
     '' using 4 title 'dispatch' lc rgb '#9467bd', \
     '' using 5 title 'copy data (blocking: includes waking up)' lc rgb '#1f77b4', \
     '' using 6 title 'processing' lc rgb '#2ca02c'
unset multiplot
