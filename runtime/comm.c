/* comm.c - collectives over MPI, with a one-rank fast path. See comm.h. */
#include "comm.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "gemm.h"
#include "hf.h"
#include "comm_nccl.h"
#include "moert.h"

/* Launched by mpirun/srun with more than one task? (MPI_Init without a launcher works too,
 * as a singleton, but a plain run should not need MPI at all.) Not SLURM_NTASKS: a batch
 * script's own commands see the job's task count without being one of its tasks. */
static int launched_world(void)
{
	static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_STEP_NUM_TASKS"};
	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
		const char *v = getenv(vars[i]);
		if (v && atoi(v) > 1)
			return atoi(v);
	}
	return 1;
}

/* Started torchrun-style: WORLD_SIZE > 1 and no MPI launcher. Ranks and group positions
 * come from the variables and the layout (comm_nccl.c's split arithmetic, which MPI's
 * splits below follow too); the collectives wait for NCCL (moert_nccl_attach_host). */
static int torchrun_init(struct moert_comm *c, const struct moert_layout *l)
{
	const char *ws = getenv("WORLD_SIZE");
	if (!ws || atoi(ws) <= 1 || launched_world() != 1)
		return 0;
	char err[512];
	if (moert_bootstrap_env(&c->boot, err, sizeof err) < 0)
		moert_fatal("started torchrun-style: %s", err);
	if (c->boot.world != l->world)
		moert_fatal("this trainer was built for %d ranks (parallel: dp %d x tp %d, ep %d x edp %d) but was started "
			    "torchrun-style with WORLD_SIZE=%d; start %d ranks, or rebuild the spec with parallel settings for %d",
			    l->world, l->dp, l->tp, l->ep, l->edp, c->boot.world, l->world, c->boot.world);
	c->torchrun = 1;
	c->rank = c->boot.rank;
	c->world = c->boot.world;
	for (int g = 0; g < MOERT_NGROUPS; g++) {
		int color;
		moert_nccl_split_args(l, c->rank, (enum moert_group)g, &color, &c->index[g], &c->size[g]);
	}
	return 1;
}

int moert_local_rank(const struct moert_comm *c)
{
	static const char *vars[] = {"LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"};
	if (c->world == 1)
		return 0;
	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
		const char *v = getenv(vars[i]);
		char *end;
		long x = v ? strtol(v, &end, 10) : -1;
		if (v && *v && !*end && x >= 0 && x < INT_MAX)
			return (int)x;
	}
	return c->rank;
}

/* A collective over several ranks with neither MPI nor NCCL: torchrun-style on the CPU. */
static void no_transport(const struct moert_comm *c)
{
	moert_fatal("rank %d: started torchrun-style (WORLD_SIZE=%d), whose ranks talk over NCCL, but this run is on the "
		    "CPU: run on GPUs (--device cuda), or start CPU ranks with `mpirun -np %d` or `srun -n %d`",
		    c->rank, c->world, c->world, c->world);
}

static MPI_Comm comm_of(const struct moert_comm *c, enum moert_group g)
{
	if (!c->mpi[g])
		no_transport(c);
	return *(MPI_Comm *)c->mpi[g];
}

static void check(const struct moert_comm *c, int rc, const char *what)
{
	if (rc != MPI_SUCCESS) {
		char msg[MPI_MAX_ERROR_STRING];
		int len = 0;
		MPI_Error_string(rc, msg, &len);
		moert_fatal("rank %d: %s failed: %s", c->rank, what, msg);
	}
}

static void split(struct moert_comm *c, enum moert_group g, int color, int key)
{
	MPI_Comm *sub = malloc(sizeof *sub);
	if (!sub)
		moert_fatal("out of memory");
	check(c, MPI_Comm_split(MPI_COMM_WORLD, color, key, sub), "MPI_Comm_split");
	c->mpi[g] = sub;
	MPI_Comm_size(*sub, &c->size[g]);
	MPI_Comm_rank(*sub, &c->index[g]);
}

