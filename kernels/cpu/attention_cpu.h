/* attention_cpu.h - helpers shared by the attention twins (attention_fwd.c, attention_bwd.c):
 * document starts, per-head gather/scatter between [T, heads, HD] act_t tensors and dense
 * fp32 [T, HD] matrices (so the GEMMs go to OpenBLAS), and the masked softmax row.
 * Include after moec_host.h; safe to include from several twins in one translation unit. */
#ifndef MOEC_ATTENTION_CPU_H
#define MOEC_ATTENTION_CPU_H

#include <stdio.h>
#include <stdlib.h>

/* Query rows per GEMM block: bounds the [rows, T] score scratch and wastes at most
 * ATTN_CPU_QB / 2 masked columns per row on the diagonal. */
#define ATTN_CPU_QB 64

static inline void *attn_cpu_alloc(size_t n, size_t size, const char *who)
{
	void *p = calloc(n ? n : 1, size);
	if (!p) {
		fprintf(stderr, "%s: out of memory (%zu x %zu bytes)\n", who, n, size);
		abort();
	}
	return p;
}

/* start[i] = first token of i's document. Documents are contiguous runs of tokens (what
 * packing gives), so token i attends to exactly the keys [start[i], i]. */
static inline void attn_cpu_doc_starts(const int *doc, int tokens, int *start)
{
	for (int i = 0; i < tokens; i++)
		start[i] = i > 0 && doc[i - 1] == doc[i] ? start[i - 1] : i;
}

/* dst [T, hd] = head h of x [T, heads, hd]. */
static inline void attn_cpu_gather(float *dst, const act_t *x, int heads, int hd, int h, int tokens)
{
	for (int t = 0; t < tokens; t++) {
		const act_t *src = x + ((size_t)t * heads + h) * hd;
		for (int d = 0; d < hd; d++)
			dst[(size_t)t * hd + d] = act_load(src + d);
	}
}

/* Rows [t0, t0 + n) of head h of x [T, heads, hd] = src [n, hd]. */
static inline void attn_cpu_scatter(act_t *x, int heads, int hd, int h, int t0, int n, const float *src)
{
	for (int r = 0; r < n; r++) {
		act_t *dst = x + ((size_t)(t0 + r) * heads + h) * hd;
		for (int d = 0; d < hd; d++)
			act_store(dst + d, src[(size_t)r * hd + d]);
	}
}

/* row[0, n) holds scaled scores; keep [lo, hi] (inclusive), zero the rest, and replace the
 * kept scores by exp(score - sub) where sub = lse_in, or, when lse_in is NULL, by the
 * normalized softmax; returns log sum exp of the kept scores (the given lse_in if set). */
static inline float attn_cpu_softmax_row(float *row, int n, int lo, int hi, const float *lse_in)
{
	for (int c = 0; c < lo; c++)
		row[c] = 0.f;
	for (int c = hi + 1; c < n; c++)
		row[c] = 0.f;
	if (lse_in) {
		for (int c = lo; c <= hi; c++)
			row[c] = expf(row[c] - *lse_in);
		return *lse_in;
	}
	float mx = row[lo];
	for (int c = lo + 1; c <= hi; c++)
		mx = row[c] > mx ? row[c] : mx;
	float sum = 0.f;
	for (int c = lo; c <= hi; c++) {
		row[c] = expf(row[c] - mx);
		sum += row[c];
	}
	const float inv = 1.f / sum;
	for (int c = lo; c <= hi; c++)
		row[c] *= inv;
	return mx + logf(sum);
}

#endif
