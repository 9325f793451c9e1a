/* profile.c - per-kernel time of a step. See profile.h. */
#include "profile.h"

#include <stdlib.h>
#include <string.h>

#include "device_cuda.h"
#include "moert.h"
#include "trainer.h"

struct moert_profile *moert_prof_new(const struct moert_model *m)
{
	struct moert_profile *p = calloc(1, sizeof *p);
	if (!p)
		moert_fatal("out of memory");
	p->n = m->n_kernels + 3;
	p->ms = calloc((size_t)p->n, sizeof *p->ms);
	p->calls = calloc((size_t)p->n, sizeof *p->calls);
	if (!p->ms || !p->calls)
		moert_fatal("out of memory");
	return p;
}

void moert_prof_reset(struct moert_profile *p)
{
	memset(p->ms, 0, (size_t)p->n * sizeof *p->ms);
	memset(p->calls, 0, (size_t)p->n * sizeof *p->calls);
}

void moert_prof_free(struct moert_profile *p)
{
	if (!p)
		return;
	free(p->ms);
	free(p->calls);
	free(p);
}

void moert_prof_begin(const struct moert_run *r)
{
	char err[512];
	if (r->cuda) {
		if (moert_cuda_mark(r->cuda, 0, err, sizeof err))
			moert_fatal("--profile: %s", err);
	} else {
		r->prof->t0 = moert_seconds();
	}
}

void moert_prof_end(const struct moert_run *r, int id)
{
	struct moert_profile *p = r->prof;
	double ms;
	if (r->cuda) {
		char err[512];
		float f;
		if (moert_cuda_mark(r->cuda, 1, err, sizeof err) || moert_cuda_elapsed_ms(r->cuda, 0, 1, &f, err, sizeof err))
			moert_fatal("--profile: %s", err);
		ms = f;
	} else {
		ms = 1e3 * (moert_seconds() - p->t0);
	}
	if (id >= 0 && id < p->n) {
		p->ms[id] += ms;
		p->calls[id]++;
	}
}

static const char *prof_name(const struct moert_model *m, int id)
{
	static const char *gemm[] = {"dense GEMM y = x W^T (NT)", "dense GEMM dx = dy W (NN)", "dense GEMM dW = dy^T x (TN)"};
	return id < m->n_kernels ? m->kernels[id].name : gemm[id - m->n_kernels];
}

static int prof_is_moe(const struct moert_model *m, int id)
{
	const char *n = prof_name(m, id);
	return !strncmp(n, "moe_", 4) || !strncmp(n, "router_", 7);
}

void moert_prof_report(const struct moert_profile *p, const struct moert_model *m, long steps, int warmup_skipped,
		       FILE *f)
{
	if (steps < 1)
		return;
	double total = 0, moe = 0;
	int *order = malloc((size_t)p->n * sizeof *order);
	if (!order)
		return;
	for (int i = 0; i < p->n; i++) {
		order[i] = i;
		total += p->ms[i];
		moe += prof_is_moe(m, i) ? p->ms[i] : 0;
	}
	for (int i = 1; i < p->n; i++) /* by time, largest first */
		for (int j = i; j > 0 && p->ms[order[j]] > p->ms[order[j - 1]]; j--) {
			int t = order[j];
			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	fprintf(f, "profile over %ld step%s (%s; each call timed on its own%s):\n", steps, steps > 1 ? "s" : "",
		m->kernels && p->n ? "per kernel" : "", warmup_skipped ? "; the run's first step, warm-up, not counted" : "");
	fprintf(f, "  %-52s %8s %12s %7s\n", "kernel", "calls", "ms per step", "share");
	for (int k = 0; k < p->n; k++) {
		int i = order[k];
		if (!p->calls[i])
			continue;
		fprintf(f, "  %-52s %8ld %12.3f %6.1f%%\n", prof_name(m, i), p->calls[i], p->ms[i] / steps,
			total > 0 ? 100 * p->ms[i] / total : 0);
	}
	fprintf(f, "  %-52s %8s %12.3f\n", "all", "", total / steps);
	if (m->moe_layers > 0 && moe > 0) {
		/* the expert GEMMs' work: 2 * 3 * H * I * k FLOP per token forward, 3x with backward */
		double per_layer_ms = moe / steps / m->moe_layers;
		double flop = 6.0 * m->top_k * m->hidden * (double)m->expert_inter * 3 * (double)m->tokens * m->grad_accum;
		fprintf(f, "  MoE layer (router_* and moe_* kernels, forward + backward): %.3f ms per layer per step, "
			   "%.1f TFLOP/s (6 k H I 3 per token)\n", per_layer_ms, flop / (per_layer_ms * 1e-3) / 1e12);
	}
	free(order);
}
