# throughput.gp - requests per second against concurrent connections, one line per model.
# Data: plots/run-all's throughput.dat, one block per model (gnuplot index).
load 'plots/common.gp'
set title 'Throughput against concurrent connections (closed loop, 64-byte echoes)'
set xlabel 'concurrent connections'
set ylabel 'requests per second'
set logscale x 10
set yrange [0:*]
plot for [i=1:words(models)] datafile index (i-1) using 2:3 with linespoints lw 3 pt 7 ps 1.5 \
     lc rgb model_colour(word(models, i)) title word(models, i), \
     for [i=1:words(models)] datafile index (i-1) \
         using 2:3:($6 > 0 ? sprintf('%d of %d never served', $6, $2) : '') with labels \
         right offset -0.5,-1.2 tc rgb model_colour(word(models, i)) notitle
