# phases.gp - figure 3: where one request's time goes, per model a stacked bar of the median
# phases (µs) from the --think runs at one connection; left all phases, right without the
# wait (which is about the think time and hides the rest).
# Data: phases.dat  model(1) how(2) wait_data(3) notify(4) dispatch(5) copy_data(6)
#       processing(7) round_trip(8). Columns 3..7 are stacked in that order.
# A NaN phase is not measurable with that model's stamps: it is drawn in its place in the
# stack as a pale, hatched block labelled "n/a" of a fixed height that means nothing, never as 0.
# Reference servers (refs) come last, on a grey band, named "(reference)"; their libraries hide
# some stamps, so more of their phases are n/a.
load 'plots/common.gp'
names = 'wait_data notify dispatch copy_data processing'
titles = 'wait_for_data notification dispatch copy_data processing'
# Pass 1: the models to draw (in models and in the file); columns with a number (pv), NaN (pn).
plist = ''; pv = ''; pn = ''
mark(c) = (pv = known(num(c)) ? add_word(pv, sprintf('%d', c)) : pv, \
           pn = known(num(c)) ? pn : add_word(pn, sprintf('%d', c)), 0)
stats datafile using (in_list(strcol(1), models) ? (plist = add_word(plist, strcol(1)), \
    mark(3) + mark(4) + mark(5) + mark(6) + mark(7)) : 0) nooutput
ordered = ''; absent = ''
do for [m in models] { if (in_list(m, plist)) { ordered = ordered.' '.m } else { absent = absent.' '.m } }
plist = ordered
if (pn eq '') { pn = '3' }  # no phase is n/a: a column whose hatched blocks all come out NaN
if (pv eq '') { pv = '3' }
# The reference servers come last, after a gap, on a grey band (their names say "(reference)").
gap = (words(refs_of(plist)) > 0 && words(teaching_of(plist)) > 0) ? 0.6 * ref_gap : 0
pos(m) = in_list(m, plist) ? index_of(m, plist) + (is_ref(m) ? gap : 0) : NaN
# Pass 2: y ranges. An n/a block is hfrac of the panel's range: ymax = 1.1 * (sum + blocks).
hfrac = 0.06
msum(c0) = sum [j=c0:7] (known(num(j)) ? num(j) : 0)
nna(c0) = sum [j=c0:7] (known(num(j)) ? 0 : 1)
ymax3 = 1; ymax4 = 1
stats datafile using (in_list(strcol(1), models) ? \
    (ymax3 = max(ymax3, 1.1 * msum(3) / (1 - 1.1 * hfrac * nna(3))), \
     ymax4 = max(ymax4, 1.1 * msum(4) / (1 - 1.1 * hfrac * nna(4))), 0) : 0) nooutput
# Segment c of a bar whose stack starts with column c0: bottom and top (n/a counts h).
seg(v) = known(v) ? v : h
bottom(c) = sum [j=c0:c-1] seg(num(j))
top(c) = bottom(c) + seg(num(c))
# Value labels on segments tall enough to hold them; "n/a" on the hatched blocks.
label_y(c) = !known(num(c)) || num(c) >= (lrot ? 0.1 : 0.07) * yp ? (bottom(c) + top(c)) / 2 : NaN
label_s(c) = sprintf('%.1f', num(c))
x(m) = pos(m)
lrot = words(plist) > 6 ? 90 : 0   # many bars are narrow: value labels upright, names steeper

set multiplot title "Where one request's time goes: median µs per phase\n(1 connection; the client pauses before each request, so the server waits for data)"
unset key
set xrange [0.4 : words(plist) + gap + 0.6]
nrefs = words(refs_of(plist))
if (nrefs > 0) { first_ref = word(refs_of(plist), 1)
    set object 50 rect from first pos(first_ref) - 0.5, graph 0 to first words(plist) + gap + 0.6, graph 1 \
        behind fc rgb '#eeeeee' fs solid 1 noborder }
unset xtics
set grid noxtics ytics
set bmargin (lrot ? 7 : 5) + (nrefs > 0 ? 3 : 0)   # "(reference)" names are longer
set tmargin 5
if (absent ne '') { set label 99 'not drawn, no rows in '.basename(datafile).':'.absent at screen 0.01, character 1 left }
# One panel: columns c0..7 stacked, y from 0 to yp; model names under the bars in their colours.
draw_panel = "set yrange [0 : yp]; h = hfrac * yp; \
  do for [i=1:words(plist)] { set label 100+i model_title(word(plist, i)) at first pos(word(plist, i)), graph 0 offset 0,-0.8 \
     rotate by (lrot ? 45 : 30) right tc rgb model_colour(word(plist, i)) }; \
  plot for [cs in pv] datafile using (x(strcol(1))):(cs+0 >= c0 && known(num(cs+0)) ? 0 : NaN): \
         (x(strcol(1)) - 0.35):(x(strcol(1)) + 0.35):(bottom(cs+0)):(top(cs+0)) \
         with boxxyerror fs solid 0.9 border rgb '#404040' lc rgb phase_colour(word(names, cs-2)) notitle, \
       for [cs in pn] datafile using (x(strcol(1))):(cs+0 >= c0 && !known(num(cs+0)) ? 0 : NaN): \
         (x(strcol(1)) - 0.35):(x(strcol(1)) + 0.35):(bottom(cs+0)):(top(cs+0)) \
         with boxxyerror fs solid 0.35 border rgb '#404040' lc rgb phase_colour(word(names, cs-2)) notitle, \
       for [cs in pn] datafile using (x(strcol(1))):(cs+0 >= c0 && !known(num(cs+0)) ? 0 : NaN): \
         (x(strcol(1)) - 0.35):(x(strcol(1)) + 0.35):(bottom(cs+0)):(top(cs+0)) \
         with boxxyerror fs transparent pattern 4 noborder lc rgb '#404040' notitle, \
       for [c=c0:7] datafile using (x(strcol(1))):(known(num(c)) ? label_y(c) : NaN):(label_s(c)) \
         with labels font ',13' rotate by lrot boxed notitle, \
       for [c=c0:7] datafile using (x(strcol(1))):(known(num(c)) ? NaN : label_y(c)):('n/a') \
         with labels font (lrot ? ',10' : ',13') boxed notitle"
set title 'all phases: waiting for data dominates'
set ylabel 'median microseconds'
set lmargin at screen 0.08
set rmargin at screen 0.35
c0 = 3; yp = ymax3
eval draw_panel
set title 'without the wait: told, then copying'
unset ylabel
set lmargin at screen 0.42
set rmargin at screen 0.69
c0 = 4; yp = ymax4
set key at screen 0.71, graph 1 left top Left reverse samplen 1.5 spacing 1.3
eval draw_panel.", \
  for [k=1:5] keyentry with boxes fs solid 0.9 lc rgb phase_colour(word(names, k)) title unspace(word(titles, k)), \
  for [i=1:(words(pn) > 0)] keyentry with boxes fs pattern 4 lc rgb '#404040' title 'hatched: n/a, not measurable', \
  for [i=1:(words(pn) > 0)] keyentry with boxes fs empty lc rgb '#ffffff' title '(height means nothing)'"
unset multiplot
