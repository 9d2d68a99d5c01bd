/* simulate.c — see simulate.h. */
#include "simulate.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fileio.h"
#include "schedule_json.h"
#include "svg_timeline.h"

#define PIPPY_SIM_MAX_JSON (256u << 20)  /* bytes of a schedule.json */
#define PIPPY_SIM_MAX_TRACE (1024u << 20) /* bytes of a trace */
#define PIPPY_SIM_MAX_EVENTS (1 << 22)
#define PIPPY_SIM_MAX_ROWS 4096

/* One rank in the report. */
typedef struct {
    char *name;           /* owned */
    int64_t id;           /* rank (simulate) or trace process id */
    double busy_s, idle_s;
    double coll_s;        /* of idle: in collectives, from reaching one to its end (waiting for the
                             other members included) */
    int32_t in_flight;    /* the most microbatches held at once over its stages; -1: unknown */
    int32_t slots;        /* stash slots of its stages; -1: unknown */
    double peak_bytes;    /* < 0: unknown */
} pippy_sim_row;

typedef struct {
    const char *kind, *source; /* "predicted" / "measured"; the file */
    double step_s, bubble, textbook, compiled_step_ms; /* < 0: not known */
    int32_t v;                                         /* stages per rank */
    int32_t n_rows;
    pippy_sim_row *rows;
    const char *note;          /* a line after the table, or NULL */
} pippy_sim_report;

static void pippy_sim_report_free(pippy_sim_report *r)
{
    for (int32_t i = 0; r->rows && i < r->n_rows; i++)
        free(r->rows[i].name);
    free(r->rows);
}

/* A file's text as JSON; errors name the line and column. */
static pippy_status pippy_sim_load(const char *path, size_t max, cJSON **root)
{
    char *text;
    size_t len;
    struct stat sb;
    if (stat(path, &sb) == 0 && (uint64_t)sb.st_size > max)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: %lld bytes, more than the %zu read here", path, (long long)sb.st_size,
                          max);
    PIPPY_TRY(pippy_read_file(path, &text, &len));
    const char *end = NULL;
    *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    pippy_status st = PIPPY_OK;
    if (!*root) {
        int line = 1, col = 1;
        for (const char *p = text; end && p < end && p < text + len; p++)
            line += *p == '\n', col = *p == '\n' ? 1 : col + 1;
        st = pippy_fail(PIPPY_ERR_FORMAT, "%s is not valid JSON (line %d, column %d)", path, line, col);
    }
    free(text);
    return st;
}

static double pippy_sim_num(const cJSON *o, const char *key, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) ? v->valuedouble : dflt;
}

static void pippy_sim_print_table(const pippy_sim_report *r, FILE *f)
{
    fprintf(f, "%s: %s step %.4f ms, bubble %.1f%%", r->source, r->kind, r->step_s * 1e3, r->bubble * 100);
    if (r->textbook >= 0)
        fprintf(f, " (textbook (p-1)/(%sm+p-1) = %.1f%%)", r->v > 1 ? "v*" : "", r->textbook * 100);
    fputc('\n', f);
    if (r->compiled_step_ms >= 0)
        fprintf(f, "  the compile predicted %.4f ms for the lists it wrote\n", r->compiled_step_ms);
    fprintf(f, "  %-26s %10s %10s %7s %10s %9s %10s\n", "rank", "busy ms", "idle ms", "bubble", "of it coll", "in flight",
            "peak MiB");
    for (int32_t i = 0; i < r->n_rows; i++) {
        const pippy_sim_row *w = &r->rows[i];
        char held[32] = "-", peak[32] = "-", name[27];
        snprintf(name, sizeof name, "%s", w->name);
        for (char *p = name; *p; p++) /* names from a trace come from outside */
            if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
                *p = '?';
        if (w->in_flight >= 0 && w->slots >= 0)
            snprintf(held, sizeof held, "%d/%d", w->in_flight, w->slots);
        else if (w->in_flight >= 0)
            snprintf(held, sizeof held, "%d", w->in_flight);
        if (w->peak_bytes >= 0)
            snprintf(peak, sizeof peak, "%.2f", w->peak_bytes / (1024.0 * 1024.0));
        fprintf(f, "  %-26s %10.4f %10.4f %6.1f%% %10.4f %9s %10s\n", name, w->busy_s * 1e3, w->idle_s * 1e3,
                r->step_s > 0 ? 100 * w->idle_s / r->step_s : 0.0, w->coll_s * 1e3, held, peak);
    }
    if (r->note)
        fprintf(f, "  %s\n", r->note);
}

