# work.gp - figure 7: work done while serving: --work units per second per model (bars, one
# colour per model); a unit is an FNV hash of 4 KiB, done whenever the server would wait.
# Data: work.dat  model(1) reps(2) status(3) units_per_s(4) units_lo(5) units_hi(6) rps(7)
#       units_per_req(8) note(9).
# Bar = units_per_s (thousands) at ok rows, error bar lo..hi when reps > 1, value on top;
# at the bar's foot the requests/s it served meanwhile, under it the model. A row that is not ok has no
# bar: "n/a [k]" stands in its place and the footnote says why. Reference servers: hatched grey
# bars after a gap, named "(reference)".
load 'plots/common.gp'
nt_rings = 0
mlist = ''
stats datafile using (mlist = in_list(strcol(1), models) ? add_word(mlist, strcol(1)) : mlist, 0) nooutput
ordered = ''; do for [m in models] { if (in_list(m, mlist)) { ordered = ordered.' '.m } }
mlist = ordered
# the reference servers come last, after a gap, hatched
gap = (words(refs_of(mlist)) > 0 && words(teaching_of(mlist)) > 0) ? 0.6 * ref_gap : 0
bar_x(m) = in_list(m, mlist) ? index_of(m, mlist) + (is_ref(m) ? gap : 0) : NaN
rot = (words(mlist) > 6 || gap > 0) ? 30 : 0; walign = rot ? 'right' : 'center'   # many models: names slanted
nt_below = rot ? (words(refs_of(mlist)) > 0 ? 8 : 6) : 4
stats datafile using (note_row(strcol(1), bar_x(strcol(1)), strcol(3), strcol(9), num(4), num(2), num(5), num(6))) nooutput
eval notes_done
do for [k=1:words(st_k)] {
    set label 800+k sprintf('n/a [%s]', word(st_k, k)) at first word(st_x, k)+0, graph 0.03 \
        rotate by 90 left tc rgb model_colour(word(st_m, k)) front }
set title "Work done while serving: --work units per second\n(1 unit = FNV hash of 4 KiB, done while the server would otherwise wait; clients think 1 ms)"
set ylabel 'thousand work units per second'
set xrange [0.4 : words(mlist) + gap + 0.6]
set yrange [0 : (v_max == v_max ? v_max / 1000 * 1.2 : 1)]
unset xtics
set grid noxtics ytics
set style fill solid 0.9 border rgb '#404040'
set key outside right top
plot for [m in plot_teach] datafile using (bar_x(m)):(strcol(1) eq m && strcol(3) eq 'ok' ? $4 / 1000 : NaN):(0.7) \
         with boxes lc rgb model_colour(m) title m, \
     for [m in plot_refs] datafile using (bar_x(m)):(strcol(1) eq m && strcol(3) eq 'ok' ? $4 / 1000 : NaN):(0.7) \
         with boxes fs pattern 4 border lc rgb model_colour(m) lc rgb model_colour(m) title model_title(m), \
     for [m in spread_models] datafile using (bar_x(m)):(strcol(1) eq m && strcol(3) eq 'ok' && $2 > 1 ? $5 / 1000 : NaN): \
         (0):(($6 - $5) / 1000) @spread lc rgb neutral notitle, \
     for [m in plot_models] datafile using (bar_x(m)):(strcol(1) eq m && strcol(3) eq 'ok' ? max($4, $6) / 1000 : NaN): \
         (sprintf('%.0f', $4 / 1000)) with labels offset 0,0.8 notitle, \
     for [m in plot_models] datafile using (bar_x(m)):(strcol(1) eq m && strcol(3) eq 'ok' && known(num(7)) ? 0 : NaN): \
         (sprintf('served %.0f req/s', $7)) with labels rotate by 90 left offset 0,0.6 font ',12' boxed notitle, \
     for [m in mlist] datafile using (bar_x(m)):(strcol(1) eq m ? 0 : NaN):(model_title(m)) \
         with labels rotate by rot offset 0,-1.2 @walign tc rgb model_colour(m) notitle, \
     for [m in empty_models] keyentry with boxes lc rgb model_colour(m) title model_title(m).' (n/a)', \
     for [i=1:(words(spread_models) > 0)] keyentry @spread lc rgb neutral title 'min..max'
