/* trainer_cuda.c - the CUDA backend's host side: the arenas on the device, the copies a
 * step makes (batch in, statistics out), its dense GEMMs, and launch failures. See
 * trainer_cuda.h; the device itself is device_cuda.c.
 */
#include "trainer_cuda.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_nccl.h"
#include "device_cuda.h"
#include "ep.h"
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
static const struct moert_cuda *launch_device; /* for the error text of a failed launch */

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
	char text[512] = "";
	if (launch_device)
		moert_cuda_result_text(launch_device, rc, text, sizeof text);
	else
		snprintf(text, sizeof text, "CUDA error %d", rc);
	moert_fatal("launching kernel %s (grid %u, block %u, %u bytes of dynamic shared memory) failed: %s", kernel, grid,
		    block, smem, text);
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
			 struct moert_cuda *d)
{
	char err[1024];
	*dev = (struct moert_run){.cuda = d, .logits_out = host->logits_out, .comm = host->comm, .ep = host->ep};
	dev->cuda_stream = moert_cuda_stream(d);
	cu_launch = (launch_fn)moert_cuda_launch_kernel_fn(d);
	launch_device = d;
	dev->cuda_fn = calloc((size_t)m->n_kernels, sizeof *dev->cuda_fn);
	/* GET's statistics or every tp rank's cross-entropy state [tp][3][tokens], or an
	 * expert-parallel route's counts and offsets */
	long long host_floats = m->stats_floats + 1;
	if (host_floats < 3LL * m->layout.tp * m->tokens)
		host_floats = 3LL * m->layout.tp * m->tokens;
	if (host_floats < 2LL * m->experts + 1)
		host_floats = 2LL * m->experts + 1;
	dev->host_buf = malloc((size_t)host_floats * sizeof(float));
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
	dev->params = device_floats(d, m->fp32_floats, "the weights"); /* a sharded bf16 step's: the norms */
	dev->grads = device_floats(d, m->param_floats, "the gradients");
	/* AdamW's moments: this rank's part under parallel.shard_optimizer (zero.h) */
	dev->zero = host->zero;
	dev->exp_avg = device_floats(d, host->zero.floats, "AdamW's first moments");
	dev->exp_avg_sq = device_floats(d, host->zero.floats, "AdamW's second moments");
	dev->acts = device_floats(d, m->act_floats, "the activations");
	copy_up(d, dev->params, host->params, m->fp32_floats, "the weights");
	if (host->master) {
		dev->master = device_floats(d, host->zero.floats, "the fp32 masters");
		copy_up(d, dev->master, host->master, host->zero.floats, "the fp32 masters");
	}
	if (host->params16) { /* bf16 copies: half as many floats' worth of bytes */
		long long n = (m->param_floats + 1) / 2;
		dev->params16 = device_floats(d, n, "the bf16 weights");
		copy_up(d, dev->params16, host->params16, n, "the bf16 weights");
	}
	if (host->router_bias) { /* the test hook's selection bias, [experts] */
		float *b = device_floats(d, m->experts, "the router's test bias");
		copy_up(d, b, host->router_bias, m->experts, "the router's test bias");
		dev->router_bias = b;
	}
	if (host->ep) { /* what the expert kernels read: each MoE layer's received-row offsets, then
			  * its regroup tables (ep.h: two of 2 E + 1 ints) */
		const long per = m->experts_per_rank + 1, per_table = 2 * (2L * m->experts + 1);
		int *offs = (int *)device_floats(d, (long long)m->moe_layers * (per + per_table), "the expert-parallel offsets");
		for (int i = 0; i < m->moe_layers; i++) {
			host->ep[i].dev_offsets = offs + i * per;
			host->ep[i].dev_regroup = offs + m->moe_layers * per + i * per_table;
		}
	}
	copy_up(d, dev->exp_avg, host->exp_avg, host->zero.floats, "AdamW's moments");
	copy_up(d, dev->exp_avg_sq, host->exp_avg_sq, host->zero.floats, "AdamW's moments");
	m->setup_cuda(dev);
	if (moert_cuda_sync(d, err, sizeof err))
		moert_fatal("setting up the GPU: %s", err);
}

void moert_cuda_run_download(const struct moert_model *m, const struct moert_run *dev, struct moert_run *host,
			     int with_grads)
{
	char err[512];
	copy_down(dev->cuda, host->params, dev->params, m->fp32_floats, "the weights");
	if (host->master)
		copy_down(dev->cuda, host->master, dev->master, host->zero.floats, "the fp32 masters");
	copy_down(dev->cuda, host->exp_avg, dev->exp_avg, host->zero.floats, "AdamW's moments");
	copy_down(dev->cuda, host->exp_avg_sq, dev->exp_avg_sq, host->zero.floats, "AdamW's moments");
	if (with_grads)
		copy_down(dev->cuda, host->grads, dev->grads, m->param_floats, "the gradients");
	if (moert_cuda_sync(dev->cuda, err, sizeof err))
		moert_fatal("copying from the GPU: %s", err);
}

