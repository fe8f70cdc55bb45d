# common.gp - terminal, colours and the note helpers shared by every plots/*.gp.
# Called with: datafile, outfile, term ('png' or 'svg'), models (space-separated, fixed order).
# A script may set fig_h (pixels, default 840) and eval set_term for a taller figure.
if (!exists('fig_h')) fig_h = 840
set_term = "if (term eq 'svg') { set terminal svg size 1400,fig_h dynamic font 'DejaVu Sans,16' background '#ffffff' } \
  else { set terminal pngcairo size 1400,fig_h font 'DejaVu Sans,16' background '#ffffff' }; \
  set output outfile; set termoption noenhanced"   # plain text: epoll_et is not epoll subscript e
set encoding utf8
eval set_term
set grid xtics ytics lc rgb '#dddddd'
set key outside right top Left reverse samplen 2.5 spacing 1.2 maxrows 30
set border 3
set tics nomirror
set datafile commentschars '#'
set style textbox opaque noborder margins 1,1   # labels with 'boxed' hide the lines behind them

# One colour per model, the same in every figure: position in this fixed list.
all_models = 'blocking threads fork nonblock select poll epoll epoll_et sigio aio uring'
model_colours = '#1f77b4 #ff7f0e #8c564b #d62728 #9467bd #e377c2 #2ca02c #17becf #bcbd22 #7f7f7f #000000'
index_of(w, list) = sum [k=1:words(list)] (word(list, k) eq w ? k : 0)
in_list(w, list) = index_of(w, list) > 0
# (an unknown name, or an empty iteration that gnuplot still parses, gets dark grey)
# Reference servers (refs: the production-library servers among models, listed after the
# teaching models) are set apart in every figure: grey, thin, dashed where a line's dash has no
# other meaning, open markers of their own shapes, "(reference)" in their titles; bar charts
# hatch them and leave a gap before them (ref_gap, in bar widths).
if (!exists('refs')) refs = ''
is_ref(m) = in_list(m, refs)
ref_index(m) = 1 + (index_of(m, refs) - 1) % 4
model_colour(m) = is_ref(m) ? word('#2b2b2b #767676 #4f4f4f #a0a0a0', ref_index(m)) : \
    in_list(m, all_models) ? word(model_colours, index_of(m, all_models)) : '#555555'
model_title(m) = is_ref(m) ? m.' (reference)' : m
model_lw(m) = is_ref(m) ? 2 : 3
model_dt(m) = is_ref(m) ? 2 : 1
model_pt(m) = is_ref(m) ? word('8 10 14 4', ref_index(m)) + 0 : 7
ref_gap = 1
# The models of a list that are (refs_of) or are not (teaching_of) reference servers.
rest_of(list) = list[strstrt(list, word(list, 1)) + strlen(word(list, 1)):]
filter_refs(list, want) = words(list) == 0 ? '' : \
    (is_ref(word(list, 1)) == want ? ' '.word(list, 1) : '').filter_refs(rest_of(list), want)
teaching_of(list) = filter_refs(list, 0)
refs_of(list) = filter_refs(list, 1)

# Colours of the phases (figure 3) and timeline kinds (figure 4): a phase and the timeline
# kind that shows it share a colour (notification = data ready, copy data = copying).
phase_colour(p) = word('#c7c7c7 #ff7f0e #9467bd #1f77b4 #2ca02c', \
                       index_of(p, 'wait_data notify dispatch copy_data processing'))
all_kinds = 'blocked polling free dispatch copying processing no-data data-ready kernel-copy kernel-completes unknown'
kind_colour(k) = word('#8c8c8c #d62728 #f5e49a #9467bd #1f77b4 #2ca02c #e6e6e6 #ff7f0e #aec7e8 #17becf #ffffff', \
                      index_of(k, all_kinds))
kind_title(k) = word('process:_blocked process:_polling_(EAGAIN) process:_free,_awaiting_completion process:_dispatch process:_copying_(recvmsg,_read) process:_processing kernel:_no_data_yet kernel:_data_ready,_not_copied kernel:_copying_to_process kernel:_reads,_posts_completion kernel:_unknown', \
                     index_of(k, all_kinds))
unspace(s) = strstrt(s, '_') ? s[1:strstrt(s, '_')-1].' '.unspace(s[strstrt(s, '_')+1:]) : s

