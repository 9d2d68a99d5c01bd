/* svg_timeline.c — see svg_timeline.h. */
#include "svg_timeline.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"

/* Layout, in pixels. */
enum {
    TL_WIDTH = 1280,
    TL_LEFT = 190,         /* row and lane names */
    TL_RIGHT = 30,
    TL_AXIS_Y = 92,        /* tick labels */
    TL_TOP = 100,          /* the first row */
    TL_ROW_GAP = 16,
    TL_LABEL_CHARS = 26,   /* of a row name */
    TL_TEXT_CHARS = 160,   /* of a hover text or the title */
};
static const int tl_lane_h[PIPPY_TL_LANES] = {24, 9, 9};
static const char *const tl_lane_name[PIPPY_TL_LANES] = {"compute", "send", "recv"};
static const char *const tl_kind_class[PIPPY_BOX_KINDS] = {"F", "B", "W", "snd", "rcv", "idle", "coll", "oth"};
static const char *const tl_kind_legend[PIPPY_BOX_KINDS] = {
    "F forward", "B input gradients", "W weight gradients", "send", "receive", "idle", "collective", "other"};
static const char *const tl_style =
    "text{font-family:sans-serif;font-size:11px;fill:#222}"
    ".title{font-size:15px;font-weight:bold}.sub{font-size:12px;fill:#444}"
    ".row{font-size:12px;font-weight:bold}.lane{font-size:9px;fill:#777}.tick{font-size:10px;fill:#555}"
    ".mb{font-size:10px;fill:#fff;text-anchor:middle}.grid{stroke:#e4e4e4;stroke-width:1}"
    ".lanebg{fill:#f7f7f7}"
    ".F{fill:#4e79a7}.B{fill:#e15759}.W{fill:#59a14f}.snd{fill:#f28e2b}.rcv{fill:#b07aa1}"
    ".idle{fill:#d4d4d4}.coll{fill:#222}.oth{fill:#9c755f}"
    "rect.F,rect.B,rect.W,rect.oth{stroke:#fff;stroke-width:0.5}rect.snd,rect.rcv{fill-opacity:0.55}";

/* Length of the valid UTF-8 sequence at p that XML allows, 0 when there is none. */
static int pippy_utf8_len(const unsigned char *p)
{
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
    unsigned c = p[0];
    int n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (n <= 1)
        return n;
    uint32_t cp = c & (0x7fu >> n);
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3fu);
    }
    if (cp < least[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || cp == 0xfffe || cp == 0xffff)
        return 0;
    return n;
}

void pippy_xml_text(FILE *f, const char *s, int max_chars)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    for (int chars = 0; *p; chars++) {
        if (chars == max_chars) {
            fputs("...", f);
            return;
        }
        int n = pippy_utf8_len(p);
        if (n == 0 || (*p < 0x20 && *p != '\t')) {
            fputc('?', f);
            p++;
        } else if (*p == '&' || *p == '<' || *p == '>' || *p == '"' || *p == '\'') {
            fputs(*p == '&' ? "&amp;" : *p == '<' ? "&lt;" : *p == '>' ? "&gt;" : *p == '"' ? "&quot;" : "&apos;", f);
            p++;
        } else {
            fwrite(p, 1, (size_t)n, f);
            p += n;
        }
    }
}

static int pippy_tl_row_h(void) { return tl_lane_h[0] + tl_lane_h[1] + tl_lane_h[2] + 4 + TL_ROW_GAP; }

static int pippy_tl_lane_y(int32_t row, int32_t lane)
{
    int y = TL_TOP + row * pippy_tl_row_h();
    for (int l = 0; l < lane; l++)
        y += tl_lane_h[l] + 2;
    return y;
}

