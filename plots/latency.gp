# latency.gp - round-trip latency p50 (solid) and p99 (dashed) against connections.
load 'plots/common.gp'
set title "Round-trip latency against concurrent connections (p50 solid, p99 dashed)\nOnly answered requests have a latency: see the connections never served"
set xlabel 'concurrent connections'
set ylabel 'microseconds'
set logscale xy 10
plot for [i=1:words(models)] datafile index (i-1) using 2:4 with linespoints lw 3 pt 7 \
         lc rgb model_colour(word(models, i)) title word(models, i).' p50', \
     for [i=1:words(models)] datafile index (i-1) using 2:5 with linespoints lw 2 dt 2 pt 6 \
         lc rgb model_colour(word(models, i)) title word(models, i).' p99', \
     for [i=1:words(models)] datafile index (i-1) \
         using 2:4:($6 > 0 ? sprintf('%d of %d never served', $6, $2) : '') with labels \
         right offset -0.5,-1.2 tc rgb model_colour(word(models, i)) notitle
