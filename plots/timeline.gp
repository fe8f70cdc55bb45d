# timeline.gp - figure 4: the timelines of UNP figures 6.1-6.5, measured: per model one typical
# request (round trip nearest the median) as coloured segments on two lanes, process above and
# kernel below, in µs relative to the data's arrival in the kernel (t = 0).
# Data: timeline.dat  model(1) lane(2: 1 process, 2 kernel) start_us(3) end_us(4) kind(5) label(6);
#       kind reply (start = end = t_reply) is a black tick. Where the arrival is unknown (aio,
#       kind unknown on the kernel lane) t = 0 is t_ready: a footnote says so.
# The wait before arrival (~1000 µs) would squash the rest: the axis starts at x_cut and a
# segment cut there carries its true duration in its label. Reference servers (refs) are the
# last rows, on a grey band; what their library hides is the hatched "unknown", on either lane.
load 'plots/common.gp'
x_cut = -60
# Pass: the models drawn (in models and in the file), kinds present, replies, the latest end.
plist = ''; kinds = ''; unknown_models = ''; replied = ''; t_end = 0
stats datafile using (in_list(strcol(1), models) ? (plist = add_word(plist, strcol(1)), \
    kinds = strcol(5) eq 'reply' ? kinds : add_word(kinds, strcol(5)), \
    unknown_models = strcol(5) eq 'unknown' ? add_word(unknown_models, strcol(1)) : unknown_models, \
    replied = strcol(5) eq 'reply' ? add_word(replied, strcol(1)) : replied, \
    t_end = max(t_end, num(4)), 0) : 0) nooutput
ordered = ''; absent = ''
do for [m in models] { if (in_list(m, plist)) { ordered = ordered.' '.m } else { absent = absent.' '.m } }
plist = ordered; n = words(plist)
fig_h = 430 + 95 * (n > 2 ? n : 2)    # about 95 px per model
eval set_term
solid_kinds = ''; do for [k in all_kinds] { if (in_list(k, kinds) && k ne 'unknown') { solid_kinds = solid_kinds.' '.k } }
x_max = t_end + 10
# Rows: model i at y = n + 1 - i; the process lane above its centre, the kernel lane below.
row(m) = in_list(m, plist) ? n + 1 - index_of(m, plist) : NaN
lane_y(m, lane) = row(m) + (lane == 1 ? 0.2 : -0.2)
hh = 0.16
# Segment labels: the data's label (which may carry its duration, as "12.5 us": shown as µs;
# a duration is added where it does not); a cut segment adds "(axis cut)", others show the
# label if it fits (about 8.5 px per character at 1000 px for the x range), else the
# duration, else nothing.
us_px = (x_max - x_cut) / 1000.0
fits(s, a, b) = (min(b, x_max) - max(a, x_cut)) / us_px > 8.5 * (strlen(s) + 2)
us_at(s) = strstrt(s, ' us')
us_end(c) = c eq '' || c eq ' ' || c eq ',' || c eq ')' || c eq ':' || c eq ';'
digit(c) = strlen(c) == 1 && strstrt('0123456789', c) > 0
is_unit(s, i) = i > 1 && digit(s[i-1:i-1]) && us_end(s[i+3:i+3])   # "12.5 us" but not "told us"
mu(s) = us_at(s) == 0 ? s : s[1:us_at(s)-1].(is_unit(s, us_at(s)) ? ' µs' : ' us').mu(s[us_at(s)+3:])
dur(a, b) = sprintf('%.1f', b - a)
label_d(a, b, l) = strstrt(mu(l), 'µs') ? mu(l) : sprintf('%s: %.1f µs', l, b - a)
cut_text(a, b, l) = fits(label_d(a, b, l).' (axis cut)', x_cut, b) ? label_d(a, b, l).' (axis cut)' : \
    sprintf('%.1f µs (axis cut)', b - a)
seg_text(a, b, l) = fits(label_d(a, b, l), a, b) ? label_d(a, b, l) : (fits(dur(a, b), a, b) ? dur(a, b) : '')
# Which label elements have anything to draw (an empty plot element makes gnuplot warn).
is_cut(m, a, b, k) = in_list(m, plist) && k ne 'reply' && a < x_cut && b > x_cut + 5
is_seg(m, a, b, k, l) = in_list(m, plist) && k ne 'reply' && a >= x_cut && seg_text(a, b, l) ne ''
ncut = 0; nseg = 0
stats datafile using (ncut = ncut + is_cut(strcol(1), num(3), num(4), strcol(5)), \
    nseg = nseg + is_seg(strcol(1), num(3), num(4), strcol(5), strcol(6)), 0) nooutput

