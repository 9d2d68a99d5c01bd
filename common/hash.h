/* hash.h — FNV-1a 64, the one hash of pippyc: the model hash (bytes of the model file), the
 * compile hash, name tables, and the checksum of checkpoint files. Chain calls by passing the
 * previous result as h; start with PIPPY_FNV_SEED. */
#ifndef PIPPY_HASH_H
#define PIPPY_HASH_H

#include <stddef.h>
#include <stdint.h>

#define PIPPY_FNV_SEED 1469598103934665603ULL

uint64_t pippy_fnv1a(const void *data, size_t n, uint64_t h);

#endif
