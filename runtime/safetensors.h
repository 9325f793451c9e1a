/* safetensors.h - read and write Hugging Face safetensors files and sharded indexes.
 *
 * Format: 8-byte little-endian header length N, N bytes of JSON
 *   {"__metadata__": {str: str}, "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}}
 * then the data section; offsets are relative to its start.
 *
 * A checkpoint may come from anywhere, so the reader trusts nothing: every offset, size and
 * string in the header is checked before a pointer into the mapping is handed out, and a
 * bad file yields an error string naming the file, the tensor and what is wrong (the
 * library never exits). The header is parsed by a small strict JSON reader for exactly
 * the subset the format uses (objects, arrays, strings, non-negative integers) rather
 * than libyaml: YAML accepts far more than JSON (unquoted scalars, other number forms),
 * reports no byte positions we can check offsets against, and would be a new dependency of
 * every trainer.
 *
 * Acceptance follows the reference implementation (safetensors crate): tensors must tile
 * the data section exactly (no overlaps, no gaps, no trailing bytes), the header is at
 * most 100,000,000 bytes. Anything accepted here loads in HF safetensors.
 */
#ifndef MOERT_SAFETENSORS_H
#define MOERT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

enum st_dtype {
	ST_BOOL,
	ST_U8,
	ST_I8,
	ST_F8_E4M3,
	ST_F8_E5M2,
	ST_F8_E8M0,
	ST_I16,
	ST_U16,
	ST_F16,
	ST_BF16,
	ST_I32,
	ST_U32,
	ST_F32,
	ST_I64,
	ST_U64,
	ST_F64,
	ST_DTYPE_COUNT
};

/* "F32", "BF16", ...; NULL for an out-of-range value. */
const char *st_dtype_name(enum st_dtype d);
/* Bytes per element; 0 for an out-of-range value. */
size_t st_dtype_size(enum st_dtype d);
/* 0 and *out set when name is a known dtype, else -1. */
int st_dtype_parse(const char *name, enum st_dtype *out);

/* More dimensions than any model tensor has; a header with more is rejected by name. */
#define ST_MAX_DIMS 8

struct st_tensor {
	const char *name;
	enum st_dtype dtype;
	int ndim;                  /* 0 for a scalar */
	uint64_t shape[ST_MAX_DIMS];
	uint64_t numel;
	const void *data;          /* into the mapping; valid until st_close */
	uint64_t nbytes;
	uint64_t offset;           /* from the start of the data section */
};

struct st_file;

/* Open and mmap path and validate its whole header. 0 on success; else -1, *out NULL and
 * err holds "path: what is wrong". */
int st_open(const char *path, struct st_file **out, char *err, size_t errlen);
/* The same over a buffer the caller keeps alive until st_close (fuzzing, tests). name
 * stands for the file in messages. */
int st_open_memory(const char *name, const void *buf, size_t size, struct st_file **out, char *err, size_t errlen);
void st_close(struct st_file *f);

/* NULL when there is no such tensor. */
const struct st_tensor *st_find(const struct st_file *f, const char *name);
/* Tensors in file (data offset) order: for (i = 0; i < st_count(f); i++) st_tensor_at(f, i). */
size_t st_count(const struct st_file *f);
const struct st_tensor *st_tensor_at(const struct st_file *f, size_t i);
/* __metadata__: value for key or NULL; and in header order. */
const char *st_metadata(const struct st_file *f, const char *key);
size_t st_metadata_count(const struct st_file *f);
void st_metadata_at(const struct st_file *f, size_t i, const char **key, const char **value);

/* One tensor to write; data holds numel * dtype size bytes. */
struct st_write_tensor {
	const char *name;
	enum st_dtype dtype;
	int ndim;
	const uint64_t *shape;
	const void *data;
};
struct st_kv {
	const char *key, *value;
};

/* Write tensors and metadata to path atomically: a temporary file in the same directory,
 * fsync, rename over path, fsync the directory, so a crash leaves either the old file or
 * the whole new one. Layout matches HF's writer: tensors ordered by dtype size, largest
 * first, then by name, packed with no padding, so every tensor is aligned to its element
 * size; the header is padded with spaces to a multiple of 8 so the data section is
 * 8-aligned. 0 on success; else -1 and err says why (nothing is left behind). */
int st_write(const char *path, const struct st_write_tensor *tensors, size_t n, const struct st_kv *meta, size_t nmeta,
             char *err, size_t errlen);

/* model.safetensors.index.json: {"metadata": {str: str | integer}, "weight_map": {name: file}}.
 * Shard file names are relative to the index's directory; absolute paths and ".."
 * components are rejected so a downloaded index cannot point outside its checkpoint. */
struct st_index;

int st_index_open(const char *path, struct st_index **out, char *err, size_t errlen);
/* Parse index JSON from memory; dir is where shard files are looked for. */
int st_index_open_memory(const char *name, const char *dir, const void *buf, size_t size, struct st_index **out,
                         char *err, size_t errlen);
void st_index_close(struct st_index *idx);

/* The shard file name for a tensor as written in the index, or NULL. */
const char *st_index_shard(const struct st_index *idx, const char *name);
/* Entries in index order. */
size_t st_index_count(const struct st_index *idx);
void st_index_at(const struct st_index *idx, size_t i, const char **name, const char **file);
/* Metadata value (integers as their decimal text) or NULL. */
const char *st_index_metadata(const struct st_index *idx, const char *key);
/* Resolve name to its tensor: opens (once, then cached) and validates the shard, and checks
 * the shard really holds the tensor. NULL with err set on any failure. */
const struct st_tensor *st_index_find(struct st_index *idx, const char *name, char *err, size_t errlen);

#endif