static pippy_status pippy_sim_print_json(const pippy_sim_report *r, FILE *f)
{
    cJSON *j = cJSON_CreateObject(), *rows = cJSON_AddArrayToObject(j, "ranks");
    cJSON_AddStringToObject(j, "source", r->source);
    cJSON_AddStringToObject(j, "kind", r->kind);
    cJSON_AddNumberToObject(j, "step_ms", r->step_s * 1e3);
    cJSON_AddNumberToObject(j, "bubble_fraction", r->bubble);
    if (r->textbook >= 0)
        cJSON_AddNumberToObject(j, "textbook_bubble_fraction", r->textbook);
    if (r->compiled_step_ms >= 0)
        cJSON_AddNumberToObject(j, "compiled_step_ms", r->compiled_step_ms);
    for (int32_t i = 0; i < r->n_rows; i++) {
        const pippy_sim_row *w = &r->rows[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", (double)w->id);
        cJSON_AddStringToObject(o, "name", w->name);
        cJSON_AddNumberToObject(o, "busy_ms", w->busy_s * 1e3);
        cJSON_AddNumberToObject(o, "idle_ms", w->idle_s * 1e3);
        cJSON_AddNumberToObject(o, "bubble_fraction", r->step_s > 0 ? w->idle_s / r->step_s : 0);
        cJSON_AddNumberToObject(o, "collective_ms", w->coll_s * 1e3);
        if (w->in_flight >= 0)
            cJSON_AddNumberToObject(o, "in_flight", w->in_flight);
        if (w->slots >= 0)
            cJSON_AddNumberToObject(o, "stash_slots", w->slots);
        if (w->peak_bytes >= 0)
            cJSON_AddNumberToObject(o, "peak_memory_bytes", w->peak_bytes);
        cJSON_AddItemToArray(rows, o);
    }
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    fprintf(f, "%s\n", text);
    free(text);
    return PIPPY_OK;
}

static pippy_status pippy_sim_print(const pippy_sim_report *r, const pippy_sim_opts *o, FILE *f)
{
    if (o->json)
        return pippy_sim_print_json(r, f);
    pippy_sim_print_table(r, f);
    if (o->svg_path)
        fprintf(f, "  timeline: %s\n", o->svg_path);
    return PIPPY_OK;
}

/* ---- simulate ---- */

typedef struct {
    pippy_sched_json d;
    pippy_sched_span *span_mem;
    pippy_sched_span **spans;
    double *busy, *idle;
    int32_t *in_flight;
    pippy_sched_result res;
} pippy_sim_run;

static void pippy_sim_run_free(pippy_sim_run *x)
{
    pippy_sched_json_free(&x->d);
    free(x->span_mem), free(x->spans), free(x->busy), free(x->idle), free(x->in_flight);
}

/* Checks and replays the lists of d, with a span per action. */
static pippy_status pippy_sim_replay(pippy_sim_run *x, const char *path)
{
    const pippy_sched *s = &x->d.s;
    size_t total = 0;
    for (int32_t r = 0; r < s->n_ranks; r++)
        total += (size_t)s->n_actions[r];
    x->span_mem = calloc(total + 1, sizeof *x->span_mem);
    x->spans = calloc((size_t)s->n_ranks, sizeof *x->spans);
    x->busy = calloc((size_t)s->n_ranks, sizeof *x->busy);
    x->idle = calloc((size_t)s->n_ranks, sizeof *x->idle);
    x->in_flight = calloc((size_t)s->n_stages, sizeof *x->in_flight);
    if (!x->span_mem || !x->spans || !x->busy || !x->idle || !x->in_flight)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory simulating %s", path);
    for (int32_t r = 0, at = 0; r < s->n_ranks; at += s->n_actions[r], r++)
        x->spans[r] = x->span_mem + at;
    x->res = (pippy_sched_result){.busy_s = x->busy, .idle_s = x->idle, .in_flight = x->in_flight,
                                  .spans = (pippy_sched_span *const *)x->spans};
    pippy_status st = pippy_sched_check(s, &x->res);
    return st == PIPPY_OK ? st : pippy_error_prefix(st, "%s", path);
}

/* "rank 1 (stage 1)" / "rank 0 (stages 0, 2)". */
static char *pippy_sim_rank_name(const pippy_sched *s, int32_t r)
{
    char list[96] = "", buf[128];
    size_t n = 0;
    int k = 0;
    for (int32_t st = 0; st < s->n_stages && n < sizeof list - 16; st++)
        if (s->stage_rank[st] == r)
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%d", k++ ? ", " : "", st);
    snprintf(buf, sizeof buf, "rank %d (%s %s)", r, k == 1 ? "stage" : "stages", k ? list : "none");
    return strdup(buf);
}

/* Rank r's time in collectives in the replay, as the runtime's trace counts it: from when the rank
 * reaches one (the end of its last computation or collective before it; a rank computes nothing
 * while it is in one, whatever the order) to the collective's end. */
static double pippy_sim_coll_s(const pippy_sim_run *x, int32_t r)
{
    const pippy_sched *s = &x->d.s;
    double sum = 0;
    for (int32_t k = 0; k < s->n_actions[r]; k++) {
        const pippy_sched_span *c = &x->spans[r][k];
        if (!pippy_act_info_of(s->actions[r][k].kind)->collective)
            continue;
        double reached = 0;
        for (int32_t j = 0; j < s->n_actions[r]; j++) {
            const pippy_sched_span *o = &x->spans[r][j];
            if (j != k && !pippy_act_info_of(s->actions[r][j].kind)->transfer && o->end_s <= c->start_s &&
                o->end_s > reached)
                reached = o->end_s;
        }
        sum += c->end_s - reached;
        if (s->actions[r][k].kind == PIPPY_ACT_STEP) /* its span ends after the rank's optimizer steps */
            sum -= pippy_sched_optimizer_s(s, r);
    }
    return sum;
}

static pippy_status pippy_sim_rows(const pippy_sim_run *x, const cJSON *root, pippy_sim_report *rep)
{
    const pippy_sched *s = &x->d.s;
    const cJSON *peak = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "prediction"),
                                                         "peak_memory_bytes");
    int have_peak = cJSON_IsArray(peak) && cJSON_GetArraySize(peak) == s->n_stages;
    rep->rows = calloc((size_t)s->n_ranks, sizeof *rep->rows);
    if (!rep->rows)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    rep->n_rows = s->n_ranks;
    for (int32_t r = 0; r < s->n_ranks; r++) {
        pippy_sim_row *w = &rep->rows[r];
        w->id = r;
        w->busy_s = x->busy[r], w->idle_s = x->idle[r];
        w->coll_s = pippy_sim_coll_s(x, r);
        w->peak_bytes = have_peak ? 0 : -1;
        for (int32_t st = 0; st < s->n_stages; st++) {
            if (s->stage_rank[st] != r)
                continue;
            w->in_flight += x->in_flight[st];
            w->slots = s->stash_slots[st] < (1 << 30) && w->slots >= 0 ? w->slots + s->stash_slots[st] : -1;
            const cJSON *pb = have_peak ? cJSON_GetArrayItem(peak, st) : NULL;
            double b = cJSON_IsNumber(pb) && pb->valuedouble >= 0 ? pb->valuedouble : -1;
            w->peak_bytes = w->peak_bytes >= 0 && b >= 0 ? w->peak_bytes + b : -1;
        }
        if (!(w->name = pippy_sim_rank_name(s, r)))
            return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    }
    return PIPPY_OK;
}

