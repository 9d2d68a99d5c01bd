# pippyc — top-level build. `make` builds build/pippyc, build/pippyrun and the libraries;
# `make test` builds and runs every test; `make test SANITIZE=1` does the same under ASan + UBSan
# (in build-san/). `make CUDA=1` adds the cuda backend (backend/cuda/, needs nvcc, cuBLAS and
# cuDNN): build/libpippy_backend_cuda.a, linked into pippyc, pippyrun and every stage program,
# and build/test_cuda (`make test CUDA=1` runs it). The default build needs no CUDA.

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
CUDA ?= 0
UCX_CFLAGS := $(shell pkg-config --cflags ucx 2>/dev/null)
UCX_LIBS := $(shell pkg-config --libs ucx 2>/dev/null || echo -lucp -luct -lucs)
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck)

GEN = $(BUILD)/gen
INCLUDES = -Icommon -Ibackend -Iruntime -Icompiler -I$(GEN)
CFLAGS_ALL = -std=gnu11 $(OPT) -g -Wall -Wextra -Werror -fPIC $(SANFLAGS) $(INCLUDES) $(UCX_CFLAGS) $(CFLAGS)
LDFLAGS_ALL = $(SANFLAGS) $(LDFLAGS)
# The cuda backend: nvcc from PATH, else /usr/local/cuda; CUDA_ARCH: the GPUs to build for
# (90: H100/H200). -u pulls the backend's interface out of its library (device.c refers to it weakly).
ifeq ($(CUDA),1)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(firstword $(shell command -v nvcc 2>/dev/null) $(wildcard /usr/local/cuda/bin/nvcc)))
ifeq ($(CUDA_HOME),)
$(error CUDA=1: nvcc is neither on PATH nor in /usr/local/cuda/bin; set CUDA_HOME)
endif
NVCC = $(CUDA_HOME)/bin/nvcc
CUDA_ARCH ?= 90
CUDA_INC = -I$(CUDA_HOME)/include
CUDA_LIBDIR = $(firstword $(wildcard $(CUDA_HOME)/lib64 $(CUDA_HOME)/lib))
NVFLAGS = -std=c++17 -O3 -g --extended-lambda -Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror,-fPIC \
    -gencode arch=compute_$(CUDA_ARCH),code=[sm_$(CUDA_ARCH),compute_$(CUDA_ARCH)] $(INCLUDES) -Ibackend/cuda
# SANITIZE=1: the kernels' host code (their host emulation included) is instrumented too
NVFLAGS += $(if $(SANFLAGS),$(foreach f,-fsanitize=address -fsanitize=undefined -fno-omit-frame-pointer \
    -fno-sanitize-recover=undefined,-Xcompiler $(f)))
CUDA_STAGE_LIBS = -Wl,-u,pippy_backend_cuda_iface -lpippy_backend_cuda
CUDA_SYS_LIBS = -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR) -lcudnn -lcublasLt -lcublas -lcudart -lstdc++
endif
# What a stage program links (also written to $(BUILD)/stage.env for pippyc).
STAGE_LIBS = -lpippyrt $(CUDA_STAGE_LIBS) -lpippy_backend -lpippy_common -ldnnl $(UCX_LIBS) -lnettle -lprotobuf-c -lcjson \
    -lz -lm -lpthread $(CUDA_SYS_LIBS)

