/* ep.c - expert-parallel routing, dispatch and combine, over a transport (ep.h). */
#include "ep.h"

#include <stdlib.h>
#include <string.h>

#include "moert.h"

void moert_ep_init(struct moert_ep_route *rt, int ep, int e_local)
{
	memset(rt, 0, sizeof *rt);
	if (ep < 1 || ep > MOERT_EP_MAX)
		moert_fatal("expert parallelism over %d ranks: the CPU backend handles 1..%d", ep, MOERT_EP_MAX);
	rt->ep = ep;
	rt->e_local = e_local;
	rt->from = calloc((size_t)ep * e_local, sizeof *rt->from);
	rt->local_offsets = calloc((size_t)e_local + 1, sizeof *rt->local_offsets);
	if (!rt->from || !rt->local_offsets)
		moert_fatal("out of memory");
}

void moert_ep_free(struct moert_ep_route *rt)
{
	free(rt->from);
	free(rt->local_offsets);
	memset(rt, 0, sizeof *rt);
}

void moert_ep_route(struct moert_comm *c, struct moert_ep_route *rt, const int *counts, const int *offsets)
{
	int ep = rt->ep, el = rt->e_local;
	/* counts first: rank d learns how many rows of each of its experts every rank sends */
	moert_alltoall_i32(c, MOERT_EP, counts, rt->from, el);
	for (int d = 0; d < ep; d++) {
		rt->send_first[d] = offsets[d * el];
		rt->send_rows[d] = offsets[(d + 1) * el] - offsets[d * el];
	}
	rt->rows = 0;
	for (int s = 0; s < ep; s++) {
		rt->recv_first[s] = rt->rows;
		rt->recv_rows[s] = 0;
		for (int j = 0; j < el; j++)
			rt->recv_rows[s] += rt->from[s * el + j];
		rt->rows += rt->recv_rows[s];
	}
	rt->local_offsets[0] = 0;
	for (int j = 0; j < el; j++) {
		int n = 0;
		for (int s = 0; s < ep; s++)
			n += rt->from[s * el + j];
		rt->local_offsets[j + 1] = rt->local_offsets[j] + n;
	}
}

/* Move the row blocks between arrival order [source][expert] and expert-major order
 * [expert][source]; to_expert_major chooses the direction. */
static void regroup(const struct moert_ep_io *io, const struct moert_ep_route *rt, const float *src, float *dst,
		    int width, int to_expert_major)
{
	int ep = rt->ep, el = rt->e_local;
	for (int j = 0; j < el; j++) {
		long em = rt->local_offsets[j]; /* where expert j's rows start, expert-major */
		for (int s = 0; s < ep; s++) {
			long n = rt->from[s * el + j], arr = rt->recv_first[s];
			for (int jj = 0; jj < j; jj++)
				arr += rt->from[s * el + jj];
			const float *from = to_expert_major ? src + arr * width : src + em * width;
			float *to = to_expert_major ? dst + em * width : dst + arr * width;
			if (n)
				io->copy(io->ctx, to, from, (size_t)n * width * sizeof *to);
			em += n;
		}
	}
}

void moert_ep_dispatch_io(const struct moert_ep_io *io, const struct moert_ep_route *rt, const float *x, int width,
			  float *tmp, float *out)
{
	long sc[MOERT_EP_MAX], sd[MOERT_EP_MAX], rc[MOERT_EP_MAX], rd[MOERT_EP_MAX];
	for (int d = 0; d < rt->ep; d++) {
		sc[d] = rt->send_rows[d] * width;
		sd[d] = rt->send_first[d] * width;
		rc[d] = rt->recv_rows[d] * width;
		rd[d] = rt->recv_first[d] * width;
	}
	io->alltoallv(io->ctx, x, sc, sd, tmp, rc, rd);
	regroup(io, rt, tmp, out, width, 1);
}

void moert_ep_combine_io(const struct moert_ep_io *io, const struct moert_ep_route *rt, const float *y, int width,
			 float *tmp, float *out)
{
	long sc[MOERT_EP_MAX], sd[MOERT_EP_MAX], rc[MOERT_EP_MAX], rd[MOERT_EP_MAX];
	regroup(io, rt, y, tmp, width, 0);
	for (int d = 0; d < rt->ep; d++) { /* the dispatch's counts, with the roles swapped */
		sc[d] = rt->recv_rows[d] * width;
		sd[d] = rt->recv_first[d] * width;
		rc[d] = rt->send_rows[d] * width;
		rd[d] = rt->send_first[d] * width;
	}
	io->alltoallv(io->ctx, tmp, sc, sd, out, rc, rd);
}

/* ---- the CPU backend's transport: MPI (comm.h) and memcpy ---- */

static void cpu_alltoallv(void *ctx, const float *send, const long *sc, const long *sd, float *recv, const long *rc,
			  const long *rd)
{
	moert_alltoallv_f32(ctx, MOERT_EP, MOERT_BYTES_A2A, send, sc, sd, recv, rc, rd);
}

static void cpu_copy(void *ctx, float *dst, const float *src, size_t bytes)
{
	(void)ctx;
	memcpy(dst, src, bytes);
}

void moert_ep_dispatch(struct moert_comm *c, const struct moert_ep_route *rt, const float *x, int width, float *tmp,
		       float *out)
{
	const struct moert_ep_io io = {cpu_alltoallv, cpu_copy, c};
	moert_ep_dispatch_io(&io, rt, x, width, tmp, out);
}

void moert_ep_combine(struct moert_comm *c, const struct moert_ep_route *rt, const float *y, int width, float *tmp,
		      float *out)
{
	const struct moert_ep_io io = {cpu_alltoallv, cpu_copy, c};
	moert_ep_combine_io(&io, rt, y, width, tmp, out);
}
