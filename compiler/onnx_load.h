/* onnx_load.h — the ONNX front end: reads a .onnx file into the graph IR.
 *
 * pippy_onnx_load maps the model file, hashes its bytes (the model hash every
 * artifact carries), parses it with protobuf-c and fills a pippy_graph:
 *   - ir_version, default-domain opset, producer, metadata_props;
 *   - initializers as PARAM (float) or CONST (other dtypes) values with dense
 *     data: copied from raw_data / typed fields, or pointing into a mapping of
 *     an external data file (data_location=EXTERNAL, keys location/offset/length,
 *     location relative to the model's folder);
 *   - runtime graph inputs (initializers excluded) with dtype and declared
 *     shape (symbolic dims: dims[i] == -1 and dim_param[i] set);
 *   - graph outputs (is_output, declared type when given);
 *   - nodes with their attributes, made-unique names, in topological order.
 * Nothing of the protobuf message outlives the call. Any byte sequence yields
 * either a graph or an error status with one message (pippy_last_error) that
 * names the file, the node or tensor, and what was expected vs found. */
#ifndef PIPPY_ONNX_LOAD_H
#define PIPPY_ONNX_LOAD_H

#include "ir.h"
#include "status.h"

/* Oldest versions the front end accepts. */
#define PIPPY_ONNX_MIN_IR_VERSION 3
#define PIPPY_ONNX_MIN_OPSET 7

/* Load the model at path into a new graph (*out; NULL on failure). */
pippy_status pippy_onnx_load(const char *path, pippy_graph **out);

#endif