COMMON_SRC = $(wildcard common/*.c)
BACKEND_SRC = $(wildcard backend/*.c backend/cpu/*.c)
RUNTIME_SRC = $(wildcard runtime/*.c)
COMPILER_SRC = $(wildcard compiler/*.c)
UNIT_SRC = $(wildcard test/unit/*.c)
CUDA_C_SRC = $(wildcard backend/cuda/*.c)
CUDA_CU_SRC = $(wildcard backend/cuda/*.cu)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

PB_C = $(GEN)/onnx.pb-c.c
PB_H = $(GEN)/onnx.pb-c.h

.PHONY: all test clean deps bench FORCE
all: $(BUILD)/pippyc $(BUILD)/pippyrun $(BUILD)/stage.env $(if $(filter 1,$(CUDA)),$(BUILD)/test_cuda)

# The build's configuration; rewritten (and what depends on it rebuilt) only when it changes,
# e.g. between `make` and `make CUDA=1`.
$(BUILD)/config: FORCE
	@mkdir -p $(BUILD)
	@echo 'CUDA=$(CUDA) CC=$(CC) SANFLAGS=$(SANFLAGS) CUDA_HOME=$(CUDA_HOME) CUDA_ARCH=$(CUDA_ARCH)' > $@.tmp
	@cmp -s $@.tmp $@ && rm -f $@.tmp || mv -f $@.tmp $@

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

# The cuda backend: host C with the CUDA headers, kernels with nvcc.
$(BUILD)/obj/backend/cuda/%.o: backend/cuda/%.c $(PB_H) $(wildcard common/*.h backend/*.h backend/cpu/*.h backend/cuda/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CUDA_INC) -c $< -o $@
$(BUILD)/obj/backend/cuda/%.cu.o: backend/cuda/%.cu $(wildcard common/*.h backend/*.h backend/cuda/*.h backend/cuda/*.cuh)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@
CUDA_OBJ = $(call obj,$(CUDA_C_SRC)) $(patsubst %.cu,$(BUILD)/obj/%.cu.o,$(CUDA_CU_SRC))
$(BUILD)/libpippy_backend_cuda.a: $(CUDA_OBJ)
	rm -f $@
	ar rcs $@ $^
$(BUILD)/obj/test/cuda/%.o: test/cuda/%.c $(PB_H) $(wildcard common/*.h backend/*.h backend/cpu/*.h backend/cuda/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(CUDA_INC) -c $< -o $@

LIBS = $(BUILD)/libpippyc.a $(BUILD)/libpippyrt.a $(BUILD)/libpippy_backend.a $(BUILD)/libpippy_common.a \
    $(if $(filter 1,$(CUDA)),$(BUILD)/libpippy_backend_cuda.a)
LINK_LIBS = -L$(BUILD) -lpippyc $(STAGE_LIBS)

$(BUILD)/pippyc: $(call obj,cli/pippyc.c) $(LIBS) $(BUILD)/config
	$(CC) $(LDFLAGS_ALL) $< -o $@ $(LINK_LIBS)

$(BUILD)/pippyrun: $(call obj,cli/pippyrun.c) $(LIBS) $(BUILD)/config
	$(CC) $(LDFLAGS_ALL) $< -o $@ $(LINK_LIBS)

$(BUILD)/test_unit: $(call obj,$(UNIT_SRC)) $(LIBS) $(BUILD)/config
	$(CC) $(LDFLAGS_ALL) $(call obj,$(UNIT_SRC)) -o $@ $(LINK_LIBS) $(CHECK_LIBS)

# A hostile process for the network tests (test/e2e/test_security.py).
$(BUILD)/test_intruder: $(call obj,test/intruder.c) $(LIBS) $(BUILD)/config
	$(CC) $(LDFLAGS_ALL) $< -o $@ $(LINK_LIBS)

$(BUILD)/test_cuda: $(call obj,$(wildcard test/cuda/*.c)) $(LIBS) $(BUILD)/config
	$(CC) $(LDFLAGS_ALL) $(call obj,$(wildcard test/cuda/*.c)) -o $@ $(LINK_LIBS)

# Flags pippyc uses to compile generated stage programs against this build (CUDA=1: the programs
# link the cuda backend too).
$(BUILD)/stage.env: Makefile $(BUILD)/config
	@mkdir -p $(BUILD)
	@printf 'CC=%s\nROOT=%s\nBUILDDIR=%s/%s\nSANFLAGS=%s\nLIBS=%s\nCUDA=%s\n' \
	  "$(CC)" "$(CURDIR)" "$(CURDIR)" "$(BUILD)" "$(SANFLAGS)" "$(STAGE_LIBS)" "$(CUDA)" > $@

test: all $(BUILD)/test_unit $(BUILD)/test_intruder samples/models/mlp_train.weights
	sh test/run_tests.sh $(BUILD)

# The seed MLP's weights are made, not committed (see samples/README.md).
samples/models/mlp_train.weights: samples/mlp_train_weights.py samples/models/mlp_train.onnx
	python3 samples/mlp_train_weights.py --force

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
