/* hfconfig.h - a checked spec's model as a Hugging Face config.json.
 *
 * Requires: a checked spec (check.c) and its IR (lower.c).
 * Establishes: the config.json that, beside the trainer's model.safetensors, makes a
 *   directory transformers loads as it is (Qwen3MoeForCausalLM, MixtralForCausalLM).
 *   Every key parse.c imports from a config.json is written so that it reads back
 *   (`model: {hf_config: ...}`) as the same model: the same layers, tensors and shapes,
 *   the same norms, RoPE base and routing. The layer kinds are written in HF's terms:
 *   Qwen3-MoE has no first_k_dense, so dense layers become mlp_only_layers.
 *   Families and features transformers' classes cannot express (DeepSeek-V3, GPT-OSS,
 *   shared experts, sliding windows, ...) are refused with a reason instead of written
 *   wrong: a config.json that loads but computes another model is worse than none.
 * Output is a function of the spec alone (fixed key order, shortest round-trip numbers).
 */
#ifndef MOEC_HFCONFIG_H
#define MOEC_HFCONFIG_H

#include <stddef.h>

#include "lower.h"
#include "spec.h"

/* NULL when the spec's model has a Hugging Face config.json; else why not, one sentence
 * starting "family X ..." or naming the spec key (written into buf, which is returned). */
const char *hfconfig_unsupported(const struct spec *s, const struct ir *ir, char *buf, size_t n);

/* The config.json text (malloc'd, NUL-terminated, ends in a newline); torch_dtype is the
 * checkpoint's ("float32", "bfloat16"). NULL when unsupported (err says why, as
 * hfconfig_unsupported) or out of memory. */
char *hfconfig_json(const struct spec *s, const struct ir *ir, const char *torch_dtype, char *err, size_t errlen);

/* `moec build`: write DIR/config.json (torch_dtype float32, the trainer's checkpoint
 * dtype) when the family is supported, else remove a stale one, so that DIR/config.json
 * always describes DIR/manifest.json's spec. Returns 0, or 1 after printing the error. */
int hfconfig_write_build(const char *dir, const struct spec *s, const struct ir *ir);

#endif
