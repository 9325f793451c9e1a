/* export.h - `moec export BUILD CKPT -o OUT`: a trainer's checkpoint as a Hugging Face
 * model directory.
 *
 * Requires: BUILD made by `moec build` (its manifest.json, and the config.json it writes
 *   for Qwen3-MoE and Mixtral specs: hfconfig.h); CKPT a step_XXXXXXXX directory the
 *   trainer wrote (runtime/ckpt.h), or the checkpoint root, whose newest complete step is
 *   taken.
 * Establishes: OUT/config.json (BUILD's; torch_dtype "bfloat16" with --dtype bf16) and
 *   OUT/model.safetensors holding every tensor of the checkpoint's model.safetensors by its
 *   HF name, fp32 bit for bit, or bf16 rounded to nearest even, with {"format": "pt"}
 *   metadata: a directory `from_pretrained` loads, and `train --init-from` reads back.
 *   Larger than max_shard_bytes: transformers' sharded layout instead,
 *   model-0000K-of-0000N.safetensors in checkpoint order plus model.safetensors.index.json
 *   (metadata.total_size, weight_map sorted by name); converted one shard at a time, so a
 *   bf16 export holds one shard in memory. Every file is replaced atomically, the other
 *   layout's files are removed. Nothing in CKPT or BUILD changes.
 * The checkpoint must come from BUILD's spec: the spec_hash in its optimizer.safetensors
 *   metadata must equal BUILD/manifest.json's (config.json describes BUILD's model; with
 *   another spec's weights it would load wrong or not at all). --force skips that check.
 */
#ifndef MOEC_EXPORT_H
#define MOEC_EXPORT_H

#include <stdbool.h>

struct export_options {
	const char *build; /* BUILD */
	const char *ckpt;  /* CKPT: step dir or checkpoint root */
	const char *out;   /* OUT, created with parents */
	bool bf16;         /* --dtype bf16 (default fp32: the checkpoint's values exactly) */
	bool force;        /* --force: export even when the spec hashes differ */
	unsigned long long max_shard_bytes; /* --max-shard-size; 0: 5 GB (transformers' default) */
};

/* "5GB", "500MB", "2GiB", "123" (bytes) -> bytes; 0, or -1 when not a size. */
int export_parse_size(const char *text, unsigned long long *bytes);

/* Returns 0 after printing a one-line summary, or 1 after printing the error (which names
 * the file and what to do). */
int export_run(const struct export_options *o);

#endif
