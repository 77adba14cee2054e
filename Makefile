# xgate build. `make` builds everything into $(BUILD); `make test` also installs
# what is missing, then runs unit, BPF and end-to-end suites, plain and sanitized.
BUILD     ?= build
SAN       ?= 0
PREFIX    ?= /usr/local
DESTDIR   ?=
VERSION   := 0.1.0

CC        ?= gcc
CLANG     ?= clang
BPFTOOL   ?= bpftool
PYTHON    := /usr/bin/python3

PKGS      := libbpf libxdp liburing jansson openssl zlib libbrotlienc libbrotlidec \
             libnghttp2 hiredis libcares libxml-2.0 libpcre2-8 modsecurity libprotobuf-c
CPPFLAGS  += -D_GNU_SOURCE -DXGATE_VERSION='"$(VERSION)"' -Iuserspace -I. -I$(BUILD)/bpf
CFLAGS    ?= -O2 -g
CFLAGS    += -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow \
             -fno-strict-aliasing -pthread $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS    += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm
ifeq ($(SAN),1)
CFLAGS    += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS   += -fsanitize=address,undefined
endif
# libFuzzer build (make fuzz-build): the library is instrumented for coverage and sanitizers,
# only the harnesses link the fuzzer's main().
FUZZ_CC   ?= clang-14
ifeq ($(FUZZ),1)
CC        := $(FUZZ_CC)
CFLAGS    += -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
             -fno-sanitize-recover=undefined
endif

