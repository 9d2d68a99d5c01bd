/* pippyc — the compiler's command line.
 *   pippyc MODEL.onnx [options]          compile into stage programs
 *   pippyc inspect MODEL.onnx [options]  what is in the model
 *   pippyc inspect --ops                 the supported op types
 *   pippyc simulate OUT/ [--svg FILE]    a schedule's predicted step, bubble, memory and timeline
 *   pippyc timeline TRACE.json --svg F   a measured trace drawn the same way
 *   pippyc export OUT --checkpoint DIR   write the trained model as ONNX */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "compile.h"
#include "emit.h"
#include "export_onnx.h"
#include "inspect.h"
#include "optim.h"
#include "simulate.h"

static void pippy_usage(FILE *f)
{
    fputs("usage: pippyc MODEL.onnx [options]          compile MODEL into pipeline stage programs\n"
          "       pippyc inspect MODEL.onnx [--batch N | --shape NAME=D1xD2...] [--json]\n"
          "       pippyc inspect --ops                 list the supported op types\n"
          "       pippyc export OUT --checkpoint DIR [--step N] -o FILE.onnx [--model MODEL.onnx]\n"
          "                     [--inline-limit BYTES]  the model compiled into OUT with the parameters of a\n"
          "                                            checkpoint (default: its latest step); a model file over\n"
          "                                            BYTES (default 2 GiB - 1 MiB) keeps its initializers in\n"
          "                                            FILE.onnx.data\n"
          "       pippyc simulate OUT/ [--svg FILE] [--json]\n"
          "                                            check OUT/schedule.json (maybe edited) and predict its\n"
          "                                            step, bubble and memory per rank; --svg draws the timeline\n"
          "       pippyc timeline TRACE.json [--svg FILE] [--json]\n"
          "                                            the same for a trace of pippyrun --trace\n"
          "\n"
          "compile options:\n"
          "  -o, --out DIR            output folder (default: out)\n"
          "  --stages N               number of stages; without annotations the cost model balances them\n"
          "  --split-before A[,B...]  start a stage at node A (a node name or a prefix such as /blocks.2/)\n"
          "  --batch N                full batch size (binds the leading dim of every graph input)\n"
          "  --shape NAME=D1xD2...    the full shape of graph input NAME\n"
          "  --microbatches M         split the batch into M equal microbatches (default 1)\n"
          "  --batch-dims NODE=K[,..] in a static-batch export, element K of NODE's shape input is the batch\n"
          "                           ('none': it holds no batch); pippyc finds them itself where unambiguous\n"
          "  --schedule NAME          gpipe (default) or, for training, 1f1b (PipeDream-flush), zb-h1 (zero\n"
          "                           bubble H1: weight gradients deferred into the cool-down; stage s holds\n"
          "                           min(stages, M) microbatches where 1f1b holds stages - s),\n"
          "                           interleaved-1f1b with --ranks R (rank r runs stages r, r+R, ...; --stages\n"
          "                           and M multiples of R), dynamic (each rank runs whichever of its actions\n"
          "                           is ready, at most --window microbatches in flight per stage) or auto:\n"
          "                           build each fixed one that applies, keep the fastest predicted one that\n"
          "                           fits --memory-per-rank\n"
          "  --window K               dynamic: the lookahead / back-pressure bound (default: the stages)\n"
          "  --memory-per-rank BYTES  the most memory a rank's stage programs may hold at their peak, as the\n"
          "                           compiler predicts it (suffix K, M or G: KiB, MiB, GiB); a schedule that\n"
          "                           needs more is refused (auto: skipped)\n"
          "  --ranks R                processes (default: one per stage; fewer for interleaved-1f1b, dynamic)\n"
          "  --dp D                   training: D copies of the pipeline, each on its own ranks, the batch split\n"
          "                           between them and their gradients averaged before each step\n"
          "  --cc CMD                 C compiler for the stage programs (default: the one pippyc was built with)\n"
          "  --backend cpu|cuda       the device the stage programs compute on (default cpu; cuda needs a\n"
          "                           pippyc built with make CUDA=1, and every node must have a cuda kernel)\n"
          "  --tf32                   cuda: let float matmuls and convolutions use TF32 tensor cores (faster,\n"
          "                           about 1e-3 relative error; off by default)\n"
          "  --emit-only              write the C sources, weights and schedule.json but do not compile\n"
          "  --max-memory GB          memory limit: folded constants may take it, a stage program may need it\n"
          "                           (default: half of this machine's memory / all of it)\n"
          "  --port N                 first port of the default hosts file (default: derived from the model)\n"
          "  --cost-model FILE        the machine rates the cost model uses: read FILE, or measure and write it\n"
          "                           when it does not exist (default: a per-machine cache,\n"
          "                           $XDG_CACHE_HOME or ~/.cache, pippyc/costmodel-HOST-CPU.json)\n"
          "  -q, --quiet              no summary\n"
          "  --version, --help\n"
          "\n"
          "training (--train: forward, loss, backward and the optimizer step; run with pippyrun --steps N):\n"
          "  --train                  build a training program\n"
          "  --loss mse|cross_entropy the loss of the model's output against --labels (mean over the batch);\n"
          "                           without --loss the model's own scalar output is the loss\n"
          "  --labels NAME            the new graph input the labels come in (cross_entropy: int64 class\n"
          "                           indices, classes on the output's last axis)\n"
          "  --tied replicate|transmit  a parameter several stages use: each keeps a copy and their gradients\n"
          "                           are summed before the step (replicate, default), or the first stage owns\n"
          "                           it, sends it to the others each step and gets their gradients back\n"
          "  --padding-idx P=ROW[,..] embedding table P (a parameter a Gather reads) gets no gradient in row\n"
          "                           ROW, as torch.nn.Embedding(padding_idx=ROW) (the export does not say)\n",
          f);
    fputs(pippy_optim_usage, f);
}

