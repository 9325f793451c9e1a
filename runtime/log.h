/* log.h - what a trainer prints per step (console) and records (JSONL metrics file).
 *
 * Console: one line per step, step / loss / lr / grad norm / tokens per second / MoE health.
 * Metrics: one JSON object per line, with per-layer expert counts, so a run can be plotted
 * or checked by a script without parsing the console.
 */
#ifndef MOERT_LOG_H
#define MOERT_LOG_H
#include <stdio.h>

struct log_step {
	long long step, steps;
	double loss, ce_loss, aux_loss, z_loss;
	double lr, grad_norm;
	double step_s, tokens_per_s, mfu_tflops; /* model TFLOP/s achieved */
	long long tokens, dropped;
	int moe_layers, experts;
	const long long *expert_count;   /* [moe_layers][experts], summed over the step's micro-batches */
};

struct log;
/* metrics_path NULL: console only. quiet: no console lines. NULL and errno on failure. */
struct log *log_open(const char *metrics_path, int quiet);
void log_close(struct log *l);
void log_step(struct log *l, const struct log_step *s);
/* A line on the console and a {"event": ...} record (start, resume, checkpoint, stop). */
void log_event(struct log *l, const char *event, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Experts that received tokens / all, and max / mean tokens per expert, over all layers. */
void log_expert_health(const struct log_step *s, double *utilization, double *imbalance);

#endif