/* Boxes of a timeline, with their hover texts. */
typedef struct {
    pippy_tl_box *boxes;
    char (*text)[64];
    int32_t n, cap;
} pippy_sim_boxes;

static pippy_status pippy_sim_boxes_init(pippy_sim_boxes *b, size_t cap)
{
    memset(b, 0, sizeof *b);
    if (cap > (size_t)1 << 24)
        return pippy_fail(PIPPY_ERR_INVALID, "timeline: %zu boxes are more than one picture holds", cap);
    b->boxes = calloc(cap + 1, sizeof *b->boxes);
    b->text = calloc(cap + 1, sizeof *b->text);
    b->cap = (int32_t)cap;
    return b->boxes && b->text ? PIPPY_OK : pippy_fail(PIPPY_ERR_NOMEM, "out of memory drawing the timeline");
}

static void pippy_sim_boxes_free(pippy_sim_boxes *b) { free(b->boxes), free(b->text); }

static void pippy_sim_box(pippy_sim_boxes *b, pippy_tl_box box, const char *text)
{
    if (b->n >= b->cap)
        return;
    snprintf(b->text[b->n], sizeof b->text[0], "%s", text);
    box.text = b->text[b->n];
    b->boxes[b->n++] = box;
}

/* Rank r's actions as boxes; the gaps of its compute lane (waiting for data or for the other
 * ranks) as idle boxes, up to the end of the step. */
