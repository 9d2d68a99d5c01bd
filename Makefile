# pippyc — top-level build. `make` builds build/pippyc, build/pippyrun and the libraries;
# `make test` builds and runs every test; `make test SANITIZE=1` does the same under ASan + UBSan
# (in build-san/).

SANITIZE ?= 0
ifeq ($(SANITIZE),1)
BUILD ?= build-san
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT = -O1
else
BUILD ?= build
SANFLAGS =
OPT = -O3
endif

CC ?= cc
UCX_CFLAGS := $(shell pkg-config --cflags ucx 2>/dev/null)
UCX_LIBS := $(shell pkg-config --libs ucx 2>/dev/null || echo -lucp -luct -lucs)
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck)

GEN = $(BUILD)/gen
INCLUDES = -Icommon -Ibackend -Iruntime -Icompiler -I$(GEN)
CFLAGS_ALL = -std=gnu11 $(OPT) -g -Wall -Wextra -Werror -fPIC $(SANFLAGS) $(INCLUDES) $(UCX_CFLAGS) $(CFLAGS)
LDFLAGS_ALL = $(SANFLAGS) $(LDFLAGS)
# What a stage program links (also written to $(BUILD)/stage.env for pippyc).
STAGE_LIBS = -lpippyrt -lpippy_backend -lpippy_common -ldnnl $(UCX_LIBS) -lprotobuf-c -lcjson -lz -lm -lpthread

COMMON_SRC = $(wildcard common/*.c)
BACKEND_SRC = $(wildcard backend/*.c backend/cpu/*.c)
RUNTIME_SRC = $(wildcard runtime/*.c)
COMPILER_SRC = $(wildcard compiler/*.c)
UNIT_SRC = $(wildcard test/unit/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

PB_C = $(GEN)/onnx.pb-c.c
PB_H = $(GEN)/onnx.pb-c.h

.PHONY: all test clean deps bench
all: $(BUILD)/pippyc $(BUILD)/pippyrun $(BUILD)/stage.env

deps:
	sh tools/install-deps.sh

$(PB_C) $(PB_H): schemas/onnx.proto
	@mkdir -p $(GEN)
	protoc-c --proto_path=schemas --c_out=$(GEN) schemas/onnx.proto

$(BUILD)/obj/gen/onnx.pb-c.o: $(PB_C) $(PB_H)
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 $(OPT) -g -fPIC $(SANFLAGS) -I$(GEN) -c $< -o $@

$(BUILD)/obj/%.o: %.c $(PB_H) $(wildcard common/*.h backend/*.h backend/cpu/*.h runtime/*.h compiler/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

# The optimizer's step loops vectorise only when sqrtf need not set errno (its argument is >= 0).
$(BUILD)/obj/runtime/optim.o: CFLAGS_ALL += -fno-math-errno

$(BUILD)/obj/test/unit/%.o: test/unit/%.c $(PB_H) $(wildcard common/*.h backend/*.h runtime/*.h compiler/*.h test/unit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CHECK_CFLAGS) -c $< -o $@

$(BUILD)/libpippy_common.a: $(call obj,$(COMMON_SRC)) $(BUILD)/obj/gen/onnx.pb-c.o
	ar rcs $@ $^
$(BUILD)/libpippy_backend.a: $(call obj,$(BACKEND_SRC))
	ar rcs $@ $^
$(BUILD)/libpippyrt.a: $(call obj,$(RUNTIME_SRC))
	ar rcs $@ $^
$(BUILD)/libpippyc.a: $(call obj,$(COMPILER_SRC))
	ar rcs $@ $^

LIBS = $(BUILD)/libpippyc.a $(BUILD)/libpippyrt.a $(BUILD)/libpippy_backend.a $(BUILD)/libpippy_common.a
LINK_LIBS = -L$(BUILD) -lpippyc $(STAGE_LIBS)

$(BUILD)/pippyc: $(call obj,cli/pippyc.c) $(LIBS)
	$(CC) $(LDFLAGS_ALL) $< -o $@ $(LINK_LIBS)

$(BUILD)/pippyrun: $(call obj,cli/pippyrun.c) $(LIBS)
	$(CC) $(LDFLAGS_ALL) $< -o $@ $(LINK_LIBS)

$(BUILD)/test_unit: $(call obj,$(UNIT_SRC)) $(LIBS)
	$(CC) $(LDFLAGS_ALL) $(call obj,$(UNIT_SRC)) -o $@ $(LINK_LIBS) $(CHECK_LIBS)

# Flags pippyc uses to compile generated stage programs against this build.
$(BUILD)/stage.env: Makefile
	@mkdir -p $(BUILD)
	@printf 'CC=%s\nROOT=%s\nBUILDDIR=%s/%s\nSANFLAGS=%s\nLIBS=%s\n' \
	  "$(CC)" "$(CURDIR)" "$(CURDIR)" "$(BUILD)" "$(SANFLAGS)" "$(STAGE_LIBS)" > $@

test: all $(BUILD)/test_unit
	sh test/run_tests.sh $(BUILD)

bench: all
	sh bench/run.sh

clean:
	rm -rf build build-san

# The README's first command: compile a bundled GPT-style model into 3 stages, run them as
# 3 processes over UCX with 4 microbatches, and compare with onnxruntime's output.
demo: all
	$(BUILD)/pippyc samples/models/gpt_op17.onnx --stages 3 --batch 8 --microbatches 4 -o out/gpt
	$(BUILD)/pippyrun out/gpt --input idx=samples/models/gpt_op17.data/input_idx.npy \
	    --output logits=out/gpt/logits.npy --trace out/gpt/trace.json
	python3 test/e2e/refcheck.py samples/models/gpt_op17.data/output_logits.npy out/gpt/logits.npy
	@echo "trace for https://ui.perfetto.dev: out/gpt/trace.json; generated code: out/gpt/stage*.c"
.PHONY: demo
