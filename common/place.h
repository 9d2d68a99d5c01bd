/* place.h — where a value of a generated stage program lives: the compiler's memory plan and the
 * runtime (which reads the table of values for PIPPY_DUMP) agree on these numbers. */
#ifndef PIPPY_PLACE_H
#define PIPPY_PLACE_H

enum {
    PIPPY_PLACE_IN = 0,  /* a stage input slot (in_[i]) */
    PIPPY_PLACE_OUT,     /* a stage output slot (out_[i]) */
    PIPPY_PLACE_WEIGHTS, /* an offset into the weights (W_) */
    PIPPY_PLACE_GRADS,   /* an offset into the gradient buffer (G_) */
    PIPPY_PLACE_STASH,   /* an offset into the microbatch's stash (S_) */
    PIPPY_PLACE_ARENA,   /* an offset into the arena (A_) */
};

#endif
