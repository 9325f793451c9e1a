/* attention_bwd.c - CPU twin of attention_bwd.cu: causal GQA attention backward with document masking.
 * moec: constants NH NKV HD ACT_BF16 BLOCK_M BLOCK_N
 *
 * T = tokens (runtime), NH query heads, NKV kv heads, HD head dim, G = NH / NKV;
 * BLOCK_M / BLOCK_N are the GPU tile sizes and unused here.
 * Shapes: q [T, NH, HD], k, v [T, NKV, HD], dout [T, NH, HD] act_t; doc [T] int;
 *         lse [NH, T] float (attention_fwd), delta [NH, T] float (attention_bwd_pre);
 *         dq [T, NH, HD], dk, dv [T, NKV, HD] act_t (written, not accumulated into).
 *
 * Per head h (kv head h / G), scale = HD^-0.5, on the causal + document mask:
 *   P = exp(scale Q K^T - lse)   dV += P^T dO   dP = dO V^T   dS = P * (dP - delta)
 *   dQ = scale dS K              dK += scale dS^T Q
 * dK and dV accumulate in fp32 over the G heads of a kv head and are stored once. Blocks of
 * ATTN_CPU_QB query rows against their key range, every product a cblas_sgemm.
 * Scratch: 6 T HD + ATTN_CPU_QB (HD + 2 T) floats, T ints. */
#include <cblas.h>

#include "moec_host.h"
#include "attention_cpu.h"

void MOEC_KERNEL_CPU(const act_t *q, const act_t *k, const act_t *v, const int *doc, const act_t *dout, const float *lse,
		     const float *delta, act_t *dq, act_t *dk, act_t *dv, int tokens)
{
	if (tokens <= 0)
		return;
	const int T = tokens, G = NH / NKV, QB = ATTN_CPU_QB;
	const float scale = 1.f / sqrtf((float)HD);
	float *qf = attn_cpu_alloc((size_t)T * HD, sizeof(float), "attention_bwd");
	float *dof = attn_cpu_alloc((size_t)T * HD, sizeof(float), "attention_bwd");
	float *kf = attn_cpu_alloc((size_t)T * HD, sizeof(float), "attention_bwd");
	float *vf = attn_cpu_alloc((size_t)T * HD, sizeof(float), "attention_bwd");
	float *dkf = attn_cpu_alloc((size_t)T * HD, sizeof(float), "attention_bwd");
	float *dvf = attn_cpu_alloc((size_t)T * HD, sizeof(float), "attention_bwd");
	float *dqb = attn_cpu_alloc((size_t)QB * HD, sizeof(float), "attention_bwd");
	float *p = attn_cpu_alloc((size_t)QB * T, sizeof(float), "attention_bwd");
	float *ds = attn_cpu_alloc((size_t)QB * T, sizeof(float), "attention_bwd");
	int *start = attn_cpu_alloc((size_t)T, sizeof(int), "attention_bwd");
	attn_cpu_doc_starts(doc, T, start);

	for (int kvh = 0; kvh < NKV; kvh++) {
		attn_cpu_gather(kf, k, NKV, HD, kvh, T);
		attn_cpu_gather(vf, v, NKV, HD, kvh, T);
		memset(dkf, 0, (size_t)T * HD * sizeof(float));
		memset(dvf, 0, (size_t)T * HD * sizeof(float));
		for (int h = kvh * G; h < (kvh + 1) * G; h++) {
			attn_cpu_gather(qf, q, NH, HD, h, T);
			attn_cpu_gather(dof, dout, NH, HD, h, T);
			for (int i0 = 0; i0 < T; i0 += QB) {
				const int nq = T - i0 < QB ? T - i0 : QB;
				const int j0 = start[i0], nk = i0 + nq - j0;
				const float *qb = qf + (size_t)i0 * HD, *dob = dof + (size_t)i0 * HD;
				const float *kb = kf + (size_t)j0 * HD, *vb = vf + (size_t)j0 * HD;
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, HD, scale, qb, HD, kb, HD, 0.f, p, nk);
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, HD, 1.f, dob, HD, vb, HD, 0.f, ds, nk);
				for (int r = 0; r < nq; r++) {
					const int i = i0 + r;
					float *pr = p + (size_t)r * nk, *dsr = ds + (size_t)r * nk;
					attn_cpu_softmax_row(pr, nk, start[i] - j0, i - j0, lse + (size_t)h * T + i);
					const float dl = delta[(size_t)h * T + i];
					for (int c = 0; c < nk; c++)
						dsr[c] = pr[c] * (dsr[c] - dl);
				}
				cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, HD, nq, 1.f, p, nk, dob, HD, 1.f,
					    dvf + (size_t)j0 * HD, HD);
				cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, HD, nq, scale, ds, nk, qb, HD, 1.f,
					    dkf + (size_t)j0 * HD, HD);
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, HD, nk, scale, ds, nk, kb, HD, 0.f, dqb, HD);
				attn_cpu_scatter(dq, NH, HD, h, i0, nq, dqb);
			}
		}
		attn_cpu_scatter(dk, NKV, HD, kvh, 0, T, dkf);
		attn_cpu_scatter(dv, NKV, HD, kvh, 0, T, dvf);
	}
	free(qf);
	free(dof);
	free(kf);
	free(vf);
	free(dkf);
	free(dvf);
	free(dqb);
	free(p);
	free(ds);
	free(start);
}