# A data column as a number: NaN (unknown) as a computed NaN. (gnuplot marks a whole point
# undefined when an expression reads a NaN field with $N or column(N), even to test it.)
nan_s(s) = s eq "NaN" || s eq "nan" || s eq "-nan" || s eq "NAN"
num(c) = nan_s(strcol(c)) ? NaN : column(c)
known(v) = v == v
basename(p) = strstrt(p, "/") ? basename(p[strstrt(p, "/")+1:]) : p
# Numbers in notes: 10000 not 1e+04.
fmt(x) = (x == int(x) && abs(x) < 1e12) ? sprintf('%d', int(x)) : sprintf('%.3g', x)
# Word-wrap s at w characters; continuation lines are indented.
last_space(s, i) = i < 1 ? 0 : (s[i:i] eq ' ' ? i : last_space(s, i - 1))
wrap_at(s, w, b) = b < 1 ? s : s[1:b-1]."\n     ".wrap(s[b+1:], w)
wrap(s, w) = strlen(s) <= w ? s : wrap_at(s, w, last_space(s, w))
line_count(s) = strstrt(s, "\n") ? 1 + line_count(s[strstrt(s, "\n")+1:]) : 1

# Notes: a footnote list under the plot for every point a model could not reach.
# A stats pass calls note_row(model, x, status, note, y, reps, lo, hi) once per data row:
#   ok rows with a number y: the model has a point (valid_models; spread_models if reps > 1),
#     and y, lo, hi widen the value range v_min..v_max;
#   other rows (stopped, failed, ok without a number): footnote "[k] model status at x: note";
#     consecutive rows of the same model and status share one footnote ("also at ...");
#     the model's last ok point before the stop gets a ringed "[k]" marker (mk_* lists),
#     and the stop itself is listed in st_* (bar charts label the missing bar there).
#   every row of a model in models widens x_min..x_max (the axis shows where a model stops).
# nt_unit names x in the text ('connections'); nt_unit = '' writes no "at x".
nt_n = 0; nt_text = ''; nt_unit = ''; p_text = ''; p_m = ''; p_st = ''; p_also = ''
lk_m = ''; lk_x = 0; lk_y = 0; present = ''; valid_models = ''; spread_models = ''
mk_x = ''; mk_y = ''; mk_k = ''; mk_m = ''; st_x = ''; st_k = ''; st_m = ''
x_min = NaN; x_max = NaN; v_min = NaN; v_max = NaN; x_vals = ''
min(a, b) = (b == b && !(a <= b)) ? b : a
max(a, b) = (b == b && !(a >= b)) ? b : a
add_word(list, w) = in_list(w, list) ? list : list.' '.w
unit_for(x) = (x == 1 && nt_unit[strlen(nt_unit):] eq 's') ? nt_unit[1:strlen(nt_unit)-1] : nt_unit
at_x(x) = nt_unit eq '' ? '' : ' at '.fmt(x).' '.unit_for(x)
note_add(s) = (nt_text = nt_text.(nt_text eq '' ? '' : "\n").wrap(s, 115), nt_n)
note_flush(d) = (p_text ne '' ? note_add(p_text.(p_also eq '' ? '' : '; also at '.p_also)) : 0, p_text = '', 0)
note_start(m, x, st, txt) = (note_flush(0), nt_n = nt_n + 1, p_m = m, p_st = st, p_also = '', \
    p_text = sprintf('[%d] %s %s%s: %s', nt_n, m, st, at_x(x), txt), \
    st_x = st_x.' '.sprintf('%.12g', x), st_k = st_k.' '.nt_n, st_m = st_m.' '.m, \
    (lk_m eq m ? (mk_x = mk_x.' '.sprintf('%.12g', lk_x), mk_y = mk_y.' '.sprintf('%.12g', lk_y), \
                  mk_k = mk_k.' '.nt_n, mk_m = mk_m.' '.m) : 0), lk_m = '', 0)
note_ok(m, x, y, reps, lo, hi) = (note_flush(0), lk_m = m, lk_x = x, lk_y = y, \
    valid_models = add_word(valid_models, m), \
    spread_models = reps > 1 ? add_word(spread_models, m) : spread_models, \
    v_min = min(min(v_min, y), lo), v_max = max(max(v_max, y), hi), 0)
