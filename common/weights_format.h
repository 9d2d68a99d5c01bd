/* weights_format.h — the layout of out/stageK.weights, shared by the compiler
 * (which writes it) and the runtime (which maps it).
 *
 *   header (pippy_weights_header)
 *   n_entries x pippy_weights_entry   (name, type, shape, offset, bytes)
 *   padding to data_offset (a multiple of 4096, so the data maps page-aligned)
 *   data: each entry 64-byte aligned at data_offset + entry.offset
 * All integers little-endian (the host order of every machine we build for). */
#ifndef PIPPY_WEIGHTS_FORMAT_H
#define PIPPY_WEIGHTS_FORMAT_H

#include <stdint.h>

#define PIPPY_WEIGHTS_MAGIC "PIPPYWT1"
#define PIPPY_WEIGHTS_NAME_MAX 200

typedef struct {
    char magic[8];
    uint64_t hash;        /* compile hash, as in schedule.json */
    uint32_t stage;
    uint32_t n_entries;
    uint64_t data_offset;
    uint64_t data_bytes;
} pippy_weights_header;

typedef struct {
    char name[PIPPY_WEIGHTS_NAME_MAX]; /* ONNX initializer name (truncated if longer) */
    int32_t dtype;
    int32_t rank;
    int64_t dims[8];
    uint64_t offset;      /* from data_offset */
    uint64_t bytes;
} pippy_weights_entry;

#endif
