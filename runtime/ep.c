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
	rt->regroup = calloc(2 * (size_t)MOERT_EP_TABLE_INTS(rt), sizeof *rt->regroup);
	if (!rt->from || !rt->local_offsets || !rt->regroup)
		moert_fatal("out of memory");
}

void moert_ep_free(struct moert_ep_route *rt)
{
	free(rt->from);
	free(rt->local_offsets);
	free(rt->regroup);
	memset(rt, 0, sizeof *rt);
}

/* The two regroup tables (ep.h) from rt->from: O(ep x e_local). Block (s, j) holds the rows
 * source s sent for local expert j; it starts at arr[s][j] in arrival order and at em[j][s]
 * expert-major. Dispatch lists the blocks expert-major (destination = em), combine in arrival
 * order (destination = arr). */
static void ep_regroup_tables(struct moert_ep_route *rt)
{
	const int ep = rt->ep, el = rt->e_local, nb = ep * el;
	int *disp = MOERT_EP_TABLE(rt, rt->regroup, 1), *comb = MOERT_EP_TABLE(rt, rt->regroup, 0);
	int em[MOERT_EP_MAX]; /* where source s's rows of the current expert start, expert-major */
	for (int j = 0; j < el; j++) {
		int at = rt->local_offsets[j];
		for (int s = 0; s < ep; s++) {
			em[s] = at;
			at += rt->from[s * el + j];
		}
		for (int s = 0; s < ep; s++) { /* blocks are (s, j): arrival index s*el + j, expert-major j*ep + s */
			disp[j * ep + s] = em[s];
			comb[nb + 1 + s * el + j] = em[s];
		}
	}
	for (int s = 0, arr = 0; s < ep; s++)
		for (int j = 0; j < el; j++) {
			disp[nb + 1 + j * ep + s] = arr;
			comb[s * el + j] = arr;
			arr += rt->from[s * el + j];
		}
	disp[nb] = comb[nb] = (int)rt->rows;
}

void moert_ep_layout(struct moert_ep_route *rt)
{
	int ep = rt->ep, el = rt->e_local;
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
	ep_regroup_tables(rt);
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
	moert_ep_layout(rt);
}

/* Move the row blocks between arrival order [source][expert] and expert-major order
 * [expert][source]; to_expert_major chooses the direction (and the table). */
static void regroup(const struct moert_ep_io *io, const struct moert_ep_route *rt, const float *src, float *dst,
		    int width, int to_expert_major)
{
	if (io->regroup) {
		io->regroup(io->ctx, rt, to_expert_major, src, dst, width);
		return;
	}
	const int nb = rt->ep * rt->e_local;
	const int *t = MOERT_EP_TABLE(rt, rt->regroup, to_expert_major);
	for (int b = 0; b < nb; b++) {
		long n = t[b + 1] - t[b];
		if (n)
			io->copy(io->ctx, dst + (long)t[b] * width, src + (long)t[nb + 1 + b] * width,
				 (size_t)n * width * sizeof *dst);
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
	const struct moert_ep_io io = {.alltoallv = cpu_alltoallv, .copy = cpu_copy, .ctx = c};
	moert_ep_dispatch_io(&io, rt, x, width, tmp, out);
}

void moert_ep_combine(struct moert_comm *c, const struct moert_ep_route *rt, const float *y, int width, float *tmp,
		      float *out)
{
	const struct moert_ep_io io = {.alltoallv = cpu_alltoallv, .copy = cpu_copy, .ctx = c};
	moert_ep_combine_io(&io, rt, y, width, tmp, out);
}
