/* optim.h — the optimizers of a training run (SGD, AdamW), its learning-rate schedule and gradient
 * clipping, with torch.optim's formulas and order of operations, over flat float32 arrays.
 *
 * A stage's trainable parameters are one contiguous float32 region; its gradients and its optimizer
 * state mirror it (state: pippy_optim_state_floats(cfg, n) floats, zeroed before the first step).
 * One training step, given the accumulated gradients:
 *   1. sumsq = pippy_optim_sumsq(grad, n) per region, summed over every stage (all-reduce);
 *   2. scale = pippy_optim_clip_coef(cfg->clip_grad_norm, sumsq) (1 when clipping is off), times
 *      any averaging factor (1/microbatches, 1/replicas);
 *   3. pippy_optim_step(cfg, step, pippy_optim_lr(cfg, step - 1), scale, param, grad, state, n).
 * The scale is applied to each gradient element as it is read (g = grad[i] * scale, rounded to
 * float as torch's in-place grad.mul_(coef) would), so clipping costs no extra pass.
 *
 * Formulas (per element, float32 arithmetic; scalars computed in double, then rounded to float as
 * torch does when it applies a Python number to a float tensor):
 *   SGD   (torch.optim.SGD, maximize=False):
 *         g = g + wd * p                         (when wd != 0)
 *         b = g (step 1)  or  b = b * momentum + (1 - dampening) * g   (when momentum != 0)
 *         g = g + momentum * b (nesterov)  or  g = b
 *         p = p + (-lr) * g
 *   AdamW (torch.optim.AdamW, amsgrad=False, maximize=False):
 *         p = p * (1 - lr * wd)                  (decoupled decay, when wd != 0)
 *         m = lerp(m, g, 1 - beta1)              (torch's lerp: m + w (g - m) for w < 0.5,
 *                                                 else g - (g - m)(1 - w))
 *         v = v * beta2 + ((1 - beta2) * g) * g
 *         denom = sqrt(v) / sqrt(1 - beta2^step) + eps
 *         p = p + (-(lr / (1 - beta1^step)) * m) / denom
 *   The step count is 1-based (torch's state['step'] after its increment).
 *
 * Learning-rate schedule, lr(k) for the k-th step counted from 0 (k = step - 1):
 *   constant: lr(k) = lr
 *   cosine:   k <  W:     lr(k) = lr * (k + 1) / W                           (linear warm-up, W = warmup_steps)
 *             k >= W:     p = min(1, (k - W) / D)                             (D = decay_steps)
 *                         lr(k) = min_lr + 0.5 * (lr - min_lr) * (1 + cos(pi * p))
 *   This equals torch's SequentialLR([LinearLR(start_factor=1/W, total_iters=W-1),
 *   CosineAnnealingLR(T_max=D, eta_min=min_lr)], milestones=[W]) for k < W + D; after W + D steps
 *   it stays at min_lr (torch's cosine would rise again).
 *
 * Gradient clipping as torch.nn.utils.clip_grad_norm_(max_norm, norm_type=2):
 *   total_norm = sqrt(sum of every gradient element squared), coef = min(1, max_norm / (total_norm + 1e-6)).
 *
 * The step functions allocate nothing and make one pass over their arrays (vectorised). */
#ifndef PIPPY_OPTIM_H
#define PIPPY_OPTIM_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef enum { PIPPY_OPTIM_SGD = 0, PIPPY_OPTIM_ADAMW = 1 } pippy_optim_kind;
typedef enum { PIPPY_LR_CONSTANT = 0, PIPPY_LR_COSINE = 1 } pippy_lr_schedule;

typedef struct {
    pippy_optim_kind kind;
    double lr;
    double momentum, dampening; /* SGD */
    int nesterov;               /* SGD */
    double weight_decay;
    double beta1, beta2, eps;   /* AdamW */
    double clip_grad_norm;      /* max total gradient norm; 0 = no clipping */
    pippy_lr_schedule schedule;
    int64_t warmup_steps;       /* cosine: steps of linear warm-up */
    int64_t decay_steps;        /* cosine: steps from lr down to min_lr after the warm-up; 0: the rest of
                                   the run (the runtime sets it from --steps before the first step) */
    double min_lr;              /* cosine: the floor */
} pippy_optim_config;