static int pippy_die(pippy_status st)
{
    fprintf(stderr, "pippyc: error: %s\n", pippy_last_error()[0] ? pippy_last_error() : pippy_status_string(st));
    return pippy_status_exit_code(st);
}

static int pippy_int_arg(const char *opt, const char *v, long lo, long hi, long *out)
{
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || x < lo || x > hi) {
        pippy_fail(PIPPY_ERR_USAGE, "%s takes a whole number from %ld to %ld, found '%s'", opt, lo, hi, v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

/* BYTES with an optional suffix K, M or G (powers of 1024): a number of bytes >= 1. */
static int pippy_bytes_arg(const char *opt, const char *v, uint64_t *out)
{
    static const char units[] = "KMG";
    char *end = NULL;
    double x = v && *v ? strtod(v, &end) : 0;
    const char *u = end && *end ? strchr(units, toupper((unsigned char)*end)) : NULL;
    if (u) {
        for (const char *k = units; k <= u; k++)
            x *= 1024;
        end++;
    }
    if (!end || end == v || *end || !(x >= 1) || x > 9.0e18) {
        pippy_fail(PIPPY_ERR_USAGE, "%s takes a number of bytes >= 1, optionally followed by K, M or G (e.g. 512M), "
                   "found '%s'", opt, v ? v : "");
        return -1;
    }
    *out = (uint64_t)x;
    return 0;
}

static int pippy_cmd_inspect(int argc, char **argv)
{
    pippy_shape_bind_opts b;
    memset(&b, 0, sizeof b);
    const char *model = NULL;
    int json = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        long x;
        if (!strcmp(a, "--ops")) {
            int n;
            const pippy_op_info *const *ops = pippy_op_list(&n);
            for (int k = 0; k < n; k++)
                printf("%s%s%s\n", ops[k]->domain && ops[k]->domain[0] ? ops[k]->domain : "",
                       ops[k]->domain && ops[k]->domain[0] ? "::" : "", ops[k]->op);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--batch")) {
            if (pippy_int_arg(a, i + 1 < argc ? argv[++i] : NULL, 1, 1L << 30, &x))
                return pippy_die(PIPPY_ERR_USAGE);
            b.batch = x;
        } else if (!strcmp(a, "--shape")) {
            if (i + 1 >= argc)
                return pippy_die(pippy_fail(PIPPY_ERR_USAGE, "--shape needs NAME=D1xD2..."));
            pippy_status st = pippy_shape_parse_arg(&b, argv[++i]);
            if (st != PIPPY_OK)
                return pippy_die(st);
        } else if (a[0] == '-') {
            return pippy_die(pippy_fail(PIPPY_ERR_USAGE, "inspect: unknown option '%s' (see pippyc --help)", a));
        } else if (!model) {
            model = a;
        } else {
            return pippy_die(pippy_fail(PIPPY_ERR_USAGE, "inspect takes one model, found '%s' and '%s'", model, a));
        }
    }
    if (!model)
        return pippy_die(pippy_fail(PIPPY_ERR_USAGE, "inspect: which model? (pippyc inspect MODEL.onnx)"));
    pippy_status st = pippy_inspect(model, &b, json, stdout);
    return st == PIPPY_OK ? 0 : pippy_die(st);
}

/* simulate OUT/ and timeline TRACE.json: one input, --svg FILE, --json. */
static int pippy_cmd_view(const char *cmd, int argc, char **argv, const char **in, pippy_sim_opts *o)
{
    memset(o, 0, sizeof *o);
    *in = NULL;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--svg")) {
            if (i + 1 >= argc)
                return pippy_die(pippy_fail(PIPPY_ERR_USAGE, "%s: --svg needs a file name", cmd));
            o->svg_path = argv[++i];
        } else if (!strcmp(argv[i], "--json")) {
            o->json = 1;
        } else if (argv[i][0] == '-' || *in) {
            return pippy_die(pippy_fail(PIPPY_ERR_USAGE, "%s: unexpected '%s' (see pippyc --help)", cmd, argv[i]));
        } else {
            *in = argv[i];
        }
    }
    if (!*in)
        return pippy_die(pippy_fail(PIPPY_ERR_USAGE, "%s: which %s?", cmd,
                                    strcmp(cmd, "simulate") ? "trace (pippyc timeline TRACE.json --svg FILE)"
                                                            : "output folder (pippyc simulate OUT/)"));
    return 0;
}

