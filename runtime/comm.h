/* comm.h - the collectives a multi-rank trainer issues, over named groups of the layout
 * `moec plan` prints: world = dp x tp for attention and dense weights, = ep x edp for
 * experts; tp and ep are the innermost (consecutive) ranks.
 *
 * The CPU backend uses MPI (mpirun / srun start the ranks). With one rank nothing is
 * initialized and every collective is a copy, so a single-rank trainer needs no launcher.
 * On GPUs the ranks talk over NCCL (comm_nccl.h): once attached (c->nccl), the host-memory
 * collectives below go through it too, staged through device memory, so a GPU run needs no
 * MPI beyond its launch — and none at all when started torchrun-style (RANK, WORLD_SIZE,
 * LOCAL_RANK, MASTER_ADDR, MASTER_PORT), which only the GPU backend accepts.
 * Every rank must issue every collective in the same order — including ranks whose experts
 * got no tokens (their counts are zero, their buffers empty): no call is ever skipped.
 * Bytes sent are counted per kind so runs can be checked against the plan's prediction.
 * Errors are fatal (moert_fatal) with the rank and the operation named.
 */
#ifndef MOERT_COMM_H
#define MOERT_COMM_H
#include <stddef.h>
#include <stdint.h>

#include "bootstrap.h"

struct moert_nccl;

enum moert_group { MOERT_WORLD, MOERT_DP, MOERT_TP, MOERT_EP, MOERT_EDP, MOERT_NGROUPS };
/* What the bytes were for (accounting). */
enum moert_traffic { MOERT_BYTES_A2A, MOERT_BYTES_DP, MOERT_BYTES_EDP, MOERT_BYTES_TP, MOERT_BYTES_OTHER, MOERT_NTRAFFIC };

struct moert_layout {
	int world, dp, tp, ep, edp;
};

struct moert_comm {
	int rank, world;
	int size[MOERT_NGROUPS], index[MOERT_NGROUPS]; /* this rank's group sizes and positions */
	double bytes[MOERT_NTRAFFIC];                   /* sent by this rank */
	void *mpi[MOERT_NGROUPS];                       /* MPI_Comm per group (NULL: one rank, or torchrun) */
	int initialized_mpi;
	int torchrun;                                   /* started torchrun-style: no MPI, NCCL only */
	struct moert_bootstrap_env boot;                /* its variables (NCCL's id goes over its rendezvous) */
	struct moert_nccl *nccl;                        /* a GPU run's NCCL, once attached (else NULL) */
};

/* Start: under an MPI launcher (mpirun, srun: OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_SIZE,
 * SLURM_STEP_NUM_TASKS > 1) MPI_Init and the groups; torchrun-style (WORLD_SIZE > 1 and no
 * MPI launcher) the ranks and group positions from the variables, c->torchrun set and no
 * collective usable until NCCL is attached; else one rank. The world size must equal the
 * layout's, else a fatal error naming both numbers. */
void moert_comm_init(struct moert_comm *c, const struct moert_layout *l, int *argc, char ***argv);
/* This rank's index among the ranks of its node (which GPU it takes): LOCAL_RANK,
 * OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID or MPI_LOCALRANKID, else its rank. */
int moert_local_rank(const struct moert_comm *c);
void moert_comm_finalize(struct moert_comm *c);

void moert_allreduce_f32(struct moert_comm *c, enum moert_group g, enum moert_traffic t, float *buf, long n);
void moert_allreduce_f64(struct moert_comm *c, enum moert_group g, enum moert_traffic t, double *buf, long n);
/* The same over bf16 values (a bf16 step's activations): summed in fp32, rounded once. */
void moert_allreduce_bf16(struct moert_comm *c, enum moert_group g, enum moert_traffic t, void *buf, long n);
/* Each rank sends per_rank ints to every rank of the group and receives as many from each. */
void moert_alltoall_i32(struct moert_comm *c, enum moert_group g, const int *send, int *recv, int per_rank);
/* All-to-all-v of floats: counts and displacements in elements, per rank of the group. */
void moert_alltoallv_f32(struct moert_comm *c, enum moert_group g, enum moert_traffic t, const float *send,
			 const long *send_counts, const long *send_displs, float *recv, const long *recv_counts,
			 const long *recv_displs);
/* In place: rank i of the group contributes buf[i*n .. i*n + n); afterwards every rank has all. */
void moert_allgather_f32(struct moert_comm *c, enum moert_group g, enum moert_traffic t, float *buf, long n);
/* In place: rank i of the group contributes buf[displs[i] .. + counts[i]) (elements of
 * elem_bytes: 4 floats, 2 bf16); then every rank has all of them. Counted as a ring
 * all-gather of the sum of the counts. */
void moert_allgatherv(struct moert_comm *c, enum moert_group g, enum moert_traffic t, void *buf, int elem_bytes,
		      const long *counts, const long *displs);
/* Rank `root` of the group gets every rank's n floats, in group order (recv: size x n). */
void moert_gather_f32(struct moert_comm *c, enum moert_group g, int root, const float *send, float *recv, long n);
/* Max of an integer over the group (e.g. "did any rank stop?"). */
int moert_max_i32(struct moert_comm *c, enum moert_group g, int v);
void moert_barrier(struct moert_comm *c);
/* World rank `root`'s n bytes to every rank: set-up data such as NCCL's unique id (so not
 * counted in bytes[], which is the step's traffic). One rank: nothing to do. */
void moert_comm_bcast_bytes(struct moert_comm *c, int root, void *buf, size_t n);

#endif