void moert_cuda_run_zero_grads(const struct moert_model *m, const struct moert_run *dev, int all)
{
	char err[512];
	const long long whole[1][2] = {{0, m->param_floats}};
	const long long (*ranges)[2] = all ? whole : m->zero_ranges;
	for (int i = 0; i < (all ? 1 : m->n_zero_ranges); i++)
		if (moert_cuda_memset(dev->cuda, dptr(dev->grads + ranges[i][0]), 0, (size_t)ranges[i][1] * sizeof(float), err,
				      sizeof err))
			moert_fatal("zeroing the gradients on the GPU: %s", err);
}

void moert_cuda_run_close(struct moert_run *dev)
{
	if (!dev->cuda)
		return;
	float *bufs[] = {dev->params, dev->master, dev->grads, dev->exp_avg, dev->exp_avg_sq, dev->acts, dev->params16,
			 (float *)dev->router_bias, dev->ep ? (float *)dev->ep[0].dev_offsets : NULL};
	for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
		if (bufs[i])
			moert_cuda_free(dev->cuda, dptr(bufs[i]));
	if (launch_device == dev->cuda)
		launch_device = NULL, cu_launch = NULL;
	moert_cuda_close(dev->cuda);
	free(dev->cuda_fn);
	free(dev->host_buf);
	*dev = (struct moert_run){0};
}

/* ---- several ranks: NCCL on the step's device buffers ---- */

struct moert_cuda *moert_cuda_rank_open(const struct moert_model *m, struct moert_comm *comm, struct moert_nccl *nccl)
{
	char err[1024];
	struct moert_cuda *d;
	const int ordinal = moert_local_rank(comm);
	if (moert_cuda_open(ordinal, &d, err, sizeof err))
		moert_fatal("rank %d: %s", comm->rank, err);
	if (comm->world == 1)
		return d;
	/* the id over MPI when mpirun/srun started the ranks, else over torchrun's rendezvous */
	struct moert_nccl_id id;
	if (moert_nccl_share_id(comm->torchrun ? NULL : comm, comm->torchrun ? &comm->boot : NULL, &id, 600, err,
				sizeof err) ||
	    moert_nccl_init(nccl, &m->layout, comm->rank, comm->world, &id, d, err, sizeof err) ||
	    moert_nccl_attach_host(nccl, d, (size_t)64 << 20, err, sizeof err))
		moert_fatal("rank %d: starting NCCL: %s", comm->rank, err);
	for (int g = 0; g < MOERT_NGROUPS; g++)
		if (nccl->size[g] != comm->size[g] || nccl->index[g] != comm->index[g])
			moert_fatal("rank %d: NCCL's group %d (%d of %d) is not the launcher's (%d of %d)", comm->rank, g,
				    nccl->index[g], nccl->size[g], comm->index[g], comm->size[g]);
	comm->nccl = nccl;
	return d;
}

static struct moert_nccl *step_nccl(const struct moert_run *r)
{
	return r->comm ? r->comm->nccl : NULL;
}

void moert_cuda_step_reduce(const struct moert_run *r, int group, int kind, float *x, long n)
{
	if (step_nccl(r))
		moert_nccl_allreduce_f32(step_nccl(r), (enum moert_group)group, (enum moert_traffic)kind, dptr(x), n);
}

void moert_cuda_step_tp_sum(const struct moert_run *r, void *x, long n, int bf16)
{
	struct moert_nccl *c = step_nccl(r);
	if (c && bf16)
		moert_nccl_allreduce_bf16(c, MOERT_TP, MOERT_BYTES_TP, dptr(x), n);
	else if (c)
		moert_nccl_allreduce_f32(c, MOERT_TP, MOERT_BYTES_TP, dptr(x), n);
}

void moert_cuda_step_tp_gather(const struct moert_run *r, void *x, long bytes)
{
	if (step_nccl(r))
		moert_nccl_allgather_f32(step_nccl(r), MOERT_TP, MOERT_BYTES_TP, dptr(x), bytes / 4);
}