static void pippy_sim_rank_boxes(const pippy_sim_run *x, int32_t r, pippy_sim_boxes *b)
{
    const pippy_sched *s = &x->d.s;
    double at = 0, eps = 1e-9 * x->res.step_s;
    for (int32_t k = 0; k < s->n_actions[r]; k++) {
        const pippy_action *a = &s->actions[r][k];
        const pippy_act_info *i = pippy_act_info_of(a->kind);
        const pippy_sched_span *sp = &x->spans[r][k];
        pippy_tl_box box = {r, PIPPY_TL_COMPUTE, PIPPY_BOX_COLLECTIVE, i->has_mb ? a->mb : -1, sp->start_s, sp->end_s,
                            NULL};
        if (i->compute)
            box.kind = i->phase == PIPPY_PHASE_F ? PIPPY_BOX_F : i->phase == PIPPY_PHASE_B ? PIPPY_BOX_B : PIPPY_BOX_W;
        else if (i->transfer)
            box.lane = i->transfer > 0 ? PIPPY_TL_SEND : PIPPY_TL_RECV,
            box.kind = i->transfer > 0 ? PIPPY_BOX_SEND : PIPPY_BOX_RECV;
        if (box.lane == PIPPY_TL_COMPUTE) {
            if (sp->start_s > at + eps)
                pippy_sim_box(b, (pippy_tl_box){r, PIPPY_TL_COMPUTE, PIPPY_BOX_IDLE, -1, at, sp->start_s, NULL}, "idle");
            at = sp->end_s > at ? sp->end_s : at;
        }
        char t[64];
        pippy_sim_box(b, box, pippy_act_str(a, t, sizeof t));
    }
    if (x->res.step_s > at + eps)
        pippy_sim_box(b, (pippy_tl_box){r, PIPPY_TL_COMPUTE, PIPPY_BOX_IDLE, -1, at, x->res.step_s, NULL}, "idle");
}

static pippy_status pippy_sim_draw(const pippy_sim_run *x, const cJSON *root, const pippy_sim_report *rep,
                                   const char *svg)
{
    const pippy_sched *s = &x->d.s;
    size_t total = 0;
    for (int32_t r = 0; r < s->n_ranks; r++)
        total += 2 * (size_t)s->n_actions[r] + 1;
    pippy_sim_boxes b;
    const char **names = calloc((size_t)rep->n_rows, sizeof *names);
    pippy_status st = pippy_sim_boxes_init(&b, total);
    if (st == PIPPY_OK && !names)
        st = pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    for (int32_t r = 0; st == PIPPY_OK && r < s->n_ranks; r++) {
        names[r] = rep->rows[r].name;
        pippy_sim_rank_boxes(x, r, &b);
    }
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(root, "config");
    const cJSON *sched = cJSON_GetObjectItemCaseSensitive(cfg, "schedule");
    char title[160], sub[4800];
    snprintf(title, sizeof title, "pippyc simulate: predicted step %.4f ms, bubble %.1f%%", rep->step_s * 1e3,
             rep->bubble * 100);
    snprintf(sub, sizeof sub, "%s: %d stages on %d ranks, %d microbatches, schedule %s (%s); F/B/W times and link "
             "costs from the file", rep->source, s->n_stages, s->n_ranks, s->microbatches,
             cJSON_IsString(sched) ? sched->valuestring : "?", s->training ? "training" : "inference");
    pippy_timeline t = {title, sub, rep->n_rows, names, b.n, b.boxes, rep->step_s};
    if (st == PIPPY_OK)
        st = pippy_timeline_svg_write(&t, svg);
    free(names);
    pippy_sim_boxes_free(&b);
    return st;
}

