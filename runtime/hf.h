/* hf.h - read model weights from a Hugging Face model directory or one safetensors file.
 *
 * A path is one of
 *   DIR                  holding model.safetensors, or (sharded) model.safetensors.index.json
 *                        with its shards; the single file wins when both are there, as in
 *                        transformers' from_pretrained
 *   FILE.safetensors     one file
 *   FILE.index.json      a shard index (its shards beside it)
 * hf_open validates every header up front, and for a sharded model opens every shard and
 * checks that each tensor of the weight map is really in its shard, so a broken download
 * fails at start-up with the shard's name, not hours into a run.
 *
 * Weights are read by HF name, full-shaped, converted to float32 from F32, BF16 or F16; the
 * caller states the shape it needs and a checkpoint for another model configuration is
 * refused by name instead of being read into the wrong layout.
 */
#ifndef MOERT_HF_H
#define MOERT_HF_H

#include <stddef.h>
#include <stdint.h>

#include "safetensors.h"

struct hf_model;

/* 0 and *out, or -1, *out NULL and err naming the file and what is wrong. */
int hf_open(const char *path, struct hf_model **out, char *err, size_t errlen);
void hf_close(struct hf_model *m);

/* 1 if the tensor exists, else 0. */
int hf_has(struct hf_model *m, const char *name);

/* Read tensor name into dst (shape[0] * ... * shape[ndim-1] floats) as float32. Its shape
 * must equal shape[0..ndim-1] exactly; else -1 with "FILE: tensor NAME has shape [a, b],
 * this model needs [c, d]" (FILE is the shard that holds it). A missing tensor: -1 with
 * "PATH: no tensor NAME (the checkpoint does not match this model; ...)". Dtypes other
 * than F32, BF16 and F16 are refused by name. */
int hf_read_f32(struct hf_model *m, const char *name, int ndim, const uint64_t *shape, float *dst, char *err,
                size_t errlen);

/* The path given to hf_open (directory or file), for messages. */
const char *hf_path(const struct hf_model *m);

/* Additions beyond reading whole tensors. */

/* The tensor as stored (dtype, shape, a pointer into the mapping, valid until hf_close) or
 * NULL when absent; *file, when file is not NULL, is set to the path of the file holding
 * it. For reading a slice without a copy of the whole tensor. */
const struct st_tensor *hf_find(struct hf_model *m, const char *name, const char **file);

/* Tensor names: file order for one file, weight_map order for a sharded model. For
 * messages such as "these tensors in the checkpoint were not used". */
size_t hf_count(const struct hf_model *m);
const char *hf_name_at(const struct hf_model *m, size_t i);

/* The shape check and conversion of hf_read_f32 for a tensor from any safetensors file;
 * file names it in messages. ckpt.c reads optimizer state through it. */
int hf_tensor_f32(const char *file, const struct st_tensor *t, int ndim, const uint64_t *shape, float *dst, char *err,
                  size_t errlen);

/* IEEE binary16 and bfloat16 bits to float32, exactly (every value of both is a float). */
float hf_f16_to_f32(uint16_t h);
float hf_bf16_to_f32(uint16_t b);

#endif
