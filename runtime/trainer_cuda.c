/* trainer_cuda.c - the CUDA backend's host side: the arenas on the device, the copies a
 * step makes (batch in, statistics out), its dense GEMMs, and launch failures. See
 * trainer_cuda.h; the device itself is device_cuda.c.
 */
#include "trainer_cuda.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device_cuda.h"
#include "gemm.h"
#include "moert.h"

static moert_dptr dptr(const void *p)
{
	return (moert_dptr)(uintptr_t)p;
}

static void *hptr(moert_dptr p)
{
	return (void *)(uintptr_t)p;
}

void moert_cuda_step_mm(const struct moert_run *r, int op, int M, int N, int K, const void *A, int a16, const void *B,
			int b16, void *C, int c16, float beta)
{
	static const enum moert_mm_op ops[] = {MOERT_MM_NT, MOERT_MM_NN, MOERT_MM_TN}; /* gemm.h's order */
	char err[512];
	if (a16 != b16)
		moert_fatal("GEMM [%d x %d x %d] on the GPU: an fp32 and a bf16 operand (the step casts first)", M, N, K);
	if (M && N && moert_cuda_mm(r->cuda, ops[op], M, N, K, dptr(A), dptr(B), dptr(C), beta, a16, c16, err, sizeof err))
		moert_fatal("GEMM [%d x %d x %d] on the GPU: %s", M, N, K, err);
}

const float *moert_cuda_step_get(const struct moert_run *r, long off, long n)
{
	char err[512];
	if (moert_cuda_d2h(r->cuda, r->host_buf, dptr(r->acts + off), (size_t)n * sizeof(float), err, sizeof err) ||
	    moert_cuda_sync(r->cuda, err, sizeof err))
		moert_fatal("copying the step's statistics from the GPU: %s", err);
	return r->host_buf;
}

void moert_cuda_step_put(const struct moert_run *r, long off, const void *src, long bytes)
{
	char err[512];
	if (moert_cuda_h2d(r->cuda, dptr(r->acts + off), src, (size_t)bytes, err, sizeof err))
		moert_fatal("copying to the GPU: %s", err);
}

void moert_cuda_step_batch(const struct moert_run *r, const struct moert_batch *b, long off, int tokens,
			   const int **ids, const int **labels, const int **pos, const int **doc)
{
	const int32_t *src[4] = {b->input_ids, b->labels, b->positions, b->doc_ids};
	const int **dst[4] = {ids, labels, pos, doc};
	for (int i = 0; i < 4; i++) {
		long at = off + (long)i * tokens;
		moert_cuda_step_put(r, at, src[i], (long)tokens * 4);
		*dst[i] = (const int *)(r->acts + at);
	}
}

void moert_cuda_step_logits(const struct moert_run *r, const float *chunk, int vocab, int v0, int tokens, int c)
{
	if (!r->logits_out)
		return;
	char err[512];
	float *tmp = malloc((size_t)tokens * c * sizeof *tmp);
	if (!tmp)
		moert_fatal("out of memory");
	if (moert_cuda_d2h(r->cuda, tmp, dptr(chunk), (size_t)tokens * c * sizeof *tmp, err, sizeof err) ||
	    moert_cuda_sync(r->cuda, err, sizeof err))
		moert_fatal("copying logits from the GPU: %s", err);
	moert_copy_cols(r->logits_out, vocab, v0, tmp, tokens, c);
	free(tmp);
}

/* cuLaunchKernel from the driver device_cuda.c loaded; one device per process. */
typedef int (*launch_fn)(void *, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *, void **,
			 void **);
static launch_fn cu_launch;

int moert_cu_launch(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
		    unsigned smem, void *stream, void **args, void **extra)
{
	if (!cu_launch)
		moert_fatal("a kernel launch before the GPU was opened");
	return cu_launch(f, gx, gy, gz, bx, by, bz, smem, stream, args, extra);
}

/* Called by launch.h's <kernel>_cuda wrappers when cuLaunchKernel fails. */
void moert_cuda_launch_failed(int rc, const char *kernel, unsigned grid, unsigned block, unsigned smem)
{
	moert_fatal("launching kernel %s (grid %u, block %u, %u bytes of dynamic shared memory) failed: CUDA error %d",
		    kernel, grid, block, smem, rc);
}

static float *device_floats(struct moert_cuda *d, long long n, const char *what)
{
	char err[512];
	moert_dptr p;
	size_t bytes = (size_t)(n > 0 ? n : 1) * sizeof(float);
	if (moert_cuda_alloc(d, bytes, &p, err, sizeof err) || moert_cuda_memset(d, p, 0, bytes, err, sizeof err))
		moert_fatal("allocating %s on the GPU (%.1f MiB): %s", what, bytes / 1048576.0, err);
	return hptr(p);
}