pippy_status pippy_simulate(const char *out, const pippy_sim_opts *o, FILE *f)
{
    char path[4096];
    struct stat sb;
    int dir = stat(out, &sb) == 0 && S_ISDIR(sb.st_mode);
    if (snprintf(path, sizeof path, dir ? "%s/schedule.json" : "%s", out) >= (int)sizeof path)
        return pippy_fail(PIPPY_ERR_USAGE, "simulate: the path '%.60s...' is too long", out);
    cJSON *root = NULL;
    pippy_sim_run x;
    memset(&x, 0, sizeof x);
    pippy_sim_report rep = {.kind = "predicted", .source = path, .textbook = -1, .compiled_step_ms = -1};
    pippy_status st = pippy_sim_load(path, PIPPY_SIM_MAX_JSON, &root);
    if (st == PIPPY_OK)
        st = pippy_sched_json_read(&x.d, root, path);
    if (st == PIPPY_OK)
        st = pippy_sim_replay(&x, path);
    if (st == PIPPY_OK) {
        /* p ranks (of one replica: the reader keeps replica 0), v stages each: Megatron-LM's
         * (p-1)/(v*m+p-1), 1F1B's for v = 1 */
        int32_t p = x.d.s.n_ranks, M = x.d.s.microbatches;
        rep.v = p > 0 && x.d.s.n_stages % p == 0 ? x.d.s.n_stages / p : 1;
        rep.step_s = x.res.step_s, rep.bubble = x.res.bubble;
        rep.textbook = (double)(p - 1) / (double)(rep.v * M + p - 1);
        rep.compiled_step_ms = pippy_sim_num(cJSON_GetObjectItemCaseSensitive(root, "prediction"), "step_ms", -1);
        st = pippy_sim_rows(&x, root, &rep);
    }
    if (st == PIPPY_OK && o->svg_path)
        st = pippy_sim_draw(&x, root, &rep, o->svg_path);
    if (st == PIPPY_OK)
        st = pippy_sim_print(&rep, o, f);
    pippy_sim_report_free(&rep);
    pippy_sim_run_free(&x);
    cJSON_Delete(root);
    return st;
}

/* ---- timeline ---- */

/* The trace's processes (rows), in ascending id, with their names. */
typedef struct {
    int64_t *ids;
    const char **names; /* process_name, or NULL */
    int32_t n;
    double t0_us, t1_us;
    int dropped;        /* the trace says it dropped events */
} pippy_sim_trace;

static int pippy_sim_cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int32_t pippy_sim_row_of(const pippy_sim_trace *t, int64_t id)
{
    const int64_t *p = bsearch(&id, t->ids, (size_t)t->n, sizeof *t->ids, pippy_sim_cmp_id);
    return p ? (int32_t)(p - t->ids) : -1;
}

static const char *pippy_sim_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* o[key] as a number in lo..hi (whole when whole is set) into *v. */
static pippy_status pippy_sim_field(const char *path, int32_t k, const cJSON *o, const char *key, double lo, double hi,
                                    int whole, double *v)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(j) || !(j->valuedouble >= lo && j->valuedouble <= hi) ||
        (whole && j->valuedouble != floor(j->valuedouble)))
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: event %d: \"%s\" must be a%s number from %g to %g", path, k, key,
                          whole ? " whole" : "", lo, hi);
    *v = j->valuedouble;
    return PIPPY_OK;
}