do for [m in unknown_models] { dummy = note_add(is_ref(m) ? \
    m.' (reference): its library hides the arrival, so t = 0 is the moment the program was called (t_ready); hatched: what the library did unseen' : \
    m.': the arrival is not stamped, so its t = 0 is the moment the process was told (t_ready); the kernel lane is unknown') }
do for [m in plist] { if (!in_list(m, replied)) { dummy = note_add(m.': no reply row in the data: its reply is not marked') } }
if (absent ne '') { dummy = note_add('not drawn, no rows in '.basename(datafile).':'.absent) }
nt_lines = nt_text eq '' ? 0 : line_count(nt_text)
kind_rows = int((words(solid_kinds) + (words(unknown_models) > 0) + 1 + 2) / 3)
set bmargin 4.5 + kind_rows * 1.3 + nt_lines + 0.5
if (nt_lines > 0) { set label 999 nt_text at character 1.5, character nt_lines + 0.2 left front }

set title sprintf("One typical request per model, as in UNP figures 6.1-6.5, measured\n(1 connection, the client pausing before each request; the axis is cut at %d µs)", x_cut)
set xlabel 'µs relative to the arrival of the data in the kernel (t = 0)'
set xrange [x_cut : x_max]
set yrange [0.45 : n + 0.55]
set grid xtics noytics
set tmargin 5
set border 1
set ytics () scale 0 font ',12'
set lmargin 22
do for [i=1:n] { m = word(plist, i)
    set ytics add ('process' row(m) + 0.2, 'kernel' row(m) - 0.2)
    name = is_ref(m) ? m."\n(reference)" : m
    set label 100+i name at graph 0, first row(m) offset -9,0 right \
        tc rgb model_colour(m) font (is_ref(m) ? ',16' : ',18')
    if (i < n) { set arrow 200+i from graph 0, first row(m) - 0.5 to graph 1, first row(m) - 0.5 nohead lc rgb '#bbbbbb' } }
# The reference servers (the last rows) on a grey band, below a heavier line.
nrefs = words(refs_of(plist))
if (nrefs > 0) {
    set object 50 rect from graph 0, first 0.45 to graph 1, first nrefs + 0.5 behind fc rgb '#f2f2f2' fs solid 1 noborder
    if (nrefs < n) { set arrow 200+n-nrefs from graph 0, first nrefs + 0.5 to graph 1, first nrefs + 0.5 nohead lw 3 lc rgb '#777777' } }
set arrow 300 from 0, graph 0 to 0, graph 1 nohead dt 2 lw 2 lc rgb '#555555' back
set label 301 "data arrive (t = 0)" at 0, graph 1 offset 0,0.6 center font ',13'
set label 302 '//' at graph 0, graph 0 center offset 0,0.1 font ',18' boxed front
set key default
set key at character 3, character nt_lines + kind_rows * 1.3 + 0.8 left top vertical maxrows kind_rows \
    Left reverse samplen 1.5 width -6 spacing 1.3
plot for [k in solid_kinds] datafile using (lane_y(strcol(1), $2)):(strcol(5) eq k ? lane_y(strcol(1), $2) : NaN): \
         ($3):($4):(lane_y(strcol(1), $2) - hh):(lane_y(strcol(1), $2) + hh) \
         with boxxyerror fs solid 1 border rgb '#505050' lc rgb kind_colour(k) title unspace(kind_title(k)), \
     for [i=1:(words(unknown_models) > 0)] datafile \
         using (0):(strcol(5) eq 'unknown' ? lane_y(strcol(1), $2) : NaN):($3):($4): \
         (lane_y(strcol(1), $2) - hh):(lane_y(strcol(1), $2) + hh) \
         with boxxyerror fs pattern 4 border rgb '#505050' lc rgb '#505050' title 'unknown: not stamped', \
     for [i=1:(words(replied) > 0)] datafile using ($3):(strcol(5) eq 'reply' ? lane_y(strcol(1), $2) - 0.22 : NaN):(0):(0.44) \
         with vectors nohead lw 4 lc rgb '#000000' title 'reply handed to send()', \
     for [i=1:(ncut > 0)] datafile using (x_cut + 1):(is_cut(strcol(1), $3, $4, strcol(5)) ? lane_y(strcol(1), $2) : NaN): \
         (cut_text($3, $4, strcol(6))) with labels font ',13' left boxed notitle, \
     for [i=1:(nseg > 0)] datafile using (($3 + $4) / 2):(is_seg(strcol(1), $3, $4, strcol(5), strcol(6)) ? \
         lane_y(strcol(1), $2) : NaN):(seg_text($3, $4, strcol(6))) with labels font ',13' center notitle
