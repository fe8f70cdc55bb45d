# latency.gp - figure 2: round-trip latency p50 (solid) and p99 (dashed) against connections, log-log.
# Data: scale.dat  model(1) conns(2) reps(3) status(4) ... p50(8) p50_lo(9) p50_hi(10)
#       p99(11) p99_lo(12) p99_hi(13) ... client_bound(18) note(19).
# Lines at ok points; error bars lo..hi when reps > 1; a point that is not ok is a gap, with
# its note in the footnote list and a "[k]" ring on the model's last ok p50 point.
# Squares: the client was the bottleneck. Reference servers: thin grey lines with open markers
# (the dash still tells p50 from p99), "(reference)" in the key after the teaching models.
load 'plots/common.gp'
nt_unit = 'connections'
cb = 0
stats datafile using (cb = cb + (strcol(4) eq 'ok' && num(18) == 1 && in_list(strcol(1), models)), \
                      note_row(strcol(1), num(2), strcol(4), strcol(19), num(8), num(3), num(9), num(13))) nooutput
eval notes_done
set key spacing 1.0 samplen 2 font ',14'  # eleven models and four explanations in one column
set title "Round-trip latency against concurrent connections\n(closed loop; only answered requests have a latency)"
set xlabel 'concurrent connections (log scale)'
set ylabel 'round trip, microseconds (log scale)'
set logscale xy 10
eval log_x
set xtics format '%.0f'
set format y '%g'
eval log_y
ok(m) = strcol(1) eq m && strcol(4) eq 'ok'
eval no_points
plot for [m in spread_models] datafile using 2:(ok(m) && $3 > 1 ? $9 : NaN):(0):($10 - $9) \
         @spread lc rgb model_colour(m) notitle, \
     for [m in spread_models] datafile using 2:(ok(m) && $3 > 1 ? $12 : NaN):(0):($13 - $12) \
         @spread lc rgb model_colour(m) notitle, \
     for [m in plot_models] datafile using 2:(ok(m) ? $8 : NaN) \
         with linespoints lw model_lw(m) pt model_pt(m) ps 1.5 lc rgb model_colour(m) title model_title(m), \
     for [m in plot_models] datafile using 2:(ok(m) ? $11 : NaN) \
         with linespoints lw model_lw(m) dt 2 pt (is_ref(m) ? model_pt(m) : 6) ps 1.5 lc rgb model_colour(m) notitle, \
     for [m in empty_models] keyentry with linespoints lw model_lw(m) pt model_pt(m) ps 1.5 lc rgb model_colour(m) \
         title model_title(m).' (no point: see notes)', \
     keyentry with linespoints lw 3 pt 7 ps 1.5 lc rgb neutral title 'solid: p50 (median)', \
     keyentry with linespoints lw 3 dt 2 pt 6 ps 1.5 lc rgb neutral title 'dashed: p99', \
     for [i=1:(words(spread_models) > 0)] keyentry @spread lc rgb neutral \
         title 'spread: min..max of runs', \
     for [i=1:(cb > 0)] datafile using 2:(strcol(4) eq 'ok' && num(18) == 1 && in_list(strcol(1), models) ? $8 : NaN) \
         with points pt 4 ps 3 lw 2 lc rgb neutral title 'client-bound point', \
     @ring_key