/* A complete ("X") event: its process, lane, times. */
static pippy_status pippy_sim_event(const char *path, int32_t k, const cJSON *e, double *pid, double *tid, double *ts,
                                    double *dur)
{
    PIPPY_TRY(pippy_sim_field(path, k, e, "pid", -9e15, 9e15, 1, pid));
    PIPPY_TRY(pippy_sim_field(path, k, e, "tid", -9e15, 9e15, 1, tid));
    PIPPY_TRY(pippy_sim_field(path, k, e, "ts", 0, 1e18, 0, ts));
    return pippy_sim_field(path, k, e, "dur", 0, 1e15, 0, dur);
}

/* First pass: the processes, their names, the time range; every X event checked. */
static pippy_status pippy_sim_trace_scan(const cJSON *events, const char *path, pippy_sim_trace *t)
{
    int32_t n = cJSON_GetArraySize(events), k = 0;
    t->ids = calloc((size_t)n + 1, sizeof *t->ids);
    t->t0_us = INFINITY, t->t1_us = -INFINITY;
    if (!t->ids)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory reading %s", path);
    const cJSON *e;
    cJSON_ArrayForEach(e, events)
    {
        const char *ph = pippy_sim_str(e, "ph"), *name = pippy_sim_str(e, "name");
        double pid = 0, tid = 0, ts = 0, dur = 0;
        if (!cJSON_IsObject(e))
            return pippy_fail(PIPPY_ERR_FORMAT, "%s: event %d is not an object", path, k);
        if (ph && !strcmp(ph, "i") && name && !strncmp(name, "trace full", 10))
            t->dropped = 1;
        if (ph && !strcmp(ph, "X")) {
            PIPPY_TRY(pippy_sim_event(path, k, e, &pid, &tid, &ts, &dur));
            t->ids[t->n++] = (int64_t)pid;
            t->t0_us = ts < t->t0_us ? ts : t->t0_us;
            t->t1_us = ts + dur > t->t1_us ? ts + dur : t->t1_us;
        }
        k++;
    }
    if (t->n == 0)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: no complete (\"ph\": \"X\") events: nothing to draw", path);
    qsort(t->ids, (size_t)t->n, sizeof *t->ids, pippy_sim_cmp_id);
    int32_t u = 0;
    for (int32_t i = 0; i < t->n; i++)
        if (i == 0 || t->ids[i] != t->ids[u - 1])
            t->ids[u++] = t->ids[i];
    t->n = u;
    if (u > PIPPY_SIM_MAX_ROWS)
        return pippy_fail(PIPPY_ERR_FORMAT, "%s: %d processes, more than the %d one picture holds", path, u,
                          PIPPY_SIM_MAX_ROWS);
    t->names = calloc((size_t)u, sizeof *t->names);
    if (!t->names)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory reading %s", path);
    cJSON_ArrayForEach(e, events)
    {
        const cJSON *pid = cJSON_GetObjectItemCaseSensitive(e, "pid");
        const char *ph = pippy_sim_str(e, "ph"), *name = pippy_sim_str(e, "name");
        int32_t row = cJSON_IsNumber(pid) ? pippy_sim_row_of(t, (int64_t)pid->valuedouble) : -1;
        if (ph && !strcmp(ph, "M") && name && !strcmp(name, "process_name") && row >= 0)
            t->names[row] = pippy_sim_str(cJSON_GetObjectItemCaseSensitive(e, "args"), "name");
    }
    return PIPPY_OK;
}

