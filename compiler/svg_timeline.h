/* svg_timeline.h — draws a pipeline step as an SVG 1.1 picture: a row per rank with three lanes
 * (compute, send, recv), a box per action coloured by kind (F, B, W, send, receive, idle,
 * collective), the microbatch number in boxes wide enough for it, a hover text per box
 * (<title>), a time axis in milliseconds, a legend and a title. Plain text, no scripts: a browser
 * shows it as it is. Every string from the caller (names that come from input files) is escaped
 * and made valid UTF-8. One writer for the predicted timeline (`pippyc simulate`) and the
 * measured one (`pippyc timeline`), so the two can be laid side by side. */
#ifndef PIPPY_SVG_TIMELINE_H
#define PIPPY_SVG_TIMELINE_H

#include <stdint.h>
#include <stdio.h>

#include "status.h"

typedef enum {
    PIPPY_BOX_F = 0,
    PIPPY_BOX_B,
    PIPPY_BOX_W,
    PIPPY_BOX_SEND,
    PIPPY_BOX_RECV,
    PIPPY_BOX_IDLE,
    PIPPY_BOX_COLLECTIVE,
    PIPPY_BOX_OTHER,
    PIPPY_BOX_KINDS
} pippy_box_kind;

enum { PIPPY_TL_COMPUTE = 0, PIPPY_TL_SEND, PIPPY_TL_RECV, PIPPY_TL_LANES };

typedef struct {
    int32_t row, lane, kind; /* lane: PIPPY_TL_*; kind: pippy_box_kind */
    int32_t mb;              /* the microbatch (its number is drawn in the box), -1 for none */
    double start_s, end_s;   /* from the start of the picture */
    const char *text;        /* hover text, or NULL */
} pippy_tl_box;

typedef struct {
    const char *title, *subtitle;  /* subtitle may be NULL */
    int32_t n_rows;
    const char *const *row_names;
    int32_t n_boxes;
    const pippy_tl_box *boxes;
    double end_s;                  /* where the time axis ends (0: at the last box's end) */
} pippy_timeline;

/* The SVG document to f. */
pippy_status pippy_timeline_svg(const pippy_timeline *t, FILE *f);
/* The same into the file path, written whole or not at all. */
pippy_status pippy_timeline_svg_write(const pippy_timeline *t, const char *path);

/* s as XML character data into f: markup characters as entities, control characters and byte
 * sequences that are not valid UTF-8 as '?'; at most max_chars characters ("..." after a cut). */
void pippy_xml_text(FILE *f, const char *s, int max_chars);

#endif
