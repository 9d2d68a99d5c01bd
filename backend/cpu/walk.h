/* walk.h — the strided walk that the light families share (binary, reduce, shape).
 *
 * A kernel walks a tensor in row-major order over dims[0..rank), with, for each of its
 * operands, an element stride per dim (0: broadcast or reduced; negative: walks back).
 * create collapses the dims once (pippy_walk_collapse); run takes the innermost dim as one
 * row and moves to the next row with an odometer over the outer dims (PIPPY_WALK_NEXT for
 * one stride list; binary.c keeps its own for up to three).
 *
 * Header-only: PIPPY_WALK_NEXT sits in run loops. */
#ifndef PIPPY_CPU_WALK_H
#define PIPPY_CPU_WALK_H

#include <stdint.h>

/* In place: drop size-1 dims and merge each dim into the one before it when every one of
 * the n stride lists walks the pair as one (str[j][i-1] == str[j][i] * dims[i]). A walk
 * left with no dim (one element) gets one dim of extent 1, with stride lone_str in every
 * list. Returns the new rank (>= 1). */
static inline int pippy_walk_collapse(int rank, int64_t *dims, int n, int64_t *const *str, int64_t lone_str)
{
    int r = 0;
    for (int i = 0; i < rank; i++) {
        if (dims[i] == 1)
            continue;
        int merge = r > 0;
        for (int j = 0; j < n && merge; j++)
            merge = str[j][r - 1] == str[j][i] * dims[i];
        if (merge) {
            dims[r - 1] *= dims[i];
            for (int j = 0; j < n; j++)
                str[j][r - 1] = str[j][i];
        } else {
            dims[r] = dims[i];
            for (int j = 0; j < n; j++)
                str[j][r] = str[j][i];
            r++;
        }
    }
    if (r == 0) {
        dims[0] = 1;
        for (int j = 0; j < n; j++)
            str[j][0] = lone_str;
        r = 1;
    }
    return r;
}

/* The next row: advance the multi-index idx over dims[0..r-1) (dim r-1 is the row itself)
 * and the element offset off (an lvalue) by the strides str. A statement macro rather than
 * a function so that run loops compile as when written out: as an inline function gcc -O3
 * unrolled it differently, and some short-row cases ran 2-20% slower. */
#define PIPPY_WALK_NEXT(r, dims, str, idx, off)                       \
    for (int pippy_d_ = (r) - 2; pippy_d_ >= 0; pippy_d_--) {         \
        (off) += (str)[pippy_d_];                                     \
        if (++(idx)[pippy_d_] < (dims)[pippy_d_])                     \
            break;                                                    \
        (off) -= (str)[pippy_d_] * (dims)[pippy_d_];                  \
        (idx)[pippy_d_] = 0;                                          \
    }

#endif