BPF_SRCS  := $(wildcard bpf/*.bpf.c)
BPF_OBJS  := $(patsubst bpf/%.bpf.c,$(BUILD)/bpf/%.bpf.o,$(BPF_SRCS))
BPF_SKELS := $(patsubst bpf/%.bpf.c,$(BUILD)/bpf/%.skel.h,$(BPF_SRCS))
BPF_CFLAGS := -O2 -g -target bpf -Wall -Werror -I. -I/usr/include/$(shell uname -m)-linux-gnu \
             -D__TARGET_ARCH_x86

LIB_SRCS  := $(sort $(shell find userspace -name '*.c' -not -path 'userspace/xgate/*' \
                        -not -path 'userspace/xgatectl/*'))
LIB_OBJS  := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRCS))
XGATE_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard userspace/xgate/*.c))
CTL_OBJS  := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard userspace/xgatectl/*.c))
UNIT_SRCS := $(wildcard tests/unit/test_*.c tests/bpf/test_*.c)
UNIT_BINS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
BENCH_SRCS := $(wildcard bench/*.c)
BENCH_BINS := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRCS))

# libbrotlidec: only the unit tests decode (they check what the encoders wrote).
# Generated BPF objects and skeletons are kept, not treated as intermediates.
.SECONDARY:

.PHONY: all deps test unit-test e2e-test asan-test test-kernels bench-ktls run bench clean install format
.PHONY: fuzz-build fuzz-bins fuzz fuzz-smoke
all: $(BUILD)/xgate $(BUILD)/xgatectl $(UNIT_BINS) $(BENCH_BINS)

deps:
	@bash scripts/install-deps.sh

$(BUILD)/bpf/%.bpf.o: bpf/%.bpf.c $(wildcard bpf/*.h maps/*.h)
	@mkdir -p $(@D)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BUILD)/bpf/%.skel.h: $(BUILD)/bpf/%.bpf.o
	$(BPFTOOL) gen skeleton $< > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/%.o: %.c $(BPF_SKELS)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

# The admin dashboard page is assembled into the binary (.incbin in dashboard.c).
$(BUILD)/obj/userspace/admin/dashboard.o: userspace/admin/dashboard.html

$(BUILD)/libxgate.a: $(LIB_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/xgate: $(XGATE_OBJS) $(BUILD)/libxgate.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/xgatectl: $(CTL_OBJS) $(BUILD)/libxgate.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: tests/%.c tests/unit/check.h $(BUILD)/libxgate.a $(BPF_OBJS)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Itests $(CFLAGS) $(LDFLAGS) $< $(BUILD)/libxgate.a $(LDLIBS) -o $@

$(BUILD)/bench/%: bench/%.c $(BUILD)/libxgate.a $(BPF_OBJS)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) $< $(BUILD)/libxgate.a $(LDLIBS) -o $@

# Unit and BPF tests: each binary prints "NAME: N passed, N failed" and exits non-zero on failure.
unit-test: all
	@BUILD=$(BUILD) bash scripts/run-unit-tests.sh $(UNIT_BINS)

e2e-test: all
	XGATE_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e $(PYTEST_ARGS)

asan-test:
	$(MAKE) BUILD=build/asan SAN=1 unit-test e2e-test

test: deps
	$(MAKE) all
	$(MAKE) unit-test
	$(MAKE) fuzz-smoke
	$(MAKE) e2e-test
	$(MAKE) asan-test

# Boots Debian 12's 6.1 kernel (or $(KERNELS)) under QEMU and runs the kernel-facing
# suites inside with this build; see README "Other kernels".
test-kernels: deps
	$(MAKE) all
	BUILD=$(BUILD) bash scripts/test-kernels.sh

# bench/ktls.sh in the 6.1 guest: xgate CPU per GiB with kTLS vs userspace TLS.
bench-ktls: deps
	$(MAKE) all
	XGATE_BUILD=$(BUILD) bash bench/ktls.sh

# Fuzzing (tests/fuzz/README.md): harnesses in $(FUZZ_BUILD)/fuzz/, seeds in tests/fuzz/corpus/.
FUZZ_BUILD   ?= build/fuzz
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 5
FUZZERS      := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS    := $(patsubst %,$(BUILD)/fuzz/fuzz_%,$(FUZZERS))

# The config harness loads millions of configs: it keeps the process-wide target and
# metrics registries (which never shrink, by design) to a few names. See fuzz_config.c.
FUZZ_LDFLAGS_config := -Wl,--wrap=target_state_get,--wrap=metrics_route_slot \
		       -Wl,--wrap=metrics_listener_slot,--wrap=metrics_target_slot \
		       -Wl,--wrap=metrics_split_slot,--wrap=metrics_consumer_slot \
		       -Wl,--wrap=metrics_compose_slot

fuzz-build:
	$(MAKE) FUZZ=1 BUILD=$(FUZZ_BUILD) fuzz-bins

fuzz-bins: $(FUZZ_BINS)

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(wildcard tests/fuzz/*.h) $(BUILD)/libxgate.a
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) -Itests $(CFLAGS) -fsanitize=fuzzer $(FUZZ_LDFLAGS_$*) $< \
		$(BUILD)/libxgate.a $(LDLIBS) -o $@

# Each harness in turn for FUZZ_SECONDS (FUZZ_ONLY="a b" to pick some), niced, one process.
fuzz: fuzz-build
	FUZZ_BUILD=$(FUZZ_BUILD) bash scripts/fuzz.sh run $(FUZZ_SECONDS) $(FUZZ_ONLY)

# Regression check for make test: every seed, then a few seconds of mutation per harness.
fuzz-smoke: fuzz-build
	FUZZ_BUILD=$(FUZZ_BUILD) bash scripts/fuzz.sh smoke $(FUZZ_SMOKE_SECONDS) $(FUZZ_ONLY)

run: deps all
	bash scripts/demo.sh

bench: deps all
	bash bench/run.sh

install: $(BUILD)/xgate $(BUILD)/xgatectl
	install -D -m 0755 $(BUILD)/xgate $(DESTDIR)$(PREFIX)/bin/xgate
	install -D -m 0755 $(BUILD)/xgatectl $(DESTDIR)$(PREFIX)/bin/xgatectl
	install -D -m 0644 config/xgate.json $(DESTDIR)/etc/xgate/xgate.json
	install -D -m 0644 scripts/xgate.service $(DESTDIR)/lib/systemd/system/xgate.service
	for m in docs/*.8; do [ -f "$$m" ] && install -D -m 0644 $$m $(DESTDIR)$(PREFIX)/share/man/man8/$$(basename $$m); done; true

format:
	clang-format -i $$(find userspace tests bpf maps bench -name '*.[ch]')

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
