/* zero.c - parallel.shard_optimizer (ZeRO-1): ranges, AdamW's tables, the weights' gather
 * and the checkpoint side. See zero.h. */
#include "zero.h"

#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "moert.h"
#include "trainer.h"

/* The region's group: dense blocks are replicated over dp, experts over edp. */
static const enum moert_group zero_group[2] = {MOERT_DP, MOERT_EDP};

void moert_zero_part(long long n, int p, int index, long long *lo, long long *hi)
{
	long long c = p > 1 ? (n + p - 1) / p : n;
	*lo = c * index < n ? c * index : n;
	*hi = *lo + c < n ? *lo + c : n;
}

void moert_zero_init(struct moert_zero *z, const struct moert_model *m, const struct moert_comm *c)
{
	const long long begin[2] = {0, m->experts_begin}, end[2] = {m->experts_begin, m->param_floats};
	memset(z, 0, sizeof *z);
	z->on = m->shard_optimizer && c && (c->size[MOERT_DP] > 1 || c->size[MOERT_EDP] > 1);
	z->master = z->on && m->fp32_floats < m->param_floats;
	z->fp32_end = z->master ? m->fp32_floats : m->param_floats;
	for (int k = 0; k < 2; k++) {
		int p = z->on ? c->size[zero_group[k]] : 1, i = z->on ? c->index[zero_group[k]] : 0;
		long long lo, hi;
		moert_zero_part(end[k] - begin[k], p, i, &lo, &hi);
		z->lo[k] = begin[k] + lo;
		z->hi[k] = begin[k] + hi;
	}
	if (!z->on) {
		z->base[0] = 0;
		z->base[1] = m->experts_begin;
		z->floats = m->param_floats;
		return;
	}
	/* the dense part first, then the experts', each with room for the largest range */
	long long dense = (end[0] + c->size[MOERT_DP] - 1) / c->size[MOERT_DP];
	long long experts = (end[1] - begin[1] + c->size[MOERT_EDP] - 1) / c->size[MOERT_EDP];
	z->base[0] = 0;
	z->base[1] = dense;
	z->floats = dense + experts;
}

void moert_zero_tables(const struct moert_zero *z, const long *block_offsets, int nblocks, long long experts_begin,
		       float *params, float *master, float *grads, float *exp_avg, float *exp_avg_sq, void *params16,
		       float **p, float **g, float **m, float **v, void **p16, long *offsets)
{
	offsets[0] = 0;
	for (int i = 0; i < nblocks; i++) {
		int k = block_offsets[i] >= experts_begin && block_offsets[i + 1] > block_offsets[i] ? 1 : 0;
		long long a = block_offsets[i] > z->lo[k] ? block_offsets[i] : z->lo[k];
		long long b = block_offsets[i + 1] < z->hi[k] ? block_offsets[i + 1] : z->hi[k];
		if (b < a) /* not in this rank's range: an empty piece */
			b = a = z->lo[k];
		long long at = z->base[k] + (a - z->lo[k]);
		/* a block is wholly below fp32_end or above it (compiler/step.c) */
		p[i] = z->master && a >= z->fp32_end ? master + at : params + a;
		g[i] = grads + a;
		m[i] = exp_avg + at;
		v[i] = exp_avg_sq + at;
		if (p16)
			p16[i] = params16 ? (unsigned short *)params16 + a : NULL;
		offsets[i + 1] = offsets[i] + (long)(b - a);
	}
}

int moert_zero_window(long long begin, long long end, int p, long long w0, long long w1, long *counts, long *displs)
{
	if (w0 < begin)
		w0 = begin;
	if (w1 > end)
		w1 = end;
	for (int i = 0; i < p; i++) {
		long long lo, hi;
		moert_zero_part(end - begin, p, i, &lo, &hi);
		lo = begin + lo < w0 ? w0 : begin + lo;
		hi = begin + hi > w1 ? w1 : begin + hi;
		counts[i] = hi > lo ? (long)(hi - lo) : 0;
		displs[i] = (long)(hi > lo ? lo : w0);
	}
	return w1 > w0;
}

void moert_zero_gather_weights(const struct moert_run *r, long long experts_begin, long long param_floats)
{
	if (!r->zero.on)
		return;
	const long long begin[2] = {0, experts_begin}, end[2] = {experts_begin, param_floats};
	for (int k = 0; k < 2; k++) {
		int p = r->comm->size[zero_group[k]];
		enum moert_traffic t = k ? MOERT_BYTES_EDP : MOERT_BYTES_DP;
		if (p == 1)
			continue;
		long *counts = malloc((size_t)p * 2 * sizeof *counts);
		if (!counts)
			moert_fatal("out of memory");
		/* the fp32 weights; in a bf16 step with sharded masters the rest as bf16 copies */
		if (moert_zero_window(begin[k], end[k], p, 0, r->zero.fp32_end, counts, counts + p))
			moert_allgatherv(r->comm, zero_group[k], t, r->params, 4, counts, counts + p);
		if (r->zero.master && moert_zero_window(begin[k], end[k], p, r->zero.fp32_end, end[k], counts, counts + p))
			moert_allgatherv(r->comm, zero_group[k], t, r->params16, 2, counts, counts + p);
		free(counts);
	}
}

void moert_zero_expand(const struct moert_zero *z, const struct moert_model *m, struct moert_comm *c,
		       const float *part, float *full)
{
	if (!z->on) {
		memcpy(full, part, (size_t)m->param_floats * sizeof *full);
		return;
	}
	const long long begin[2] = {0, m->experts_begin}, end[2] = {m->experts_begin, m->param_floats};
	for (int k = 0; k < 2; k++) {
		int p = c->size[zero_group[k]];
		/* every part is sent at the largest part's size (the arena has room for it) */
		long long each = (end[k] - begin[k] + p - 1) / p;
		if (each == 0)
			continue;
		float *all = NULL;
		if (c->index[zero_group[k]] == 0 && !(all = malloc((size_t)(p * each) * sizeof *all)))
			moert_fatal("out of memory");
		moert_gather_f32(c, zero_group[k], 0, part + z->base[k], all, each);
		if (all)
			memcpy(full + begin[k], all, (size_t)(end[k] - begin[k]) * sizeof *full);
		else /* a rank train_state_save does not read: its own range is enough */
			memcpy(full + z->lo[k], part + z->base[k], (size_t)(z->hi[k] - z->lo[k]) * sizeof *full);
		free(all);
	}
}

void moert_zero_cut(const struct moert_zero *z, const float *full, float *part)
{
	for (int k = 0; k < 2; k++)
		memcpy(part + z->base[k], full + z->lo[k], (size_t)(z->hi[k] - z->lo[k]) * sizeof *part);
}
