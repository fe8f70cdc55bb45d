# iomodels - one small server per Unix I/O model, one load generator, tests and plots.
#
#   make            build every server and client into build/
#   make check      install missing Debian packages, build, run every test (Check)
#   make run-all    install missing packages, build, measure every model, draw the plots
#                   and write the report (PROFILE=quick|full|test; see docs/run-all.md)
#   make plots RESULTS=results/<dir>   redraw a saved run's figures and report, running nothing
#   make asan       the same tests, built with AddressSanitizer + UndefinedBehaviorSanitizer
#   make tsan       the threaded model's tests under ThreadSanitizer
#   make fuzz       libFuzzer on the protocol parser (FUZZ_SECONDS=60)
#   make faults     every model under strace fault injection (also part of make check)
#   make lab-start LAB=N DIR=path   a lab's starter files; make grade LAB=N DIR=path grades them
#   make bench      the performance comparison: our epoll, epoll_et and uring against libevent and
#                   libuv, stamps on and off, loadgen against a minimal client (docs/bench.md)
#   make bench-scale  epoll, epoll_et and uring at 100, 1000 and 10,000 connections
#   make deps       install the Debian packages the suite needs (apt-get, as root)
#   make CC=clang   build with clang instead of gcc

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2 -D_FORTIFY_SOURCE=2
SANITIZE ?=
CFLAGS  ?= -g
CFLAGS  += -std=gnu11 -D_GNU_SOURCE $(OPT) -Wall -Wextra -Werror -pthread $(SANITIZE)
LDFLAGS += -pthread $(SANITIZE)