void moert_comm_init(struct moert_comm *c, const struct moert_layout *l, int *argc, char ***argv)
{
	memset(c, 0, sizeof *c);
	if (torchrun_init(c, l))
		return;
	int launched = launched_world();
	if (launched != l->world)
		moert_fatal("this trainer was built for %d ranks (parallel: dp %d x tp %d, ep %d x edp %d) but was started "
			    "as %d; start it with `mpirun -np %d`, or rebuild the spec with parallel settings for %d",
			    l->world, l->dp, l->tp, l->ep, l->edp, launched, l->world, launched);
	c->world = 1;
	for (int g = 0; g < MOERT_NGROUPS; g++)
		c->size[g] = 1;
	if (l->world == 1)
		return;
	int inited = 0;
	MPI_Initialized(&inited);
	if (!inited) {
		MPI_Init(argc, argv);
		c->initialized_mpi = 1;
	}
	MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
	MPI_Comm_size(MPI_COMM_WORLD, &c->world);
	if (c->world != l->world)
		moert_fatal("rank %d: MPI world has %d ranks, the layout %d", c->rank, c->world, l->world);
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	int r = c->rank;
	/* plan.c's coordinates: tp = r % tp, dp = r / tp, ep = r % ep, edp = r / ep */
	split(c, MOERT_WORLD, 0, r);
	split(c, MOERT_DP, r % l->tp, r / l->tp);
	split(c, MOERT_TP, r / l->tp, r % l->tp);
	split(c, MOERT_EP, r / l->ep, r % l->ep);
	split(c, MOERT_EDP, r % l->ep, r / l->ep);
}

void moert_comm_finalize(struct moert_comm *c)
{
	for (int g = 0; g < MOERT_NGROUPS; g++)
		if (c->mpi[g]) {
			MPI_Comm_free((MPI_Comm *)c->mpi[g]);
			free(c->mpi[g]);
			c->mpi[g] = NULL;
		}
	if (c->initialized_mpi)
		MPI_Finalize();
	c->initialized_mpi = 0;
}

/* Ring all-reduce volume per rank, the convention plan.c's comm model uses. */
static void count_allreduce(struct moert_comm *c, enum moert_group g, enum moert_traffic t, double bytes)
{
	int p = c->size[g];
	if (p > 1)
		c->bytes[t] += 2.0 * (p - 1) / p * bytes;
}

void moert_allreduce_f32(struct moert_comm *c, enum moert_group g, enum moert_traffic t, float *buf, long n)
{
	if (c->size[g] == 1 || n == 0)
		return;
	if (c->nccl)
		return moert_nccl_host_allreduce(c->nccl, g, t, buf, n, MOERT_NCCL_F32);
	count_allreduce(c, g, t, 4.0 * n);
	for (long done = 0; done < n; done += INT_MAX / 2) {
		int k = (int)(n - done < INT_MAX / 2 ? n - done : INT_MAX / 2);
		check(c, MPI_Allreduce(MPI_IN_PLACE, buf + done, k, MPI_FLOAT, MPI_SUM, comm_of(c, g)), "MPI_Allreduce");
	}
}

void moert_allreduce_bf16(struct moert_comm *c, enum moert_group g, enum moert_traffic t, void *buf, long n)
{
	if (c->size[g] == 1 || n == 0)
		return;
	uint16_t *h = buf;
	float *f = malloc((size_t)n * sizeof *f);
	if (!f)
		moert_fatal("out of memory");
	for (long i = 0; i < n; i++)
		f[i] = hf_bf16_to_f32(h[i]);
	moert_allreduce_f32(c, g, t, f, n);
	c->bytes[t] -= 2.0 * (c->size[g] - 1) / c->size[g] * 2.0 * n; /* bf16 on the wire: half of what f32 counted */
	for (long i = 0; i < n; i++)
		h[i] = moert_f32_to_bf16(f[i]);
	free(f);
}

void moert_allreduce_f64(struct moert_comm *c, enum moert_group g, enum moert_traffic t, double *buf, long n)
{
	if (c->size[g] == 1 || n == 0)
		return;
	if (c->nccl)
		return moert_nccl_host_allreduce(c->nccl, g, t, buf, n, MOERT_NCCL_F64);
	count_allreduce(c, g, t, 8.0 * n);
	check(c, MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, MPI_SUM, comm_of(c, g)), "MPI_Allreduce");
}

void moert_alltoall_i32(struct moert_comm *c, enum moert_group g, const int *send, int *recv, int per_rank)
{
	if (c->size[g] == 1) {
		memmove(recv, send, (size_t)per_rank * sizeof *recv);
		return;
	}
	if (c->nccl)
		return moert_nccl_host_alltoall_i32(c->nccl, g, send, recv, per_rank);
	c->bytes[MOERT_BYTES_OTHER] += 4.0 * per_rank * (c->size[g] - 1);
	check(c, MPI_Alltoall(send, per_rank, MPI_INT, recv, per_rank, MPI_INT, comm_of(c, g)), "MPI_Alltoall");
}

static int *int_counts(const struct moert_comm *c, const long *v, int n)
{
	int *out = malloc((size_t)n * sizeof *out);
	if (!out)
		moert_fatal("out of memory");
	for (int i = 0; i < n; i++) {
		if (v[i] < 0 || v[i] > INT_MAX)
			moert_fatal("rank %d: an all-to-all of %ld elements is beyond MPI's int counts", c->rank, v[i]);
		out[i] = (int)v[i];
	}
	return out;
}