note_row(m, x, st, txt, y, reps, lo, hi) = !in_list(m, models) ? 0 : \
    (present = add_word(present, m), x_min = min(x_min, x), x_max = max(x_max, x), \
    x_vals = add_word(x_vals, fmt(x)), \
    (st eq 'ok' && y == y) ? note_ok(m, x, y, reps, lo, hi) : \
    (p_text ne '' && p_m eq m && p_st eq (st eq 'ok' ? 'has no value' : st)) ? \
        (p_also = p_also.(p_also eq '' ? '' : ', ').fmt(x), 0) : \
    note_start(m, x, st eq 'ok' ? 'has no value' : st, txt eq '' ? nt_default : txt))
# After the stats pass: eval notes_done. Flushes the last footnote, notes the models with no
# rows at all (when nt_absent = 1), lists the plotted models in models' order (plot_models:
# with a point; empty_models: in the file but without any point), sets the bottom margin,
# the footnote text and the markers (plot_teach and plot_refs: plot_models split into the
# teaching models and the reference servers). nt_below = character lines needed under the axis;
# nt_default = the note for a row whose note is empty.
if (!exists('nt_absent')) nt_absent = 1
if (!exists('nt_rings')) nt_rings = 1     # 0: no rings (bar charts label the missing bar)
if (!exists('nt_default')) nt_default = 'no reason given in the data'
if (!exists('nt_below')) nt_below = 4
notes_done = "dummy = note_flush(0); plot_models = ''; empty_models = ''; absent = ''; \
  do for [m in models] { \
    if (in_list(m, valid_models)) { plot_models = plot_models.' '.m } \
    else { if (in_list(m, present)) { empty_models = empty_models.' '.m } else { absent = absent.' '.m } } }; \
  plot_teach = teaching_of(plot_models); plot_refs = refs_of(plot_models); \
  if (nt_absent && absent ne '') { dummy = note_add('not drawn, no rows in '.basename(datafile).':'.absent) }; \
  nt_lines = nt_text eq '' ? 0 : line_count(nt_text); \
  set bmargin nt_below + nt_lines + (nt_lines > 0 ? 0.5 : 0); \
  if (nt_lines > 0) { set label 999 nt_text at character 1.5, character nt_lines + 0.2 left front }; \
  do for [k=1:(nt_rings ? words(mk_k) : 0)] { \
    set label 900+k sprintf('[%s]', word(mk_k, k)) at first word(mk_x, k)+0, first word(mk_y, k)+0 \
      point pt 6 ps 3.2 lw 2 lc rgb model_colour(word(mk_m, k)) offset 1.6,1.1 \
      tc rgb model_colour(word(mk_m, k)) boxed front }"
# Log axes: the range of the data (x_min..x_max, v_min..v_max) with a margin; x tics at
# the x values in the data; y tics at decades, and at 2 and 5 between them when the data
# span fewer than three decades.
log_x = "if (x_min > 0) { set xrange [x_min / 1.4 : x_max * 1.4]; \
  set xtics (); do for [v in x_vals] { set xtics add (v v+0) } }"
log_y = "if (v_min > 0) { set yrange [v_min / 1.5 : v_max * 1.5]; \
  if (v_max / v_min < 1000) { do for [e=int(floor(log10(v_min))):int(ceil(log10(v_max)))] { \
    set ytics add (2 * 10.0**e, 5 * 10.0**e) } } }"
# When no model has a point, the axes still need a range: say so in the middle of the plot.
no_points = "if (words(plot_models) == 0) { set yrange [1 : 10]; set format y ''; \
  if (!(x_min > 0)) { set xrange [1 : 10]; set format x '' }; \
  set label 998 'no point could be measured: see the notes' at graph 0.5, graph 0.5 center front }"
# Legend entries that are not models (line styles, markers) are grey: black is uring's colour.
neutral = '#777777'
# Legend entry for the "[k]" rings, when there are any.
ring_key = "for [i=1:(nt_rings && words(mk_k) > 0)] keyentry with points pt 6 ps 3.2 lw 2 lc rgb neutral title 'stops after this: note [k]'"
# Spread (min..max over repetitions) as a vertical bar with flat caps: using x:lo:(0):(hi - lo).
# (yerrorbars would leave a white dot where the point would be.)
spread = "with vectors heads size screen 0.006,90 lw 2"
