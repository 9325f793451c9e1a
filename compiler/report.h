/* report.h - print a plan for people (text) and for tools (JSON).
 *
 * Sections: layout, parameters, memory with verdict, compute and communication. The
 * resolved-spec section comes from spec_print() and is not repeated here.
 * Units in text: GiB (2^30 bytes), B = 1e9 parameters (3 decimals), GFLOP/TFLOP = 1e9/1e12.
 * JSON: one object {"layout", "params", "memory", "compute", "comm"} with exact integers
 * (bytes, elements) and seconds; its keys are stable, tests and tools read them.
 */
#ifndef MOEC_REPORT_H
#define MOEC_REPORT_H

#include <stdbool.h>
#include <stdio.h>

#include "lower.h"
#include "plan.h"
#include "spec.h"

/* All three accept a NULL plan (plan_build refused the layout or ran out of memory) and
 * say so instead of crashing. */

/* max_ranks_listed bounds the per-rank table (< 0: every rank). */
void report_plan_text(FILE *f, const struct spec *s, const struct ir *ir, const struct plan *p, int max_ranks_listed);
/* One JSON object, every rank listed (null for a NULL plan); no trailing newline, so a
 * caller can embed it: {"spec": ..., "plan": <this>}. */
void report_plan_json(FILE *f, const struct spec *s, const struct ir *ir, const struct plan *p);
/* `moec check`: true when the job fits its GPUs (or the GPU's memory is unknown, which is
 * noted). Otherwise prints "moec: error: ... does not fit ..." with the largest items and
 * the hints, and returns false. Prints nothing when it fits. */
bool report_verdict(const struct spec *s, const struct plan *p);

#endif