void moert_alltoallv_f32(struct moert_comm *c, enum moert_group g, enum moert_traffic t, const float *send,
			 const long *send_counts, const long *send_displs, float *recv, const long *recv_counts,
			 const long *recv_displs)
{
	int p = c->size[g];
	for (int i = 0; i < p; i++)
		if (i != c->index[g])
			c->bytes[t] += 4.0 * send_counts[i];
	if (p == 1) {
		memmove(recv + recv_displs[0], send + send_displs[0], (size_t)send_counts[0] * sizeof *recv);
		return;
	}
	int *sc = int_counts(c, send_counts, p), *sd = int_counts(c, send_displs, p);
	int *rc = int_counts(c, recv_counts, p), *rd = int_counts(c, recv_displs, p);
	check(c, MPI_Alltoallv(send, sc, sd, MPI_FLOAT, recv, rc, rd, MPI_FLOAT, comm_of(c, g)), "MPI_Alltoallv");
	free(sc);
	free(sd);
	free(rc);
	free(rd);
}

void moert_allgather_f32(struct moert_comm *c, enum moert_group g, enum moert_traffic t, float *buf, long n)
{
	int p = c->size[g];
	if (p == 1 || n == 0)
		return;
	if (n > INT_MAX)
		moert_fatal("rank %d: an all-gather of %ld floats is beyond MPI's int counts", c->rank, n);
	c->bytes[t] += 4.0 * n * (p - 1); /* ring: each rank passes on p - 1 blocks */
	check(c, MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, (int)n, MPI_FLOAT, comm_of(c, g)), "MPI_Allgather");
}

void moert_allgatherv(struct moert_comm *c, enum moert_group g, enum moert_traffic t, void *buf, int elem_bytes,
		      const long *counts, const long *displs)
{
	int p = c->size[g];
	if (p == 1)
		return;
	if (c->nccl) /* a GPU run gathers device buffers (moert_nccl_allgatherv_f32) */
		moert_fatal("rank %d: a host all-gather-v in a run over NCCL", c->rank);
	double total = 0;
	for (int i = 0; i < p; i++)
		total += counts[i];
	c->bytes[t] += (p - 1) * (double)elem_bytes * total / p; /* a ring all-gather's volume, plan.c's convention */
	int *rc = int_counts(c, counts, p), *rd = int_counts(c, displs, p);
	MPI_Datatype type = elem_bytes == 2 ? MPI_UINT16_T : MPI_FLOAT; /* moved, not summed: bf16 as 16-bit words */
	check(c, MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, rc, rd, type, comm_of(c, g)), "MPI_Allgatherv");
	free(rc);
	free(rd);
}

void moert_gather_f32(struct moert_comm *c, enum moert_group g, int root, const float *send, float *recv, long n)
{
	if (c->size[g] == 1) {
		memmove(recv, send, (size_t)n * sizeof *recv);
		return;
	}
	if (c->nccl)
		return moert_nccl_host_gather_f32(c->nccl, g, root, send, recv, n);
	if (n > INT_MAX)
		moert_fatal("rank %d: a gather of %ld floats is beyond MPI's int counts", c->rank, n);
	c->bytes[MOERT_BYTES_OTHER] += c->index[g] == root ? 0 : 4.0 * n;
	check(c, MPI_Gather(send, (int)n, MPI_FLOAT, recv, (int)n, MPI_FLOAT, root, comm_of(c, g)), "MPI_Gather");
}

int moert_max_i32(struct moert_comm *c, enum moert_group g, int v)
{
	if (c->size[g] == 1)
		return v;
	if (c->nccl) {
		moert_nccl_host_allreduce(c->nccl, g, MOERT_BYTES_OTHER, &v, 1, MOERT_NCCL_I32_MAX);
		return v;
	}
	int out = v;
	check(c, MPI_Allreduce(&v, &out, 1, MPI_INT, MPI_MAX, comm_of(c, g)), "MPI_Allreduce");
	return out;
}

void moert_barrier(struct moert_comm *c)
{
	if (c->world == 1)
		return;
	if (c->nccl)
		moert_max_i32(c, MOERT_WORLD, 0); /* waits for every rank, as a barrier does */
	else
		check(c, MPI_Barrier(comm_of(c, MOERT_WORLD)), "MPI_Barrier");
}

void moert_comm_bcast_bytes(struct moert_comm *c, int root, void *buf, size_t n)
{
	if (c->world == 1)
		return;
	if (n > INT_MAX)
		moert_fatal("rank %d: a broadcast of %zu bytes is beyond MPI's int counts", c->rank, n);
	check(c, MPI_Bcast(buf, (int)n, MPI_BYTE, root, comm_of(c, MOERT_WORLD)), "MPI_Bcast");
}