/* A tick spacing of 1, 2 or 5 times a power of ten giving about 10 ticks over end_ms. */
static double pippy_tl_tick(double end_ms)
{
    double raw = end_ms / 10, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void pippy_tl_head(const pippy_timeline *t, FILE *f, int height)
{
    fprintf(f,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\">\n<style type=\"text/css\">%s</style>\n"
            "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n<text class=\"title\" x=\"10\" y=\"22\">",
            TL_WIDTH, height, TL_WIDTH, height, tl_style, TL_WIDTH, height);
    pippy_xml_text(f, t->title, TL_TEXT_CHARS);
    fputs("</text>\n", f);
    if (t->subtitle) {
        fputs("<text class=\"sub\" x=\"10\" y=\"41\">", f);
        pippy_xml_text(f, t->subtitle, TL_TEXT_CHARS);
        fputs("</text>\n", f);
    }
    int x = 10;
    for (int k = 0; k < PIPPY_BOX_KINDS; k++) {
        fprintf(f, "<rect class=\"%s\" x=\"%d\" y=\"52\" width=\"12\" height=\"12\"/>"
                   "<text x=\"%d\" y=\"62\">%s</text>\n",
                tl_kind_class[k], x, x + 16, tl_kind_legend[k]);
        x += 24 + 7 * (int)strlen(tl_kind_legend[k]);
    }
}

/* Ticks, grid lines, row and lane names and lane backgrounds. */
static void pippy_tl_axes(const pippy_timeline *t, FILE *f, double end_s, int height)
{
    double plot = TL_WIDTH - TL_LEFT - TL_RIGHT, end_ms = end_s * 1e3, step = pippy_tl_tick(end_ms);
    int decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    fprintf(f, "<text class=\"tick\" x=\"10\" y=\"%d\">time, ms</text>\n", TL_AXIS_Y);
    for (int i = 0; i * step <= end_ms * (1 + 1e-9) && i <= 100; i++) {
        double x = TL_LEFT + plot * (i * step) / end_ms;
        fprintf(f, "<line class=\"grid\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>"
                   "<text class=\"tick\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.*f</text>\n",
                x, TL_AXIS_Y + 3, x, height - 10, x, TL_AXIS_Y, decimals, i * step);
    }
    for (int32_t r = 0; r < t->n_rows; r++) {
        fprintf(f, "<text class=\"row\" x=\"10\" y=\"%d\">", pippy_tl_lane_y(r, 0) + 16);
        pippy_xml_text(f, t->row_names ? t->row_names[r] : "", TL_LABEL_CHARS);
        fputs("</text>\n", f);
        for (int l = 0; l < PIPPY_TL_LANES; l++)
            fprintf(f, "<rect class=\"lanebg\" x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\"/>"
                       "<text class=\"lane\" x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>\n",
                    TL_LEFT, pippy_tl_lane_y(r, l), plot, tl_lane_h[l], TL_LEFT - 4,
                    pippy_tl_lane_y(r, l) + tl_lane_h[l] - 1, tl_lane_name[l]);
    }
}

static void pippy_tl_draw_box(const pippy_tl_box *b, FILE *f, double end_s)
{
    double plot = TL_WIDTH - TL_LEFT - TL_RIGHT;
    double x0 = TL_LEFT + plot * b->start_s / end_s, x1 = TL_LEFT + plot * b->end_s / end_s;
    double w = x1 - x0 < 1 ? 1 : x1 - x0;
    int y = pippy_tl_lane_y(b->row, b->lane), h = tl_lane_h[b->lane];
    fprintf(f, "<rect class=\"%s\" x=\"%.2f\" y=\"%d\" width=\"%.2f\" height=\"%d\"><title>", tl_kind_class[b->kind], x0,
            y, w, h);
    pippy_xml_text(f, b->text, TL_TEXT_CHARS);
    fprintf(f, " %.4f-%.4f ms</title></rect>\n", b->start_s * 1e3, b->end_s * 1e3);
    char mb[16];
    int n = b->mb >= 0 ? snprintf(mb, sizeof mb, "%d", b->mb) : 0;
    if (n > 0 && b->kind <= PIPPY_BOX_W && w >= 7.0 * n + 4)
        fprintf(f, "<text class=\"mb\" x=\"%.2f\" y=\"%d\">%s</text>\n", x0 + w / 2, y + h / 2 + 4, mb);
}

static int pippy_tl_box_ok(const pippy_timeline *t, const pippy_tl_box *b)
{
    return b->row >= 0 && b->row < t->n_rows && b->lane >= 0 && b->lane < PIPPY_TL_LANES && b->kind >= 0 &&
           b->kind < PIPPY_BOX_KINDS && isfinite(b->start_s) && isfinite(b->end_s) && b->start_s >= 0 &&
           b->end_s >= b->start_s;
}

pippy_status pippy_timeline_svg(const pippy_timeline *t, FILE *f)
{
    double end_s = t->end_s;
    for (int32_t i = 0; i < t->n_boxes; i++) {
        if (!pippy_tl_box_ok(t, &t->boxes[i]))
            return pippy_fail(PIPPY_ERR_INVALID, "timeline: box %d (row %d, lane %d, kind %d, %g..%g s) is out of range",
                              i, t->boxes[i].row, t->boxes[i].lane, t->boxes[i].kind, t->boxes[i].start_s,
                              t->boxes[i].end_s);
        if (t->end_s <= 0 && t->boxes[i].end_s > end_s)
            end_s = t->boxes[i].end_s;
    }
    if (!(end_s > 0))
        end_s = 1e-3;
    int height = TL_TOP + t->n_rows * pippy_tl_row_h() + 16;
    pippy_tl_head(t, f, height);
    pippy_tl_axes(t, f, end_s, height);
    for (int pass = 0; pass < 2; pass++) /* idle first, under the rest */
        for (int32_t i = 0; i < t->n_boxes; i++)
            if ((t->boxes[i].kind == PIPPY_BOX_IDLE) == (pass == 0))
                pippy_tl_draw_box(&t->boxes[i], f, end_s);
    fputs("</svg>\n", f);
    return ferror(f) ? pippy_fail(PIPPY_ERR_IO, "timeline: cannot write the SVG") : PIPPY_OK;
}

pippy_status pippy_timeline_svg_write(const pippy_timeline *t, const char *path)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f)
        return pippy_fail(PIPPY_ERR_NOMEM, "out of memory drawing %s", path);
    pippy_status st = pippy_timeline_svg(t, f);
    if (fclose(f) != 0 && st == PIPPY_OK)
        st = pippy_fail(PIPPY_ERR_NOMEM, "out of memory drawing %s", path);
    if (st == PIPPY_OK)
        st = pippy_atomic_write_file(path, buf, n);
    free(buf);
    return st;
}