static void copy_up(struct moert_cuda *d, float *dst, const float *src, long long n, const char *what)
{
	char err[512];
	if (moert_cuda_h2d(d, dptr(dst), src, (size_t)n * sizeof(float), err, sizeof err))
		moert_fatal("copying %s to the GPU: %s", what, err);
}

static void copy_down(struct moert_cuda *d, float *dst, const float *src, long long n, const char *what)
{
	char err[512];
	if (moert_cuda_d2h(d, dst, dptr(src), (size_t)n * sizeof(float), err, sizeof err))
		moert_fatal("copying %s from the GPU: %s", what, err);
}

void moert_cuda_run_open(const struct moert_model *m, const struct moert_run *host, struct moert_run *dev,
			 int ordinal, char *desc, size_t desc_len)
{
	char err[1024];
	struct moert_cuda *d;
	if (moert_cuda_open(ordinal, &d, err, sizeof err))
		moert_fatal("%s", err);
	*dev = (struct moert_run){.cuda = d, .logits_out = host->logits_out};
	dev->cuda_stream = moert_cuda_stream(d);
	cu_launch = (launch_fn)moert_cuda_launch_kernel_fn(d);
	dev->cuda_fn = calloc((size_t)m->n_kernels, sizeof *dev->cuda_fn);
	dev->host_buf = malloc((size_t)(m->stats_floats + 1) * sizeof(float));
	if (!dev->cuda_fn || !dev->host_buf)
		moert_fatal("out of memory");
	for (int i = 0; i < m->n_kernels; i++) {
		const struct moert_kernel_image *k = &m->kernels[i];
		moert_cuda_fn fn;
		if (moert_cuda_kernel(d, k->begin, (size_t)(k->end - k->begin), k->name, k->dyn_smem, &fn, err, sizeof err))
			moert_fatal("loading kernel %s: %s (was the trainer built for this GPU's arch? moec build --arch)",
				    k->name, err);
		dev->cuda_fn[i] = fn;
	}
	dev->params = device_floats(d, m->param_floats, "the weights");
	dev->grads = device_floats(d, m->param_floats, "the gradients");
	dev->exp_avg = device_floats(d, m->param_floats, "AdamW's first moments");
	dev->exp_avg_sq = device_floats(d, m->param_floats, "AdamW's second moments");
	dev->acts = device_floats(d, m->act_floats, "the activations");
	copy_up(d, dev->params, host->params, m->param_floats, "the weights");
	if (host->params16) { /* bf16 copies: half as many floats' worth of bytes */
		long long n = (m->param_floats + 1) / 2;
		dev->params16 = device_floats(d, n, "the bf16 weights");
		copy_up(d, dev->params16, host->params16, n, "the bf16 weights");
	}
	copy_up(d, dev->exp_avg, host->exp_avg, m->param_floats, "AdamW's moments");
	copy_up(d, dev->exp_avg_sq, host->exp_avg_sq, m->param_floats, "AdamW's moments");
	m->setup_cuda(dev);
	if (moert_cuda_sync(d, err, sizeof err))
		moert_fatal("setting up the GPU: %s", err);
	snprintf(desc, desc_len, "%s", moert_cuda_describe(d));
}

void moert_cuda_run_download(const struct moert_model *m, const struct moert_run *dev, struct moert_run *host,
			     int with_grads)
{
	char err[512];
	copy_down(dev->cuda, host->params, dev->params, m->param_floats, "the weights");
	copy_down(dev->cuda, host->exp_avg, dev->exp_avg, m->param_floats, "AdamW's moments");
	copy_down(dev->cuda, host->exp_avg_sq, dev->exp_avg_sq, m->param_floats, "AdamW's moments");
	if (with_grads)
		copy_down(dev->cuda, host->grads, dev->grads, m->param_floats, "the gradients");
	if (moert_cuda_sync(dev->cuda, err, sizeof err))
		moert_fatal("copying from the GPU: %s", err);
}

void moert_cuda_run_zero_grads(const struct moert_model *m, const struct moert_run *dev)
{
	char err[512];
	if (moert_cuda_memset(dev->cuda, dptr(dev->grads), 0, (size_t)m->param_floats * sizeof(float), err, sizeof err))
		moert_fatal("zeroing the gradients on the GPU: %s", err);
}

void moert_cuda_run_close(struct moert_run *dev)
{
	if (!dev->cuda)
		return;
	float *bufs[] = {dev->params, dev->grads, dev->exp_avg, dev->exp_avg_sq, dev->acts, dev->params16};
	for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
		if (bufs[i])
			moert_cuda_free(dev->cuda, dptr(bufs[i]));
	moert_cuda_close(dev->cuda);
	free(dev->cuda_fn);
	free(dev->host_buf);
	*dev = (struct moert_run){0};
}