/* torch's defaults for kind: SGD lr 1e-3, no momentum, no decay; AdamW lr 1e-3, betas (0.9, 0.999),
 * eps 1e-8, weight_decay 1e-2. Constant schedule, no clipping. */
void pippy_optim_defaults(pippy_optim_config *c, pippy_optim_kind kind);

/* Check every field (ranges, combinations torch refuses: nesterov needs momentum > 0 and
 * dampening 0; cosine needs decay_steps >= 1 and 0 <= min_lr <= lr). PIPPY_ERR_USAGE naming the
 * option and the value. */
pippy_status pippy_optim_check(const pippy_optim_config *c);

const char *pippy_optim_kind_name(pippy_optim_kind k); /* "sgd", "adamw" */

/* Floats of optimizer state for n parameters: SGD 0 (n with momentum), AdamW 2n (m then v). */
size_t pippy_optim_state_floats(const pippy_optim_config *c, size_t n);

/* Learning rate of the k-th step (k from 0), see above. */
double pippy_optim_lr(const pippy_optim_config *c, int64_t k);

/* One optimizer step over n parameters: param and state updated in place, grad read only (each
 * element times grad_scale). step >= 1 counts the steps taken including this one; state must be
 * zero before step 1. param, grad and state must not overlap. */
void pippy_optim_step(const pippy_optim_config *c, int64_t step, double lr, float grad_scale,
                      float *param, const float *grad, float *state, size_t n);

/* Sum of squares of x[0..n) in double. Not finite when an element is not. */
double pippy_optim_sumsq(const float *x, size_t n);

/* torch's clip coefficient min(1, max_norm / (sqrt(sumsq) + 1e-6)); 1 when max_norm is 0.
 * Not finite when sumsq is not (the caller skips such a step). */
double pippy_optim_clip_coef(double max_norm, double sumsq);

/* x[i] *= s for i < n. */
void pippy_optim_scale(float *x, size_t n, float s);
/* y += x (n floats). */
void pippy_optim_add(float *y, const float *x, size_t n);

/* ---- command line ---- */

/* The options parsed by pippy_optim_args_parse, for a --help text. */
extern const char pippy_optim_usage[];

/* Options seen so far; defaults are applied by pippy_optim_args_finish once the kind is known. */
typedef struct {
    pippy_optim_config c;
    unsigned given; /* bit per option seen */
} pippy_optim_args;

void pippy_optim_args_init(pippy_optim_args *a);

/* If argv[*i] is an optimizer option, read it (and its value argv[*i + 1], advancing *i) and set
 * *used = 1; otherwise *used = 0 and nothing changes. PIPPY_ERR_USAGE for a bad value
 * (unknown optimizer, a number that does not parse or is out of range, a missing value). */
pippy_status pippy_optim_args_parse(pippy_optim_args *a, int argc, char **argv, int *i, int *used);

/* The final config: torch's defaults for the kind where an option was not given; refuses an
 * option that does not apply to the kind (--momentum with adamw, --betas with sgd, ...); then
 * pippy_optim_check. total_steps > 0 (the run's length) sets decay_steps = total_steps -
 * warmup_steps for the cosine schedule when --decay-steps was not given. */
pippy_status pippy_optim_args_finish(const pippy_optim_args *a, int64_t total_steps,
                                     pippy_optim_config *out);

/* ---- schedule.json: "training": {"optimizer": {...}} ---- */

/* A new JSON object with every field (NULL when out of memory). */
cJSON *pippy_optim_to_json(const pippy_optim_config *c);

/* Read the object written by pippy_optim_to_json: every field must be there with the right type;
 * then pippy_optim_check. PIPPY_ERR_INVALID naming the field (prefixed "optimizer"). */
pippy_status pippy_optim_from_json(const cJSON *j, pippy_optim_config *c);

#endif
