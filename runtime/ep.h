/* ep.h - expert parallelism: rows go to the rank that holds their expert and come back,
 * over the EP group (comm.h on the CPU backend; comm_nccl.h on the GPU, where
 * trainer_cuda.c supplies the transport and the regroup, one ep_regroup kernel launch, as a
 * struct moert_ep_io).
 *
 * A rank's permuted rows are expert-contiguous over all E experts (moe_permute), so the rows
 * for EP rank d are one range: experts [d*E_LOCAL, (d+1)*E_LOCAL). Per MoE layer and
 * micro-step: moert_ep_route exchanges the per-expert counts (all-to-all; every rank sends,
 * zeros included), then dispatch moves the rows (all-to-all-v) and regroups what arrived
 * from [source rank][local expert] to [local expert][source rank] order, which the grouped
 * GEMMs read with local_offsets; combine is the exact inverse. Both regroups follow one
 * block table each (regroup below), built with the route: O(ep x e_local) on the host. The
 * same route serves the backward (gradient rows out, input gradients back).
 */
#ifndef MOERT_EP_H
#define MOERT_EP_H
#include "comm.h"

#define MOERT_EP_MAX 64

struct moert_ep_route {
	int ep, e_local;
	long send_rows[MOERT_EP_MAX], send_first[MOERT_EP_MAX];  /* rows per destination, and where they start */
	long recv_rows[MOERT_EP_MAX], recv_first[MOERT_EP_MAX];  /* rows per source in arrival order */
	int *from;           /* [ep][e_local] rows each source sent for each local expert */
	int *local_offsets;  /* [e_local + 1] expert-major offsets of the received rows */
	long rows;           /* rows received */
	/* The regroups' block tables, one per direction (moert_ep_route builds them): ep x e_local
	 * blocks in destination order, [0..blocks] their first destination rows (the last =
	 * rows), then [blocks + 1 + b] block b's first source row: kernels/ep_regroup.cu's table. */
	int *regroup;
	int *dev_offsets;    /* the CUDA backend's device copy of local_offsets (what its kernels read) */
	int *dev_regroup;    /* and of regroup (what ep_regroup reads) */
};

/* Ints in one direction's regroup table: 2 x blocks + 1. */
#define MOERT_EP_TABLE_INTS(rt) (2 * (rt)->ep * (rt)->e_local + 1)
/* to_expert_major: dispatch's table ([source][expert] -> [expert][source]); else combine's. */
#define MOERT_EP_TABLE(rt, base, to_expert_major) ((base) + ((to_expert_major) ? 0 : MOERT_EP_TABLE_INTS(rt)))

/* How rows move: the all-to-all-v over the EP group (counts and displacements in floats per
 * rank, as comm.h's) and the regroup within one rank's memory, either as one copy per block
 * of the route's table (copy; the CPU backend's memcpy) or as one call given the whole table
 * (regroup, when set: the GPU's single ep_regroup launch on the step's stream, which reads
 * the device copy rt->dev_regroup). The CPU backend's transport is MPI; the GPU's NCCL. */
struct moert_ep_io {
	void (*alltoallv)(void *ctx, const float *send, const long *send_counts, const long *send_displs, float *recv,
			  const long *recv_counts, const long *recv_displs);
	void (*copy)(void *ctx, float *dst, const float *src, size_t bytes);
	void (*regroup)(void *ctx, const struct moert_ep_route *rt, int to_expert_major, const float *src, float *dst,
			int width);
	void *ctx;
};

/* counts [E], offsets [E + 1]: this rank's rows per expert (moe_scan), in host memory. */
void moert_ep_route(struct moert_comm *c, struct moert_ep_route *rt, const int *counts, const int *offsets);
/* What the route derives from rt->from alone (the received side: rows, recv_*, local_offsets
 * and the regroup tables); moert_ep_route calls it after the counts' all-to-all. */
void moert_ep_layout(struct moert_ep_route *rt);
/* x [offsets[E], width] expert-contiguous -> out [rows, width] expert-major; tmp: rows x width. */
void moert_ep_dispatch(struct moert_comm *c, const struct moert_ep_route *rt, const float *x, int width, float *tmp,
		       float *out);
/* The inverse: y [rows, width] expert-major -> out [offsets[E], width] in x's order. */
void moert_ep_combine(struct moert_comm *c, const struct moert_ep_route *rt, const float *y, int width, float *tmp,
		      float *out);
/* The same with another transport (io). */
void moert_ep_dispatch_io(const struct moert_ep_io *io, const struct moert_ep_route *rt, const float *x, int width,
			  float *tmp, float *out);
void moert_ep_combine_io(const struct moert_ep_io *io, const struct moert_ep_route *rt, const float *y, int width,
			 float *tmp, float *out);
/* Set up rt for a group of ep ranks holding e_local experts each; free with moert_ep_free. */
void moert_ep_init(struct moert_ep_route *rt, int ep, int e_local);
void moert_ep_free(struct moert_ep_route *rt);

#endif