void moert_cuda_step_zero_gather(const struct moert_run *r, long long experts_begin, long long param_floats)
{
	static const enum moert_group groups[2] = {MOERT_DP, MOERT_EDP};
	struct moert_nccl *c = step_nccl(r);
	if (!c || !r->zero.on)
		return;
	const long long begin[2] = {0, experts_begin}, end[2] = {experts_begin, param_floats};
	for (int k = 0; k < 2; k++) {
		int p = c->size[groups[k]];
		long counts[MOERT_NCCL_MAX_PEERS], displs[MOERT_NCCL_MAX_PEERS];
		if (p == 1)
			continue;
		if (p > MOERT_NCCL_MAX_PEERS)
			moert_fatal("sharded AdamW over %d ranks (at most %d)", p, MOERT_NCCL_MAX_PEERS);
		enum moert_traffic t = k ? MOERT_BYTES_EDP : MOERT_BYTES_DP;
		/* the fp32 weights; in a bf16 step with sharded masters the rest as bf16 copies */
		if (moert_zero_window(begin[k], end[k], p, 0, r->zero.fp32_end, counts, displs))
			moert_nccl_allgatherv(c, groups[k], t, dptr(r->params), 4, counts, displs);
		if (r->zero.master && moert_zero_window(begin[k], end[k], p, r->zero.fp32_end, end[k], counts, displs))
			moert_nccl_allgatherv(c, groups[k], t, dptr(r->params16), 2, counts, displs);
	}
}

void moert_cuda_step_ep_route(const struct moert_run *r, int layer, const int *counts, const int *offsets)
{
	struct moert_ep_route *rt = &r->ep[layer];
	const int experts = rt->ep * rt->e_local;
	char err[512];
	/* the counts come to the host: the all-to-all's sizes are the host's to give to NCCL */
	int *h = (int *)r->host_buf; /* 2 E + 1 ints at least (moert_cuda_run_open) */
	if (moert_cuda_d2h(r->cuda, h, dptr(counts), (size_t)experts * sizeof *h, err, sizeof err) ||
	    moert_cuda_d2h(r->cuda, h + experts, dptr(offsets), (size_t)(experts + 1) * sizeof *h, err, sizeof err) ||
	    moert_cuda_sync(r->cuda, err, sizeof err))
		moert_fatal("copying MoE layer %d's expert counts from the GPU: %s", layer, err);
	moert_ep_route(r->comm, rt, h, h + experts);
	/* the offsets the GEMMs read and the tables ep_regroup reads: small, and on the stream
	 * before the launches that use them, as the counts' sync above left it */
	if (moert_cuda_h2d(r->cuda, dptr(rt->dev_offsets), rt->local_offsets, (size_t)(rt->e_local + 1) * sizeof(int), err,
			   sizeof err) ||
	    moert_cuda_h2d(r->cuda, dptr(rt->dev_regroup), rt->regroup, 2 * (size_t)MOERT_EP_TABLE_INTS(rt) * sizeof(int),
			   err, sizeof err))
		moert_fatal("copying MoE layer %d's expert offsets to the GPU: %s", layer, err);
}

/* What the GPU's EP transport needs: NCCL, and the step's launch of ep_regroup. */
struct ep_gpu {
	struct moert_nccl *nccl;
	const struct moert_run *r;
	moert_ep_regroup_fn launch;
};

static void ep_alltoallv(void *ctx, const float *send, const long *sc, const long *sd, float *recv, const long *rc,
			 const long *rd)
{
	const struct ep_gpu *g = ctx;
	moert_nccl_alltoallv_f32(g->nccl, MOERT_EP, MOERT_BYTES_A2A, dptr(send), sc, sd, dptr(recv), rc, rd);
}

/* The whole regroup as one kernel launch, reading the table moert_cuda_step_ep_route uploaded,
 * instead of ep x e_local device-to-device copies. */
static void ep_regroup(void *ctx, const struct moert_ep_route *rt, int to_expert_major, const float *src, float *dst,
		       int width)
{
	const struct ep_gpu *g = ctx;
	g->launch(g->r, MOERT_EP_TABLE(rt, rt->dev_regroup, to_expert_major), src, dst, (int)rt->rows, width);
}

void moert_cuda_step_ep(const struct moert_run *r, int layer, int combine, const void *in, int width, float *tmp,
			void *out, moert_ep_regroup_fn regroup)
{
	struct ep_gpu g = {step_nccl(r), r, regroup};
	const struct moert_ep_io io = {.alltoallv = ep_alltoallv, .regroup = ep_regroup, .ctx = &g};
	if (!g.nccl)
		moert_fatal("expert parallelism on the GPU without NCCL (moert_cuda_rank_open attaches it)");
	(combine ? moert_ep_combine_io : moert_ep_dispatch_io)(&io, &r->ep[layer], in, width, tmp, out);
}
