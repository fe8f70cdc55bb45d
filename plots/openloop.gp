# openloop.gp - figure 8: latency p50 (solid) and p99 (dashed) against offered load, open loop,
# one line pair per open-loop model; log y (and log x): the hockey stick.
# Data: openloop.dat  model(1) offered(2) reps(3) status(4) achieved(5) p50(6) p99(7)
#       p99_lo(8) p99_hi(9) note(10).
# Lines at ok points; p99 error bars p99_lo..p99_hi when reps > 1; a diamond where the server
# fell behind (achieved < 95% of offered); a point that is not ok is a gap with a footnote.
# Reference servers: thin grey lines with open markers, "(reference)" after the teaching models.
load 'plots/common.gp'
nt_unit = 'requests/s offered'
nt_absent = 0    # only the open-loop models run this experiment
fb = 0
behind(m) = in_list(strcol(1), models) && strcol(4) eq 'ok' && num(5) < 0.95 * num(2)
stats datafile using (fb = fb + behind(0), \
                      note_row(strcol(1), num(2), strcol(4), strcol(10), num(6), num(3), num(6), num(9))) nooutput
eval notes_done
set title "Open-loop latency against offered load: the hockey stick\n(requests sent on schedule; latency counted from when each was due)"
set xlabel 'offered load, requests per second (log scale)'
set ylabel 'round trip, microseconds (log scale)'
set logscale xy 10
set format y '%g'
eval log_x
eval log_y
ok(m) = strcol(1) eq m && strcol(4) eq 'ok'
eval no_points
plot for [m in spread_models] datafile using 2:(ok(m) && $3 > 1 ? $8 : NaN):(0):($9 - $8) \
         @spread lc rgb model_colour(m) notitle, \
     for [m in plot_models] datafile using 2:(ok(m) ? $6 : NaN) \
         with linespoints lw model_lw(m) pt model_pt(m) ps 1.5 lc rgb model_colour(m) title model_title(m), \
     for [m in plot_models] datafile using 2:(ok(m) ? $7 : NaN) \
         with linespoints lw model_lw(m) dt 2 pt (is_ref(m) ? model_pt(m) : 6) ps 1.5 lc rgb model_colour(m) notitle, \
     for [m in empty_models] keyentry with linespoints lw model_lw(m) pt model_pt(m) ps 1.5 lc rgb model_colour(m) \
         title model_title(m).' (no point: see notes)', \
     keyentry with linespoints lw 3 pt 7 ps 1.5 lc rgb neutral title 'solid: p50 (median)', \
     keyentry with linespoints lw 3 dt 2 pt 6 ps 1.5 lc rgb neutral title 'dashed: p99', \
     for [i=1:(words(spread_models) > 0)] keyentry @spread lc rgb neutral \
         title 'p99 spread: min..max of runs', \
     for [i=1:(fb > 0)] datafile using 2:(behind(0) ? $6 : NaN) \
         with points pt 12 ps 3.5 lw 2 lc rgb neutral title "fell behind (< 95% achieved)", \
     @ring_key
