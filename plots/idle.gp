# idle.gp - figure 6: server CPU µs per request against idle connections (log-log), one line
# per idle model (select, poll, epoll, uring: whichever are in the file and in models; the
# reference servers, when they ran this experiment, thin, grey and dashed: common.gp).
# Data: idle.dat  model(1) idle(2) active(3) reps(4) status(5) cpu_us(6) cpu_lo(7) cpu_hi(8)
#       rps(9) rps_lo(10) rps_hi(11) p99(12) note(13).
# Line: cpu_us at ok points; error bars cpu_lo..cpu_hi when reps > 1; a point that is not ok
# is a gap with a footnote and a "[k]" ring on the model's last ok point.
load 'plots/common.gp'
nt_unit = 'idle connections'
nt_absent = 0    # only the idle models run this experiment
active = NaN
stats datafile using (active = num(3), note_row(strcol(1), num(2), strcol(5), strcol(13), num(6), num(4), num(7), num(8))) nooutput
eval notes_done
set title sprintf("The cost of watching idle connections: server CPU per request\n(%s active connections in a closed loop, plus N idle ones; compare TLPI Table 63-9)", fmt(active))
set xlabel 'idle connections (log scale)'
set ylabel 'server CPU µs per request (log scale)'
set logscale xy 10
eval log_x
set xtics format '%.0f'
set format y '%g'
eval log_y
eval no_points
plot for [m in spread_models] datafile using 2:(strcol(1) eq m && $4 > 1 ? $7 : NaN):(0):($8 - $7) \
         @spread lc rgb model_colour(m) notitle, \
     for [m in plot_models] datafile using 2:(strcol(1) eq m ? $6 : NaN) \
         with linespoints lw model_lw(m) dt model_dt(m) pt model_pt(m) ps 1.5 lc rgb model_colour(m) \
         title model_title(m), \
     for [m in empty_models] keyentry with linespoints lw model_lw(m) dt model_dt(m) pt model_pt(m) ps 1.5 \
         lc rgb model_colour(m) title model_title(m).' (no point: see notes)', \
     for [i=1:(words(spread_models) > 0)] keyentry @spread lc rgb neutral \
         title 'spread: min..max of runs', \
     @ring_key