static int pippy_cmd_simulate(int argc, char **argv)
{
    const char *in;
    pippy_sim_opts o;
    int rc = pippy_cmd_view("simulate", argc, argv, &in, &o);
    pippy_status st = rc ? PIPPY_OK : pippy_simulate(in, &o, stdout);
    return rc ? rc : st == PIPPY_OK ? 0 : pippy_die(st);
}

static int pippy_cmd_timeline(int argc, char **argv)
{
    const char *in;
    pippy_sim_opts o;
    int rc = pippy_cmd_view("timeline", argc, argv, &in, &o);
    pippy_status st = rc ? PIPPY_OK : pippy_timeline_from_trace(in, &o, stdout);
    return rc ? rc : st == PIPPY_OK ? 0 : pippy_die(st);
}

/* The optimizer of a training compile, as JSON for schedule.json; refuses training options
 * without --train. */
static pippy_status pippy_training_opts(pippy_compile_opts *o, const pippy_optim_args *a, int given, char **json)
{
    if (!o->train) {
        if (given || o->loss || o->labels || o->padding_idx)
            return pippy_fail(PIPPY_ERR_USAGE,
                              "--loss, --labels, --tied, --padding-idx and the optimizer options need --train");
        return PIPPY_OK;
    }
    pippy_optim_config c;
    PIPPY_TRY(pippy_optim_args_finish(a, 0, &c));
    cJSON *j = pippy_optim_to_json(&c);
    *json = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!*json)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    o->optimizer_json = *json;
    size_t per = pippy_optim_state_floats(&c, 1000);
    o->optimizer_state = (int32_t)(per / 1000);
    return PIPPY_OK;
}

