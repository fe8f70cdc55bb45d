# throughput.gp - figure 1: requests/s against concurrent connections (log x), one line per model.
# Data: scale.dat  model(1) conns(2) reps(3) status(4) rps(5) rps_lo(6) rps_hi(7) ...
#       client_bound(18) note(19).
# Line: rps at each ok point (reference servers thin, grey, dashed, open markers: common.gp); error bars rps_lo..rps_hi when reps > 1; a square around a point
# where the client was the bottleneck. A point that is not ok is a gap: its note goes to the
# footnote list and the model's last ok point gets a "[k]" ring.
load 'plots/common.gp'
nt_unit = 'connections'
cb = 0
stats datafile using (cb = cb + (strcol(4) eq 'ok' && num(18) == 1 && in_list(strcol(1), models)), \
                      note_row(strcol(1), num(2), strcol(4), strcol(19), num(5), num(3), num(6), num(7))) nooutput
eval notes_done
set title "Throughput against concurrent connections\n(closed loop: each connection has one 64-byte echo in flight)"
set xlabel 'concurrent connections (log scale)'
set ylabel 'requests per second'
set logscale x 10
eval log_x
set xtics format '%.0f'
set yrange [0:*]
set format y '%.0f'
eval no_points
plot for [m in spread_models] datafile using 2:(strcol(1) eq m && $3 > 1 ? $6 : NaN):(0):($7 - $6) \
         @spread lc rgb model_colour(m) notitle, \
     for [m in plot_models] datafile using 2:(strcol(1) eq m ? $5 : NaN) \
         with linespoints lw model_lw(m) dt model_dt(m) pt model_pt(m) ps 1.5 lc rgb model_colour(m) \
         title model_title(m), \
     for [m in empty_models] keyentry with linespoints lw model_lw(m) dt model_dt(m) pt model_pt(m) ps 1.5 \
         lc rgb model_colour(m) title model_title(m).' (no point: see notes)', \
     for [i=1:(words(spread_models) > 0)] keyentry @spread lc rgb neutral \
         title 'spread: min..max of runs', \
     for [i=1:(cb > 0)] datafile using 2:(strcol(4) eq 'ok' && num(18) == 1 && in_list(strcol(1), models) ? $5 : NaN) \
         with points pt 4 ps 3 lw 2 lc rgb neutral title 'client-bound point', \
     @ring_key
