/* layout.h — the layouts of a dense kernel with constant weights, chosen by measurement.
 *
 * Two candidates per kernel:
 *   - MatMul, Gemm with a constant B: B kept as given ("plain": no reorder, oneDNN reads the
 *     user's strides) or reordered once at create into the layout oneDNN's primitive prefers
 *     with format any ("reordered");
 *   - Conv with constant weights: the primitive reading the plain NC... source as given
 *     ("plain") or in the layout it prefers, reordered before each call ("reordered"); the
 *     destination and the weights are in the primitive's layouts either way (with the
 *     source plain, oneDNN's blocked convolutions read fewer than 16 channels directly;
 *     the plain source and destination together ran 1.3-11x slower on ResNet-18's shapes).
 * Which one runs faster depends on the machine and the shape: on one AMD EPYC the reordered B
 * ran M256 K1024 N4096 at half the speed of the plain one, on another of the same kind it was
 * the faster (bench/README.md, issue 10). So, by default, create builds both candidates, times
 * each on the real shape on the calling thread and keeps the faster (pippy_layout_choose):
 *   - timed calls alternating between the two, the fastest call of each counts (the first
 *     calls, which touch the buffers first, are the slow ones); at least PIPPY_LAYOUT_MIN_RUNS of each,
 *     more while the measurement has taken less than PIPPY_LAYOUT_BUDGET_MS and neither is
 *     ahead by more than PIPPY_LAYOUT_CLEAR, at most PIPPY_LAYOUT_MAX_RUNS (a GPT with d 512 and
 *     8 x 64 tokens: 5 distinct shapes, 1-4.5 ms per call, about 0.1 s at start-up);
 *   - plain is kept only when it is faster by more than PIPPY_LAYOUT_PLAIN_MARGIN: near-ties
 *     stay reordered (the layout used before the measurement existed), so that runs of one
 *     program repeat their results bit for bit unless a shape's two times sit at the margin
 *     (the candidates may sum in different orders);
 *   - time is the thread's CPU time when the kernel runs on 1 thread (another process
 *     taking the core does not count), else wall-clock time;
 *   - a plain candidate that runs one of oneDNN's reference implementations ("ref:" in its
 *     implementation name) while the other does not is dropped untimed (those are many times
 *     slower, and timing them would cost start-up time);
 *   - the inputs are made-up data of the real shapes (values in [-0.5, 0.5)), the outputs
 *     scratch buffers; both are freed before create returns;
 *   - the choice is cached for the process, keyed by a hash of the op, its input and output
 *     shapes, which inputs are constant, its attributes and the thread count, so each
 *     distinct shape is measured once (a GPT's layers share a few).
 * The candidates compute the same products with the same primitive kind; results may differ
 * in the last bits (oneDNN may sum in another order), within the kernels' tests' tolerances.
 *
 * PIPPY_MATMUL_LAYOUT forces a choice (MatMul, Gemm and Conv alike): "plain", "reordered" or "measure" (the default); it is
 * read at each create, so tests and benchmarks can set it between creates. Anything else is
 * an error at create. PIPPY_MATMUL_LAYOUT_LOG (any value) prints each measurement on stderr. */
#ifndef PIPPY_CPU_LAYOUT_H
#define PIPPY_CPU_LAYOUT_H

#include "dense.h"

#define PIPPY_LAYOUT_MIN_RUNS 2
#define PIPPY_LAYOUT_MAX_RUNS 4
#define PIPPY_LAYOUT_BUDGET_MS 20.0
#define PIPPY_LAYOUT_CLEAR 1.10
#define PIPPY_LAYOUT_PLAIN_MARGIN 1.05

typedef enum { PIPPY_LAYOUT_MEASURE, PIPPY_LAYOUT_PLAIN, PIPPY_LAYOUT_REORDERED } pippy_layout_mode;

/* PIPPY_MATMUL_LAYOUT as a mode (unset or empty: measure); an unknown value fails. */
pippy_status pippy_layout_mode_get(pippy_layout_mode *mode);

/* Builds one candidate of the op's oneDNN kernel into k: plain = 1 the plain candidate (above),
 * 0 the reordered one. */
typedef pippy_status (*pippy_layout_build_fn)(const pippy_op_desc *d, const pippy_kernel *ref, pippy_dnnl_kernel *k,
                                              int plain);

/* Builds d's kernel into k with the layout PIPPY_MATMUL_LAYOUT asks for, measuring both
 * candidates (once per distinct op and shape) when it asks for none. Input w_index is the
 * weights; when it is not constant there is nothing to choose and build gets plain = 0. */
pippy_status pippy_layout_choose(const pippy_op_desc *d, const pippy_kernel *ref, pippy_dnnl_kernel *k,
                                 int w_index, pippy_layout_build_fn build);

/* What this process measured so far: distinct shapes measured, how many chose plain, and
 * the milliseconds (wall-clock) spent measuring; for bench/ and tests. */
void pippy_layout_stats(int *measured, int *plain, double *ms);

#endif
