# common.gp - terminal and look shared by every plot (loaded by each plots/*.gp).
# Called with: datafile, outfile, term ('png' or 'svg'), models (space-separated names).
if (term eq 'svg') {
    set terminal svg size 1000,600 dynamic enhanced font 'DejaVu Sans,14'
} else {
    set terminal pngcairo size 1400,840 enhanced font 'DejaVu Sans,16'
}
set output outfile
set termoption noenhanced  # model names such as epoll_et are plain text
set grid ytics lc rgb '#dddddd'
set key outside right top
set border 3
set tics nomirror
# One colour per model, the same in every figure: position in this fixed list.
all_models = 'blocking threads fork nonblock select poll epoll epoll_et sigio aio uring'
model_colour(m) = word('#1f77b4 #ff7f0e #8c564b #d62728 #9467bd #e377c2 #2ca02c #17becf #bcbd22 #7f7f7f #000000', \
                       sum [k=1:words(all_models)] (word(all_models, k) eq m ? k : 0))