/* What a trace event is: lanes as runtime/trace.h records them (0 compute, 1 send, 2 recv). */
static void pippy_sim_kind(const char *name, int64_t tid, pippy_tl_box *b)
{
    b->lane = tid == 1 ? PIPPY_TL_SEND : tid == 2 ? PIPPY_TL_RECV : PIPPY_TL_COMPUTE;
    b->kind = tid == 1 ? PIPPY_BOX_SEND : tid == 2 ? PIPPY_BOX_RECV : PIPPY_BOX_OTHER;
    if (b->lane != PIPPY_TL_COMPUTE || !name)
        return;
    if (tid != 0)
        b->kind = PIPPY_BOX_OTHER;
    else if (!strcmp(name, "F") || !strcmp(name, "B") || !strcmp(name, "W"))
        b->kind = name[0] == 'F' ? PIPPY_BOX_F : name[0] == 'B' ? PIPPY_BOX_B : PIPPY_BOX_W;
    else if (!strcmp(name, "idle"))
        b->kind = PIPPY_BOX_IDLE;
    else if (!strcmp(name, "ALLREDUCE") || !strcmp(name, "REDUCE") || !strcmp(name, "BROADCAST") || !strcmp(name, "STEP"))
        b->kind = PIPPY_BOX_COLLECTIVE;
}

/* Second pass: a box per X event. */
static void pippy_sim_trace_boxes(const cJSON *events, const pippy_sim_trace *t, pippy_sim_boxes *b)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, events)
    {
        const char *ph = pippy_sim_str(e, "ph"), *name = pippy_sim_str(e, "name");
        if (!ph || strcmp(ph, "X"))
            continue;
        double ts = pippy_sim_num(e, "ts", 0), dur = pippy_sim_num(e, "dur", 0);
        const cJSON *mb = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(e, "args"), "microbatch");
        pippy_tl_box box = {pippy_sim_row_of(t, (int64_t)pippy_sim_num(e, "pid", 0)), 0, 0, -1,
                            (ts - t->t0_us) * 1e-6, (ts + dur - t->t0_us) * 1e-6, NULL};
        if (cJSON_IsNumber(mb) && mb->valuedouble >= 0 && mb->valuedouble < (1 << 30))
            box.mb = (int32_t)mb->valuedouble;
        pippy_sim_kind(name, (int64_t)pippy_sim_num(e, "tid", 0), &box);
        pippy_sim_box(b, box, name ? name : "");
    }
}

static int pippy_sim_cmp_box(const void *a, const void *b)
{
    const pippy_tl_box *x = a, *y = b;
    return x->row != y->row ? (x->row > y->row) - (x->row < y->row) : (x->start_s > y->start_s) - (x->start_s < y->start_s);
}

/* Busy time and the microbatches held at once per row (+1 at F, -1 at W; at B when the trace has
 * no W; inference: F only, one at a time). */
static pippy_status pippy_sim_trace_rows(const pippy_sim_trace *t, pippy_sim_boxes *b, pippy_sim_report *rep)
{
    rep->rows = calloc((size_t)t->n, sizeof *rep->rows);
    if (!rep->rows)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    rep->n_rows = t->n;
    int has[PIPPY_BOX_KINDS] = {0};
    for (int32_t i = 0; i < b->n; i++)
        has[b->boxes[i].kind] = 1;
    int32_t end = has[PIPPY_BOX_W] ? PIPPY_BOX_W : has[PIPPY_BOX_B] ? PIPPY_BOX_B : PIPPY_BOX_F;
    pippy_tl_box *sorted = malloc(((size_t)b->n + 1) * sizeof *sorted);
    if (!sorted)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    memcpy(sorted, b->boxes, (size_t)b->n * sizeof *sorted);
    qsort(sorted, (size_t)b->n, sizeof *sorted, pippy_sim_cmp_box);
    for (int32_t i = 0, now = 0; i < b->n; i++) {
        const pippy_tl_box *x = &sorted[i];
        pippy_sim_row *w = &rep->rows[x->row];
        now = i > 0 && sorted[i - 1].row != x->row ? 0 : now;
        if (x->lane == PIPPY_TL_COMPUTE && x->kind == PIPPY_BOX_COLLECTIVE)
            w->coll_s += x->end_s - x->start_s;
        if (x->lane != PIPPY_TL_COMPUTE || x->kind > PIPPY_BOX_W)
            continue;
        w->busy_s += x->end_s - x->start_s;
        now += x->kind == PIPPY_BOX_F;
        w->in_flight = now > w->in_flight ? now : w->in_flight;
        now -= x->kind == (int32_t)end;
    }
    free(sorted);
    for (int32_t r = 0; r < t->n; r++) {
        char buf[64];
        snprintf(buf, sizeof buf, "pid %lld", (long long)t->ids[r]);
        rep->rows[r].id = t->ids[r];
        rep->rows[r].name = strdup(t->names[r] ? t->names[r] : buf);
        rep->rows[r].idle_s = rep->step_s - rep->rows[r].busy_s;
        rep->rows[r].slots = -1, rep->rows[r].peak_bytes = -1;
        if (!rep->rows[r].name)
            return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    }
    return PIPPY_OK;
}