# Every models/<name>.c is one server, build/<name>.
MODELS  := $(sort $(basename $(notdir $(wildcard models/*.c))))
CLIENTS := $(sort $(basename $(notdir $(wildcard clients/*.c))))
COMMON  := proto stats stamp options server conn serve_blocking phases work
TESTS   := main helpers test_proto test_servers test_timeouts test_hostile test_loadgen test_runall \
           test_labs test_stamps test_bench

COMMON_OBJ := $(COMMON:%=$(BUILD)/obj/common/%.o)
SERVERS    := $(MODELS:%=$(BUILD)/%)
CLIENT_BIN := $(CLIENTS:%=$(BUILD)/%)
TEST_BIN   := $(BUILD)/check_iomodels

# Debian packages: check (libcheck tests), pkg-config, gnuplot-nox (plots), liburing-dev
# (the io_uring model), netcat-openbsd (nc, to type at a server as the README shows), jq
# (run-all reads loadgen's JSON with it), strace (make faults injects system-call faults with it),
# libevent-dev and libuv1-dev (the two production reference servers, models/libevent.c and
# models/libuv.c). make bench also wants linux-perf (BENCH_DEB_PACKAGES: it profiles with perf).
DEB_PACKAGES := check pkg-config gnuplot-nox liburing-dev netcat-openbsd jq strace libevent-dev \
                libuv1-dev
BENCH_DEB_PACKAGES := linux-perf

all: $(SERVERS) $(CLIENT_BIN)

# Rebuild everything when the compiler or flags change (e.g. make CC=clang after make).
$(BUILD)/.flags: FORCE
	@mkdir -p $(@D)
	@echo '$(CC) $(CFLAGS) $(LDFLAGS)' | cmp -s - $@ || echo '$(CC) $(CFLAGS) $(LDFLAGS)' > $@

$(BUILD)/obj/%.o: %.c $(BUILD)/.flags
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(SERVERS): $(BUILD)/%: $(BUILD)/obj/models/%.o $(COMMON_OBJ)
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/uring: LDLIBS += -luring
$(BUILD)/libevent: LDLIBS += $(shell pkg-config --libs libevent_core 2>/dev/null || echo -levent_core)
$(BUILD)/libuv: LDLIBS += $(shell pkg-config --libs libuv 2>/dev/null || echo -luv)

$(CLIENT_BIN): $(BUILD)/%: $(BUILD)/obj/clients/%.o $(COMMON_OBJ)
	$(CC) $(LDFLAGS) $^ -o $@ -lm

CHECK_CFLAGS = $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   = $(shell pkg-config --libs check 2>/dev/null || echo -lcheck)

$(BUILD)/obj/tests/%.o: tests/%.c $(BUILD)/.flags
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(CHECK_CFLAGS) -DBUILD_DIR='"$(abspath $(BUILD))"' \
		-DSOURCE_DIR='"$(CURDIR)"' -MMD -MP -c $< -o $@

$(TEST_BIN): $(TESTS:%=$(BUILD)/obj/tests/%.o) $(COMMON_OBJ)
	$(CC) $(LDFLAGS) $^ -o $@ $(CHECK_LIBS) -lm

# One Check runner for every suite, so the last line is Check's summary of them all.
check: deps
	@$(MAKE) --no-print-directory all tests
	@$(TEST_BIN)

tests: $(TEST_BIN)

asan:
	@$(MAKE) --no-print-directory check BUILD=build/asan OPT=-O1 \
		SANITIZE='-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all'

# make tsan: the threaded models' whole test suite under ThreadSanitizer (TSAN_MODELS; aio is
# left out: TSan's signal handling does not survive glibc AIO's completion signals, see
# docs/robustness.md). Any report stops the server (halt_on_error), so its test fails.
TSAN_MODELS ?= threads
tsan: deps
	@$(MAKE) --no-print-directory all tests BUILD=build/tsan OPT=-O1 SANITIZE=-fsanitize=thread
	@TSAN_OPTIONS='halt_on_error=1' IOMODELS_TEST_MODELS='$(TSAN_MODELS)' \
		IOMODELS_BIG_FRAMES_CONNS=200 build/tsan/check_iomodels

# ---- Fuzzing and fault injection (issue 5) ------------------------------------------------
#   make fuzz [FUZZ_SECONDS=60]  libFuzzer on the protocol parser (tests/fuzz_proto.c), built
#                                with clang, ASan and UBSan; starts from tests/fuzz/corpus, keeps
#                                what it finds in $(BUILD)/fuzz/corpus; a crash fails the target
#   make faults                  every model under strace fault injection (tests/faults)
FUZZ_SECONDS ?= 60
FUZZ_DEB_PACKAGES := clang libclang-rt-dev
FUZZ_FLAGS := -g -O1 -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all

fuzz:
	@$(MAKE) --no-print-directory deps DEB_PACKAGES='$(FUZZ_DEB_PACKAGES)'
	@$(MAKE) --no-print-directory $(BUILD)/fuzz/fuzz_proto
	@mkdir -p $(BUILD)/fuzz/corpus && cp tests/fuzz/corpus/* $(BUILD)/fuzz/corpus/
	$(BUILD)/fuzz/fuzz_proto -max_total_time=$(FUZZ_SECONDS) -max_len=8192 \
		-dict=tests/fuzz/proto.dict -artifact_prefix=$(BUILD)/fuzz/ $(BUILD)/fuzz/corpus

$(BUILD)/fuzz/fuzz_proto: tests/fuzz_proto.c common/proto.c common/proto.h
	@mkdir -p $(@D)
	clang $(FUZZ_FLAGS) tests/fuzz_proto.c common/proto.c -o $@

faults: deps
	@$(MAKE) --no-print-directory all
	@tests/faults $(BUILD)
# ---- end of fuzzing and fault injection ---------------------------------------------------

# ---- Labs (issue 6) ------------------------------------------------------------------------
#   make lab-start LAB=N DIR=path   lab N's starter files into DIR (tests/labs/lab-start)
#   make grade LAB=N DIR=path       grade lab N in DIR: a table of checks, the total, and
#                                   DIR/grade.json (tests/labs/grade); SKIPPED is not an error
lab-start:
	@tests/labs/lab-start '$(LAB)' '$(DIR)'

grade: deps
	@$(MAKE) --no-print-directory all tests
	@IOMODELS_BUILD='$(abspath $(BUILD))' tests/labs/grade '$(LAB)' '$(DIR)'; \
		status=$$?; [ $$status = 77 ] && status=0; exit $$status
# ---- end of labs --------------------------------------------------------------------------

run-all: deps all
	@plots/run-all

# The performance comparison of issue 7 (docs/bench.md): at most 5 minutes, benchmark output only.
bench: deps all
	@$(MAKE) --no-print-directory deps DEB_PACKAGES='$(BENCH_DEB_PACKAGES)'
	@IOMODELS_BUILD='$(BUILD)' plots/bench

bench-scale: deps all
	@IOMODELS_BUILD='$(BUILD)' plots/bench-scale

# Redraw the figures and the report of a saved run (default: the latest) without measuring.
RESULTS ?= results/latest
plots: deps
	@plots/make-plots $(RESULTS)

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' \
			|| missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "make deps: installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null \
			|| { echo "make deps: apt-get failed" >&2; exit 1; }; \
	else \
		echo "make deps: missing Debian packages:$$missing" >&2; \
		echo "run:  sudo apt-get install -y$$missing" >&2; exit 1; \
	fi

format:
	clang-format -i models/*.c common/*.[ch] clients/*.c tests/*.[ch]

clean:
	rm -rf build

FORCE:
.PHONY: all check tests asan tsan lab-start grade run-all bench bench-scale plots deps format clean \
	FORCE fuzz faults

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
