# idle.gp: server CPU per request against idle connections, poll and epoll (lab 3)
set terminal pngcairo size 900,560 font 'DejaVu Sans,12'
set output 'idle.png'
set title 'One busy connection among N idle ones'
set logscale xy
set xlabel 'idle connections'
set ylabel 'server CPU per request (µs, user + system)'
set key top left
set grid
plot 'idle.dat' using 1:2 with linespoints lw 2 pt 7 title 'poll', \
     ''         using 1:3 with linespoints lw 2 pt 5 title 'epoll'
