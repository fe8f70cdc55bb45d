# cost.gp - figure 5: cost per request, per model: server CPU µs (left) and system calls (right),
# bars grouped by connection count (settings.cost_conns, e.g. 1 and 100), one colour per model.
# Data: cost.dat  model(1) conns(2) reps(3) status(4) cpu_us(5) cpu_lo(6) cpu_hi(7)
#       syscalls(8) syscalls_lo(9) syscalls_hi(10) calls(11).
# Bars at ok rows with value labels (cost.dat has no note column: calls is not shown); error bars lo..hi when reps > 1. A row that is not ok (or
# lacks a number) has no bar: "n/a [k]" stands in its place and the footnote says why.
# Reference servers: hatched grey bars after a gap, "(reference)" in the key.
load 'plots/common.gp'
nt_unit = 'connections'
nt_below = 4
nt_rings = 0
nt_default = 'cost.dat has no note column: see the throughput figure for why'
s_max = 0
stats datafile using (in_list(strcol(1), models) && strcol(4) eq 'ok' ? s_max = max(s_max, max(num(8), num(10))) : 0, \
    note_row(strcol(1), num(2), strcol(4), strcol(11), known(num(8)) ? num(5) : NaN, num(3), num(6), num(7))) nooutput
eval notes_done
# Bar positions: group g (the connection counts in file order), model i of the n drawn; the
# reference servers come last in each group, after a gap of ref_gap bars, hatched.
mlist = ''; do for [m in models] { if (in_list(m, present)) { mlist = mlist.' '.m } }
n = words(mlist)
gap = (words(refs_of(mlist)) > 0 && words(teaching_of(mlist)) > 0) ? ref_gap : 0
bw = 0.8 / (n + gap)
slot(m) = index_of(m, mlist) + (is_ref(m) ? gap : 0)
bar_x(m, c) = index_of(fmt(c), x_vals) + (slot(m) - (n + gap + 1) / 2.0) * bw
set xrange [0.5 : words(x_vals) + 0.5]
set xtics () scale 0
do for [v in x_vals] { set xtics add (v.(v eq '1' ? ' connection' : ' connections') index_of(v, x_vals)) }
do for [k=1:words(st_k)] {
    set label 800+k sprintf('n/a [%s]', word(st_k, k)) at first bar_x(word(st_m, k), word(st_x, k)+0), graph 0.02 \
        rotate by 90 left tc rgb model_colour(word(st_m, k)) font ',13' front }
set grid noxtics ytics
set style fill solid 0.9 border rgb '#404040'
unset key
set tmargin 5
set multiplot title "Cost per request: server CPU time and system calls (from the servers' STATS, closed loop)"
# One panel: value column c with lo/hi in c+1, c+2; y from 0 to ymax.
ok(m) = strcol(1) eq m && strcol(4) eq 'ok'
panel = "set yrange [0 : ymax]; \
  plot for [m in plot_teach] datafile using (bar_x(m, $2)):(ok(m) ? column(c) : NaN):(bw * 0.9) \
         with boxes lc rgb model_colour(m) title m, \
       for [m in plot_refs] datafile using (bar_x(m, $2)):(ok(m) ? column(c) : NaN):(bw * 0.9) \
         with boxes fs pattern 4 border lc rgb model_colour(m) lc rgb model_colour(m) title model_title(m), \
       for [m in spread_models] datafile using (bar_x(m, $2)):(ok(m) && $3 > 1 ? column(c+1) : NaN):(0):(column(c+2) - column(c+1)) \
         @spread lc rgb neutral notitle, \
       for [m in plot_models] datafile using (bar_x(m, $2)):(ok(m) ? max(column(c), column(c+2)) : NaN):(sprintf(fmt_v, column(c))) \
         with labels rotate by 90 left offset 0,0.4 font ',12' notitle, \
       keyentry notitle"
set title 'server CPU µs per request'
set ylabel 'µs of server CPU per request'
set lmargin at screen 0.07
# "(reference)" titles need a wider key: the panels give up kw of the width
kw = words(refs_of(mlist)) > 0 ? 0.05 : 0
set rmargin at screen 0.40 - kw
c = 5; ymax = known(v_max) ? v_max * 1.3 : 1; fmt_v = '%.1f'
eval panel
set title 'system calls per request'
set ylabel 'system calls per request'
set lmargin at screen 0.49 - kw
set rmargin at screen 0.82 - 2 * kw
set key at screen 0.83 - 2 * kw, graph 1 left top Left reverse samplen 1.5 spacing 1.3
c = 8; ymax = s_max > 0 ? s_max * 1.3 : 1; fmt_v = '%.2f'
eval panel.", for [m in empty_models] keyentry with boxes lc rgb model_colour(m) title model_title(m).' (n/a)', \
  for [i=1:(words(spread_models) > 0)] keyentry @spread lc rgb neutral title 'min..max'"
unset multiplot
