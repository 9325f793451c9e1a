/* step.h - pass 5c: the training step as generated C (gen/model.c).
 *
 * Requires: a checked spec, its IR and plan, and the kernel set (kernels.c) whose CPU twin
 *   instances gen/cpu/ holds.
 * Establishes: gen/model.c, which lays out the parameter arena (every HF tensor a
 *   contiguous range; an expert's gate and up projections stacked as the grouped GEMM reads
 *   them), the activation arena (every buffer at an offset computed here), and the step as
 *   straight-line calls, layer by layer: forward, loss, backward, then gradient norm, clipping
 *   and AdamW. It ends in main(), which hands the model to the runtime's trainer
 *   (runtime/trainer.h). The file is a function of the spec alone (byte-identical rebuilds)
 *   apart from the data paths, which are made absolute so the trainer runs from anywhere.
 *
 * What the step code does not cover yet is refused with a reason (step_unsupported), and
 * `moec build` then writes the kernels without a trainer: parallel layouts (ep, tp, dp > 1:
 * issue 6), LoRA, bf16/fp8 compute on the CPU backend, capacity drops, MLA/GPT-OSS/shared
 * experts.
 */
#ifndef MOEC_STEP_H
#define MOEC_STEP_H
#include <stddef.h>
#include "emit.h"
#include "kernels.h"

/* NULL when the step code covers this spec; else why not (one sentence). */
const char *step_unsupported(const struct spec *s, const struct ir *ir, const struct plan *p);
/* Write DIR/gen/model.c. Returns the number of errors (each printed). */
int step_write_model_c(const struct emit_context *c, const struct kernel_set *ks);

#endif