static pippy_status pippy_sim_trace_draw(const pippy_sim_trace *t, const pippy_sim_boxes *b,
                                         const pippy_sim_report *rep, const char *svg)
{
    const char **names = calloc((size_t)rep->n_rows, sizeof *names);
    if (!names)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory");
    for (int32_t r = 0; r < rep->n_rows; r++)
        names[r] = rep->rows[r].name;
    char title[160], sub[4200];
    snprintf(title, sizeof title, "pippyc timeline: measured %.4f ms, bubble %.1f%%", rep->step_s * 1e3,
             rep->bubble * 100);
    snprintf(sub, sizeof sub, "%s: %d processes, %d events from the first to the last%s", rep->source, t->n, b->n,
             t->dropped ? "; the trace says it dropped events (its buffer was full)" : "");
    pippy_timeline tl = {title, sub, rep->n_rows, names, b->n, b->boxes, rep->step_s};
    pippy_status st = pippy_timeline_svg_write(&tl, svg);
    free(names);
    return st;
}

pippy_status pippy_timeline_from_trace(const char *trace, const pippy_sim_opts *o, FILE *f)
{
    cJSON *root = NULL;
    pippy_sim_trace t;
    pippy_sim_boxes b;
    memset(&t, 0, sizeof t);
    memset(&b, 0, sizeof b);
    pippy_sim_report rep = {.kind = "measured", .source = trace, .textbook = -1, .compiled_step_ms = -1};
    pippy_status st = pippy_sim_load(trace, PIPPY_SIM_MAX_TRACE, &root);
    const cJSON *events = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "traceEvents") : root;
    if (st == PIPPY_OK && !cJSON_IsArray(events))
        st = pippy_fail(PIPPY_ERR_FORMAT, "%s: not a trace (a JSON array of events, or an object with \"traceEvents\")",
                        trace);
    if (st == PIPPY_OK && cJSON_GetArraySize(events) > PIPPY_SIM_MAX_EVENTS)
        st = pippy_fail(PIPPY_ERR_FORMAT, "%s: more than %d events", trace, PIPPY_SIM_MAX_EVENTS);
    if (st == PIPPY_OK)
        st = pippy_sim_trace_scan(events, trace, &t);
    if (st == PIPPY_OK)
        st = pippy_sim_boxes_init(&b, (size_t)cJSON_GetArraySize(events));
    if (st == PIPPY_OK) {
        pippy_sim_trace_boxes(events, &t, &b);
        rep.step_s = (t.t1_us - t.t0_us) * 1e-6;
        rep.note = t.dropped ? "the trace says it dropped events (its buffer was full): the numbers miss them" : NULL;
        st = pippy_sim_trace_rows(&t, &b, &rep);
    }
    if (st == PIPPY_OK) {
        double busy = 0;
        for (int32_t r = 0; r < rep.n_rows; r++)
            busy += rep.rows[r].busy_s;
        rep.bubble = rep.step_s > 0 ? 1 - busy / (rep.n_rows * rep.step_s) : 0;
    }
    if (st == PIPPY_OK && o->svg_path)
        st = pippy_sim_trace_draw(&t, &b, &rep, o->svg_path);
    if (st == PIPPY_OK)
        st = pippy_sim_print(&rep, o, f);
    pippy_sim_report_free(&rep);
    pippy_sim_boxes_free(&b);
    free(t.ids), free(t.names);
    cJSON_Delete(root);
    return st;
}
