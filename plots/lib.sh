# lib.sh - what the measurement drivers share: pinning, starting and stopping one server,
# the machine's description. Sourced by plots/bench and plots/bench-scale (bash only).
#
#   pin_cpus                       server_cpu=(taskset -c 1), client_cpu=(taskset -c 0) on a
#                                  machine with two CPUs or more (and the driver itself to CPU
#                                  0, so its jq and sleep stay off the server's core); empty
#                                  arrays on one CPU. pin_note says which.
#   start_server OUT LOG BIN ARG.. start BIN ARG.. -p 0 on server_cpu, stdout to OUT, stderr to
#                                  LOG; wait for "listening on ADDR:PORT". 0: server_pid and
#                                  server_port are set. 1: it never listened; server_exit holds
#                                  its exit status (77: it cannot run on this machine).
#   stop_server                    SIGTERM (SIGKILL after 5 s), wait; server_exit = its exit
#                                  status: 0 for a clean stop, else it failed or died earlier.
#   rss_kb PID                     rss = the process's VmRSS in kB (no fork: read by bash)
#   env_json                       the machine, the tools and the source as one JSON object
#   json_list "a b", json_nums "1 2"  a JSON array of strings / numbers
#   run_figures_jq                 jq definitions: the figures of one run's JSON, and why it failed
#
# plots/run-all starts, waits for and stops its servers the same way and could source this.

# shellcheck disable=SC2034 # the variables set here are for the drivers that source this
server_pid="" server_port="" server_exit=""
cpus=$(nproc) # now, before pin_cpus narrows this shell's affinity (nproc counts only those)

pin_cpus() {
    if [ "$cpus" -ge 2 ]; then
        server_cpu=(taskset -c 1) client_cpu=(taskset -c 0)
        taskset -pc 0 $$ > /dev/null
        pin_note="server on CPU 1, clients on CPU 0 (taskset)"
    else
        server_cpu=() client_cpu=()
        pin_note="one CPU only: server and client share it, nothing pinned"
    fi
}

start_server() {
    local out=$1 log=$2 line=""
    shift 2
    server_port="" server_exit=""
    "${server_cpu[@]}" "$@" -p 0 > "$out" 2> "$log" &
    server_pid=$!
    for _ in $(seq 200); do # up to 10 s
        IFS= read -r line < "$out" || true
        case $line in "listening on "*:*)
            server_port=${line##*:}
            return 0 ;;
        esac
        running "$server_pid" || break
        sleep 0.05
    done
    stop_server
    return 1
}

# A zombie still answers kill -0, so "has it exited" is read from /proc: gone, or state Z.
running() {
    local stat
    read -r stat 2> /dev/null < "/proc/$1/stat" || return 1
    stat=${stat##*) }
    [ "${stat:0:1}" != Z ]
}

stop_server() {
    [ -n "$server_pid" ] || return 0
    kill -TERM "$server_pid" 2> /dev/null || true
    for _ in $(seq 100); do
        running "$server_pid" || break
        sleep 0.05
    done
    running "$server_pid" && kill -KILL "$server_pid" 2> /dev/null
    server_exit=0
    wait "$server_pid" 2> /dev/null || server_exit=$?
    server_pid=""
}

rss_kb() {
    local key value unit
    rss=0
    while read -r key value unit; do
        if [ "$key" = VmRSS: ]; then rss=$value; return 0; fi
    done 2> /dev/null < "/proc/$1/status"
    return 1
}

json_list() { jq -cn '$ARGS.positional' --args $1; }
json_nums() { jq -cn '$ARGS.positional | map(tonumber)' --args $1; }
pkg_version() { pkg-config --modversion "$1" 2> /dev/null || echo "not found"; }

env_json() {
    local commit dirty=false
    if commit=$(git rev-parse --short HEAD 2> /dev/null); then
        git diff --quiet HEAD 2> /dev/null || dirty=true
    else
        commit=unknown
    fi
    jq -n --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg kernel "$(uname -srm)" \
        --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')" \
        --argjson cpus "$cpus" --arg cc "$(${CC:-cc} --version 2> /dev/null | head -1)" \
        --arg gcc "$(gcc --version 2> /dev/null | head -1)" \
        --arg libevent "$(pkg_version libevent)" --arg libuv "$(pkg_version libuv)" \
        --arg liburing "$(pkg_version liburing)" --arg commit "$commit" --argjson dirty "$dirty" \
        --arg soft "$(ulimit -Sn)" --arg hard "$(ulimit -Hn)" \
        --arg perf "$(perf --version 2> /dev/null || echo "not found")" \
        '{date_utc: $date, kernel: $kernel, cpu_model: $cpu, cpus: $cpus, compiler: $cc,
          gcc: $gcc, libevent: $libevent, libuv: $libuv, liburing: $liburing, perf: $perf,
          git_commit: $commit, git_modified: $dirty,
          rlimit_nofile: {soft: ($soft | tonumber? // $soft), hard: ($hard | tonumber? // $hard)}}'
}

# run_figures_jq: jq definitions. figures: what bench.json and scale.json keep of one run's
# JSON (loadgen's or baseline_client's); problem($kind; $client_exit; $server_exit): why that run
# failed, or null. tests/check-bench computes the same from the JSON files on its own.
run_figures_jq='
def num: if type == "number" then . else null end;
def figures:
  if .tool == "loadgen" then
    (.server_stats_per_request // {}) as $s
    | {requests, rps: .throughput_rps, p99_us: .latency_us.round_trip.p99,
       cpu_user_us: ($s.cpu_user_us | num), cpu_sys_us: ($s.cpu_sys_us | num),
       cpu_us: (if ($s.cpu_user_us | num) != null and ($s.cpu_sys_us | num) != null
                then $s.cpu_user_us + $s.cpu_sys_us else null end),
       errors: .errors.total, client_bound: (.client.bottleneck == true),
       client_cpu_us_per_request: (.client.cpu_us_per_request // (if .requests > 0
                                   then .client.cpu_us / .requests else null end)),
       client_cpu_util: .client.cpu_util,
       stamps_seen: ([.phases_us // {} | .[] | select(. != null)] | length > 0)}
  elif .tool == "baseline_client" then
    {requests, rps: .throughput_rps, errors,
     client_cpu_us_per_request: (.cpu_us_per_request // (if .requests > 0
                                 then .cpu_us / .requests else null end)),
     client_cpu_util: .cpu_util}
  else null end;
def problem($kind; $cexit; $sexit):
  (if $kind == "baseline" then "baseline_client" else "loadgen" end) as $tool
  | figures as $f
  | if .tool != $tool then "no results: \(.note // "not \($tool) JSON")"
    elif ($f.errors // 1) != 0 then "\($f.errors) errors"
    elif ($f.requests // 0) <= 0 then "no requests measured"
    elif $kind != "baseline" and $f.cpu_us == null then "no server CPU per request (its STATS)"
    elif $cexit != 0 then "the client exited \($cexit)"
    elif $sexit != 0 then "the server exited \($sexit) (it died, or did not stop cleanly)"
    else null end;
'
