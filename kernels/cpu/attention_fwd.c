/* attention_fwd.c - CPU twin of attention_fwd.cu: causal GQA attention forward with document masking.
 * moec: constants NH NKV HD ACT_BF16 BLOCK_M BLOCK_N
 *
 * T = tokens (runtime, all micro-batch rows as one stream), NH query heads, NKV kv heads,
 * HD head dim, G = NH / NKV query heads per kv head; BLOCK_M / BLOCK_N are the GPU tile
 * sizes and unused here.
 * Shapes: q [T, NH, HD], k, v [T, NKV, HD] act_t; doc [T] int; out [T, NH, HD] act_t;
 *         lse [NH, T] float (natural-log sum of exp of the scaled scores, for the backward).
 *
 * Same semantics and precondition as the kernel: token i attends to j iff j <= i and
 * doc[j] == doc[i]; every document is one contiguous run of tokens with an id no other run
 * uses, so the keys of i are [start(i), i].
 * Exact softmax per row in fp32. Per (head, block of ATTN_CPU_QB query rows): the scores
 * against the block's key range come from one cblas_sgemm, the masked softmax runs per row,
 * and out = P V is a second sgemm. The bf16 path converts each head to fp32 first.
 * Scratch: (3 T + ATTN_CPU_QB) HD + ATTN_CPU_QB T floats, T ints. */
#include <cblas.h>

#include "moec_host.h"
#include "attention_cpu.h"

void MOEC_KERNEL_CPU(const act_t *q, const act_t *k, const act_t *v, const int *doc, act_t *out, float *lse, int tokens)
{
	if (tokens <= 0)
		return;
	const int T = tokens, G = NH / NKV, QB = ATTN_CPU_QB;
	const float scale = 1.f / sqrtf((float)HD);
	float *qf = attn_cpu_alloc((size_t)T * HD, sizeof(float), "attention_fwd");
	float *kf = attn_cpu_alloc((size_t)T * HD, sizeof(float), "attention_fwd");
	float *vf = attn_cpu_alloc((size_t)T * HD, sizeof(float), "attention_fwd");
	float *of = attn_cpu_alloc((size_t)QB * HD, sizeof(float), "attention_fwd");
	float *s = attn_cpu_alloc((size_t)QB * T, sizeof(float), "attention_fwd");
	int *start = attn_cpu_alloc((size_t)T, sizeof(int), "attention_fwd");
	attn_cpu_doc_starts(doc, T, start);

	for (int kvh = 0; kvh < NKV; kvh++) {
		attn_cpu_gather(kf, k, NKV, HD, kvh, T);
		attn_cpu_gather(vf, v, NKV, HD, kvh, T);
		for (int h = kvh * G; h < (kvh + 1) * G; h++) {
			attn_cpu_gather(qf, q, NH, HD, h, T);
			for (int i0 = 0; i0 < T; i0 += QB) {
				const int nq = T - i0 < QB ? T - i0 : QB;
				const int j0 = start[i0], nk = i0 + nq - j0; // keys any row of the block sees
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, HD, scale, qf + (size_t)i0 * HD, HD,
					    kf + (size_t)j0 * HD, HD, 0.f, s, nk);
				for (int r = 0; r < nq; r++) {
					const int i = i0 + r;
					lse[(size_t)h * T + i] = attn_cpu_softmax_row(s + (size_t)r * nk, nk, start[i] - j0, i - j0, NULL);
				}
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, HD, nk, 1.f, s, nk, vf + (size_t)j0 * HD, HD,
					    0.f, of, HD);
				attn_cpu_scatter(out, NH, HD, h, i0, nq, of);
			}
		}
	}
	free(qf);
	free(kf);
	free(vf);
	free(of);
	free(s);
	free(start);
}
