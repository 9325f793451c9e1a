/* comm_nccl.h - the collectives between GPUs, over NCCL: comm.h's groups (world = dp x tp =
 * ep x edp, tp and ep innermost) and byte accounting, on device buffers (moert_dptr) queued
 * on the device's stream (moert_cuda_stream).
 *
 * NCCL is loaded at run time with dlopen("libnccl.so.2"), so every trainer starts where it
 * is absent (one GPU, or the CPU backend): only moert_nccl_load, and what needs it, fails
 * there, with a message saying what to install. NCCL 2.18 or later (ncclCommSplit).
 *
 * Start-up, on every rank, on the thread that opened the device (NCCL uses the CUDA
 * context current there):
 *   moert_nccl_load                 dlopen, check the version
 *   moert_nccl_share_id             world rank 0 makes NCCL's unique id; every rank gets it,
 *                                   by MPI_Bcast under mpirun/srun, else over bootstrap.h's
 *                                   TCP rendezvous under the torchrun-style environment
 *   moert_nccl_init                 the world communicator and one per group
 * These return 0, or -1 with err filled. The collectives, like comm.h's, are fatal on error
 * (moert_fatal, naming the rank and the call): a rank that fails mid-step cannot go on.
 *
 * As in comm.h, every rank issues every collective in the same order, with zero counts
 * where it has nothing, and a one-rank group costs nothing (no NCCL call, except the
 * all-to-all's copy to itself). Calls return once the work is queued on the stream;
 * moert_cuda_sync waits for it. Not thread-safe.
 */
#ifndef MOERT_COMM_NCCL_H
#define MOERT_COMM_NCCL_H
#include <stddef.h>

#include "bootstrap.h"
#include "comm.h"
#include "device_cuda.h"

#define MOERT_NCCL_ID_BYTES 128 /* NCCL_UNIQUE_ID_BYTES */
struct moert_nccl_id {
	char bytes[MOERT_NCCL_ID_BYTES];
};

struct moert_nccl {
	int rank, world;
	int size[MOERT_NGROUPS], index[MOERT_NGROUPS]; /* this rank's group sizes and positions (as comm.h's) */
	double bytes[MOERT_NTRAFFIC];                   /* sent by this rank, counted as comm.c counts */
	void *nccl[MOERT_NGROUPS];                      /* ncclComm_t per group; NULL for a one-rank group */
	unsigned char owned[MOERT_NGROUPS];             /* 0: NULL, or the world's communicator reused */
	void *stream;                                   /* the CUstream everything is queued on */
	/* host-memory collectives (moert_nccl_attach_host) */
	struct moert_cuda *dev;
	moert_dptr stage;
	size_t stage_bytes;
};

#define MOERT_NCCL_MAX_PEERS 1024 /* ranks in one group, for the host all-to-all's tables */

/* dlopen libnccl.so.2 and resolve what is used here; idempotent. Fails (-1) where NCCL is
 * absent or older than 2.18, naming the library and what to do. */
int moert_nccl_load(char *err, size_t errlen);
/* The loaded library's NCCL_VERSION_CODE (22809 for 2.28.9); 0 before a load. */
int moert_nccl_version(void);
/* ncclGetUniqueId (loads NCCL first). */
int moert_nccl_unique_id(struct moert_nccl_id *id, char *err, size_t errlen);
/* World rank 0's unique id to every rank. mpi: the CPU communicator, used when it holds
 * more than one rank (mpirun/srun); else env, when it has more than one (torchrun-style;
 * timeout_s bounds the rendezvous); else one rank, which makes its own. Rank 0 hands out
 * the id even when making it failed, flagged, so the others fail at once rather than
 * waiting for it. */
int moert_nccl_share_id(struct moert_comm *mpi, const struct moert_bootstrap_env *env, struct moert_nccl_id *id,
			double timeout_s, char *err, size_t errlen);