static int pippy_cmd_export(int argc, char **argv)
{
    pippy_export_args a = {.step = -1};
    for (int i = 0; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x;
        if (!strcmp(o, "--checkpoint") || !strcmp(o, "-o") || !strcmp(o, "--out") || !strcmp(o, "--model")) {
            if (!v)
                return pippy_die(pippy_fail(PIPPY_ERR_USAGE, "export: %s needs a path", o));
            const char **dst = !strcmp(o, "--checkpoint") ? &a.ckpt_dir : !strcmp(o, "--model") ? &a.model : &a.output;
            *dst = v;
            i++;
        } else if (!strcmp(o, "--step")) {
            if (pippy_int_arg(o, v, 0, 1L << 40, &x))
                return pippy_die(PIPPY_ERR_USAGE);
            a.step = x;
            i++;
        } else if (!strcmp(o, "--inline-limit")) {
            if (pippy_int_arg(o, v, 1, INT32_MAX, &x))
                return pippy_die(PIPPY_ERR_USAGE);
            a.inline_limit = (size_t)x;
            i++;
        } else if (!strcmp(o, "-q") || !strcmp(o, "--quiet")) {
            a.quiet = 1;
        } else if (o[0] == '-' || a.out_dir) {
            return pippy_die(pippy_fail(PIPPY_ERR_USAGE, "export: unexpected '%s' (see pippyc --help)", o));
        } else {
            a.out_dir = o;
        }
    }
    if (!a.out_dir || !a.ckpt_dir || !a.output)
        return pippy_die(pippy_fail(PIPPY_ERR_USAGE, "usage: pippyc export OUT --checkpoint DIR [--step N] -o FILE.onnx"));
    pippy_status st = pippy_export_checkpoint(&a);
    return st == PIPPY_OK ? 0 : pippy_die(st);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        pippy_usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "inspect"))
        return pippy_cmd_inspect(argc - 2, argv + 2);
    if (!strcmp(argv[1], "export"))
        return pippy_cmd_export(argc - 2, argv + 2);
    if (!strcmp(argv[1], "simulate"))
        return pippy_cmd_simulate(argc - 2, argv + 2);
    if (!strcmp(argv[1], "timeline"))
        return pippy_cmd_timeline(argc - 2, argv + 2);
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        pippy_usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("pippyc %s\n", PIPPY_VERSION);
        return 0;
    }
    pippy_compile_opts o;
    memset(&o, 0, sizeof o);
    o.out_dir = "out";
    o.microbatches = 1;
    o.schedule = "gpipe";
    char cmdline[4096];
    size_t k = 0;
    for (int i = 0; i < argc && k < sizeof cmdline; i++)
        k += (size_t)snprintf(cmdline + k, sizeof cmdline - k, "%s%s", i ? " " : "", argv[i]);
    o.command_line = cmdline;
    pippy_optim_args optim;
    pippy_optim_args_init(&optim);
    int optim_given = 0, tied_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x;
        if (!strcmp(a, "-o") || !strcmp(a, "--out")) {
            if (!v)
                return pippy_die(pippy_fail(PIPPY_ERR_USAGE, "%s needs a folder", a));
            o.out_dir = v;
            i++;
        } else if (!strcmp(a, "--stages")) {
            if (pippy_int_arg(a, v, 1, PIPPY_MAX_STAGES, &x))
                return pippy_die(PIPPY_ERR_USAGE);
            o.stages = (int32_t)x;
            i++;
        } else if (!strcmp(a, "--ranks")) {
            if (pippy_int_arg(a, v, 1, PIPPY_MAX_STAGES, &x))
                return pippy_die(PIPPY_ERR_USAGE);
            o.ranks = (int32_t)x;
            i++;
        } else if (!strcmp(a, "--dp")) {
            if (pippy_int_arg(a, v, 1, PIPPY_MAX_STAGES, &x))
                return pippy_die(PIPPY_ERR_USAGE);
            o.dp = (int32_t)x;
            i++;
        } else if (!strcmp(a, "--microbatches")) {
            if (pippy_int_arg(a, v, 1, 1 << 20, &x))
                return pippy_die(PIPPY_ERR_USAGE);
            o.microbatches = (int32_t)x;
            i++;
        } else if (!strcmp(a, "--batch")) {
            if (pippy_int_arg(a, v, 1, 1L << 30, &x))
                return pippy_die(PIPPY_ERR_USAGE);
            o.bind.batch = x;
            i++;
        } else if (!strcmp(a, "--port")) {
            if (pippy_int_arg(a, v, 1024, 65000, &x))
                return pippy_die(PIPPY_ERR_USAGE);
            o.base_port = (int32_t)x;
            i++;
        } else if (!strcmp(a, "--shape")) {
            if (!v)
                return pippy_die(pippy_fail(PIPPY_ERR_USAGE, "--shape needs NAME=D1xD2..."));
            pippy_status st = pippy_shape_parse_arg(&o.bind, v);
            if (st != PIPPY_OK)
                return pippy_die(st);
            i++;
        } else if (!strcmp(a, "--split-before")) {
            if (!v)
                return pippy_die(pippy_fail(PIPPY_ERR_USAGE, "--split-before needs node names"));
            o.split_before = v;
            i++;
        } else if (!strcmp(a, "--schedule")) {
            if (!v)
                return pippy_die(pippy_fail(PIPPY_ERR_USAGE, "--schedule needs a name (gpipe, 1f1b, zb-h1, auto)"));
            o.schedule = v;
            i++;
        } else if (!strcmp(a, "--window")) {
            if (pippy_int_arg(a, v, 1, 1 << 20, &x))
                return pippy_die(PIPPY_ERR_USAGE);
            o.window = (int32_t)x;
            i++;
        } else if (!strcmp(a, "--cc")) {
            if (!v)
                return pippy_die(pippy_fail(PIPPY_ERR_USAGE, "--cc needs a command"));
            o.cc = v;
            i++;
        } else if (!strcmp(a, "--backend")) {
            if (!v || (strcmp(v, "cpu") && strcmp(v, "cuda")))
                return pippy_die(pippy_fail(PIPPY_ERR_USAGE, "--backend takes cpu or cuda, found '%s'", v ? v : ""));
            o.backend = v;
            i++;
        } else if (!strcmp(a, "--tf32")) {
            o.tf32 = 1;
        } else if (!strcmp(a, "--train")) {
            o.train = 1;
        } else if (!strcmp(a, "--padding-idx")) {
            if (!v || !v[0])
                return pippy_die(pippy_fail(PIPPY_ERR_USAGE, "--padding-idx needs TABLE=ROW[,TABLE=ROW...]"));
            o.padding_idx = v;
            i++;
        } else if (!strcmp(a, "--loss") || !strcmp(a, "--labels")) {
            if (!v)
                return pippy_die(pippy_fail(PIPPY_ERR_USAGE, "%s needs a value", a));
            *(a[3] == 'o' ? &o.loss : &o.labels) = v;
            i++;
        } else if (!strcmp(a, "--tied")) {
            if (!v || (strcmp(v, "replicate") && strcmp(v, "transmit")))
                return pippy_die(pippy_fail(PIPPY_ERR_USAGE, "--tied takes replicate or transmit, found '%s'",
                                            v ? v : ""));
            o.tied_transmit = !strcmp(v, "transmit");
            tied_given = 1;
            i++;
        } else if (!strcmp(a, "--batch-dims")) {
            if (!v)
                return pippy_die(pippy_fail(PIPPY_ERR_USAGE, "--batch-dims needs NODE=K[,NODE=K...]"));
            pippy_status st = pippy_batch_dims_parse(&o.batch_dims, v);
            if (st != PIPPY_OK)
                return pippy_die(st);
            i++;
        } else if (!strcmp(a, "--cost-model")) {
            if (!v || !*v)
                return pippy_die(pippy_fail(PIPPY_ERR_USAGE, "--cost-model needs a file"));
            o.cost_model = v;
            i++;
        } else if (!strcmp(a, "--max-memory")) {
            char *end;
            double gb = v ? strtod(v, &end) : 0;
            if (!v || *end || !(gb > 0) || gb > 1e9)
                return pippy_die(pippy_fail(PIPPY_ERR_USAGE, "--max-memory takes gigabytes > 0, found '%s'",
                                            v ? v : ""));
            o.max_memory = (uint64_t)(gb * 1e9);
            i++;
        } else if (!strcmp(a, "--memory-per-rank")) {
            if (pippy_bytes_arg(a, v, &o.memory_per_rank))
                return pippy_die(PIPPY_ERR_USAGE);
            i++;
        } else if (!strcmp(a, "--emit-only")) {
            o.emit_only = 1;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            o.quiet = 1;
        } else if (a[0] == '-') {
            int used = 0;
            pippy_status st = pippy_optim_args_parse(&optim, argc, argv, &i, &used);
            if (st != PIPPY_OK)
                return pippy_die(st);
            if (!used)
                return pippy_die(pippy_fail(PIPPY_ERR_USAGE, "unknown option '%s' (see pippyc --help)", a));
            optim_given = 1;
        } else if (!o.model_path) {
            o.model_path = a;
        } else {
            return pippy_die(pippy_fail(PIPPY_ERR_USAGE, "one model at a time: found '%s' and '%s'", o.model_path, a));
        }
    }
    if (!o.model_path)
        return pippy_die(pippy_fail(PIPPY_ERR_USAGE, "which model? (pippyc MODEL.onnx --stages N -o OUT)"));
    char *optim_json = NULL;
    pippy_status st = pippy_training_opts(&o, &optim, optim_given || tied_given, &optim_json);
    if (st == PIPPY_OK)
        st = pippy_compile(&o);
    free(optim_json);
    return st == PIPPY_OK ? 0 : pippy_die(st);
}
