/* check.h - pass 2: rules between spec fields, and derived values.
 *
 * Requires: a spec from spec_parse() with no errors (every value typed and in range).
 * Establishes: the "0 = auto" fields are filled in (origin DERIVED); the model, MoE,
 * parallel layout and training recipe are mutually consistent, so lower and plan may
 * divide by any of them. Errors point at the key most likely to be wrong: the one the
 * user wrote rather than a preset's or a default.
 * Returns the number of errors.
 */
#ifndef MOEC_CHECK_H
#define MOEC_CHECK_H

#include "spec.h"

int spec_check(struct spec *s);

/* Memory figures by GPU type, in GiB (what the GPU reports as total). */
double gpu_memory_gib(int gpu);

/* HF module names that may carry LoRA adapters in this spec's family (NULL-terminated). */
const char *const *lora_modules_for(const struct spec *s);

#endif