/* ncclCommInitRank for the world (rank of world; the layout's world must be world), then
 * ncclCommSplit of it for each group with comm.c's colors and keys: dp (r % tp, r / tp),
 * tp (r / tp, r % tp), ep (r / ep, r % ep), edp (r % ep, r / ep). A group that is the whole
 * world reuses the world's communicator and a one-rank group gets none: NCCL
 * communicators cost GPU memory and set-up time, and every rank makes the same choice,
 * since it depends on the layout alone. d: the opened device (its stream is used). */
int moert_nccl_init(struct moert_nccl *c, const struct moert_layout *l, int rank, int world, const struct moert_nccl_id *id,
		    struct moert_cuda *d, char *err, size_t errlen);
/* ncclCommDestroy of every communicator; wait for the stream first. */
void moert_nccl_finalize(struct moert_nccl *c);

/* Sum in place over the group: n floats at buf. */
void moert_nccl_allreduce_f32(struct moert_nccl *c, enum moert_group g, enum moert_traffic t, moert_dptr buf, long n);
/* The same over bf16 values (NCCL sums them in its own order; with 2 ranks, one rounding). */
void moert_nccl_allreduce_bf16(struct moert_nccl *c, enum moert_group g, enum moert_traffic t, moert_dptr buf, long n);
/* All-to-all-v of floats, counts and displacements in elements per rank of the group (host
 * arrays, as comm.h's). send and recv must not overlap. */
void moert_nccl_alltoallv_f32(struct moert_nccl *c, enum moert_group g, enum moert_traffic t, moert_dptr send,
			      const long *send_counts, const long *send_displs, moert_dptr recv, const long *recv_counts,
			      const long *recv_displs);
/* In place: rank i of the group contributes buf[i*n .. i*n + n); afterwards every rank has all. */
void moert_nccl_allgather_f32(struct moert_nccl *c, enum moert_group g, enum moert_traffic t, moert_dptr buf, long n);
/* In place: rank i's buf[displs[i] .. + counts[i]) (elements of elem_bytes: 4 floats, 2
 * bf16) to every rank of the group, as grouped sends and receives; counted as a ring
 * all-gather of the sum of the counts. */
void moert_nccl_allgatherv(struct moert_nccl *c, enum moert_group g, enum moert_traffic t, moert_dptr buf, int elem_bytes,
			   const long *counts, const long *displs);
/* An error NCCL met while running queued work (a peer lost, say): 0, or -1 with err. For a
 * watchdog: a rank whose peer died otherwise waits in moert_cuda_sync. */
int moert_nccl_async_error(struct moert_nccl *c, char *err, size_t errlen);

/* Host-memory collectives, for comm.c once a GPU run attaches NCCL (comm->nccl): the
 * values go up to a staging buffer of stage_bytes on device d, through NCCL, and back;
 * each call waits for its result. Counted in c->bytes as comm.c counts. */
int moert_nccl_attach_host(struct moert_nccl *c, struct moert_cuda *d, size_t stage_bytes, char *err, size_t errlen);
void moert_nccl_detach_host(struct moert_nccl *c);
enum moert_nccl_reduce { MOERT_NCCL_F32, MOERT_NCCL_F64, MOERT_NCCL_I32_MAX }; /* sums, and an int max */
void moert_nccl_host_allreduce(struct moert_nccl *c, enum moert_group g, enum moert_traffic t, void *buf, long n,
			       enum moert_nccl_reduce how);
void moert_nccl_host_alltoall_i32(struct moert_nccl *c, enum moert_group g, const int *send, int *recv, int per_rank);
/* comm.h's moert_gather_f32: root gets every rank's n floats in group order. */
void moert_nccl_host_gather_f32(struct moert_nccl *c, enum moert_group g, int root, const float *send, float *recv,
				long n);

/* ---- for tests ---- */
/* moert_nccl_load with another library path (it too is loaded only once per process). */
int moert_nccl_load_lib(const char *path, char *err, size_t errlen);
/* Rank's color, key (= its index) and group size for group g of the layout: what
 * moert_nccl_init (and comm.c) split by. */
void moert_nccl_split_args(const struct moert_layout *l, int rank, enum moert_group g, int *color, int *key, int *size);

#endif
