/* ep.h - expert parallelism: rows go to the rank that holds their expert and come back,
 * over the EP group (comm.h on the CPU backend; comm_nccl.h on the GPU, where
 * trainer_cuda.c supplies the transport and the copies as a struct moert_ep_io).
 *
 * A rank's permuted rows are expert-contiguous over all E experts (moe_permute), so the rows
 * for EP rank d are one range: experts [d*E_LOCAL, (d+1)*E_LOCAL). Per MoE layer and
 * micro-step: moert_ep_route exchanges the per-expert counts (all-to-all; every rank sends,
 * zeros included), then dispatch moves the rows (all-to-all-v) and regroups what arrived
 * from [source rank][local expert] to [local expert][source rank] order, which the grouped
 * GEMMs read with local_offsets; combine is the exact inverse. The same route serves the
 * backward (gradient rows out, input gradients back).
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
	int *dev_offsets;    /* the CUDA backend's device copy of local_offsets (what its kernels read) */
};

/* How rows move: the all-to-all-v over the EP group (counts and displacements in floats per
 * rank, as comm.h's) and a copy within one rank's memory. The CPU backend's are MPI and
 * memcpy; the GPU's NCCL and device-to-device copies on the step's stream. */
struct moert_ep_io {
	void (*alltoallv)(void *ctx, const float *send, const long *send_counts, const long *send_displs, float *recv,
			  const long *recv_counts, const long *recv_displs);
	void (*copy)(void *ctx, float *dst, const float *src, size_t bytes);
	void *ctx;
};

/* counts [E], offsets [E + 1]: this rank's rows per expert (moe_scan), in host memory. */
void moert_ep_route(struct moert_comm *c, struct moert_ep_route *rt, const int *counts, const int *offsets);
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
