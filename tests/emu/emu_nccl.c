/* emu_nccl.c - libnccl.so.2 of the device emulator (tests/emu/README.md): the NCCL entry
 * points runtime/comm_nccl.c resolves, over MPI on host memory.
 *
 * One process is one rank, as with NCCL on GPUs. ncclCommInitRank joins the processes of
 * MPI_COMM_WORLD that hold the same unique id (MPI_Comm_split by the id, keyed by the NCCL
 * rank), so the id really has to reach every rank, and nranks must be how many hold it;
 * being a split of MPI_COMM_WORLD, it is collective over all of it, as a trainer's is.
 * MPI is initialized here if the process has not done it (comm.c does under mpirun); with
 * one rank and no MPI launcher in sight, no MPI is used at all. ncclCommSplit is
 * MPI_Comm_split (NCCL_SPLIT_NOCOLOR: no communicator). ncclSend/ncclRecv between
 * ncclGroupStart and the outermost ncclGroupEnd are posted as MPI_Isend/MPI_Irecv there
 * and waited for together (outside a group, at once), and a receive must get exactly the
 * count it asked for, as NCCL requires. Reductions gather every rank's values and reduce
 * them in rank order, so every rank holds the same result bit for bit; bf16 sums are
 * rounded to bf16 after each addition, as a ring of bf16 buffers rounds.
 *
 * Every buffer must be device memory of the emulated driver (emu_cuda.c), as NCCL checks
 * its pointers; streams are not looked at (everything is done when the call returns).
 * nccl.h is included so every definition is checked against NCCL's prototype.
 */
#define _GNU_SOURCE
#include <nccl.h>

#include <limits.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "emu.h"

#define MAGIC_COMM 0x4e43434cu
#define ID_MAGIC "moec-emu-nccl-id"
#define TAG 0x6e63
#define REDUCE_CHUNK (1 << 20) /* elements gathered per round of a reduction */

struct ncclComm {
	unsigned magic;
	MPI_Comm mpi; /* MPI_COMM_NULL: one rank, no MPI */
	int rank, nranks;
};

/* ---- errors ---- */

static char last_error[1024];
static int mpi_ours; /* MPI_Init was ours: finalize at exit */

static struct {
	unsigned long comms, splits, allreduces, allgathers, sends, recvs, groups;
	double bytes;
} stats;

static ncclResult_t fail(ncclResult_t r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static ncclResult_t fail(ncclResult_t r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(last_error, sizeof last_error, fmt, ap);
	va_end(ap);
	return r;
}

const char *ncclGetErrorString(ncclResult_t result)
{
	switch (result) {
	case ncclSuccess:
		return "no error";
	case ncclUnhandledCudaError:
		return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
	case ncclSystemError:
		return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
	case ncclInternalError:
		return "internal error - please report this issue to the NCCL developers";
	case ncclInvalidArgument:
		return "invalid argument (run with NCCL_DEBUG=WARN for details)";
	case ncclInvalidUsage:
		return "invalid usage (run with NCCL_DEBUG=WARN for details)";
	case ncclRemoteError:
		return "remote process exited or there was a network error";
	case ncclInProgress:
		return "NCCL operation in progress";
	default:
		return "unknown result code";
	}
}

const char *ncclGetLastError(ncclComm_t comm)
{
	return last_error;
}

ncclResult_t ncclGetVersion(int *version)
{
	if (!version)
		return fail(ncclInvalidArgument, "ncclGetVersion: version is NULL");
	*version = NCCL_VERSION_CODE; /* the installed nccl.h's: what this emulator stands in for */
	return ncclSuccess;
}

/* An MPI call's failure as NCCL's remote error, naming the call. */
static ncclResult_t mpi_fail(int rc, const char *what)
{
	char s[MPI_MAX_ERROR_STRING];
	int n = 0;
	if (MPI_Error_string(rc, s, &n) != MPI_SUCCESS)
		snprintf(s, sizeof s, "MPI error %d", rc);
	return fail(ncclRemoteError, "device emulator: %s: %s", what, s);
}

/* ---- MPI ---- */

static void finalize_mpi(void)
{
	int fin = 0;
	MPI_Finalized(&fin);
	if (!fin)
		MPI_Finalize();
}

static int launched_by_mpi(void)
{
	return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

/* MPI usable for nranks ranks: 1, or 0 for one rank without MPI, or an error. */
static ncclResult_t mpi_ready(int nranks, int *use_mpi)
{
	int init = 0, fin = 0;
	MPI_Initialized(&init);
	MPI_Finalized(&fin);
	if (fin)
		return fail(ncclInvalidUsage, "device emulator: MPI was finalized before ncclCommInitRank");
	*use_mpi = 1;
	if (init)
		return ncclSuccess;
	if (!launched_by_mpi()) {
		if (nranks == 1) {
			*use_mpi = 0;
			return ncclSuccess;
		}
		return fail(ncclInvalidUsage,
			    "device emulator: %d ranks need MPI between them: start the processes with mpirun", nranks);
	}
	int rc = MPI_Init(NULL, NULL);
	if (rc != MPI_SUCCESS)
		return mpi_fail(rc, "MPI_Init");
	mpi_ours = 1;
	atexit(finalize_mpi);
	return ncclSuccess;
}

/* ---- the unique id and communicators ---- */

ncclResult_t ncclGetUniqueId(ncclUniqueId *uniqueId)
{
	if (!uniqueId)
		return fail(ncclInvalidArgument, "ncclGetUniqueId: uniqueId is NULL");
	memset(uniqueId, 0, sizeof *uniqueId);
	memcpy(uniqueId->internal, ID_MAGIC, sizeof ID_MAGIC);
	uint64_t r[2] = {0, 0};
	if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
		struct timespec t;
		clock_gettime(CLOCK_REALTIME, &t);
		r[0] = (uint64_t)t.tv_nsec ^ (uint64_t)t.tv_sec << 30;
		r[1] = (uint64_t)getpid();
	}
	memcpy(uniqueId->internal + 32, r, sizeof r);
	return ncclSuccess;
}

/* The id as an MPI_Comm_split color: FNV-1a of its bytes, non-negative. */
static int id_color(const ncclUniqueId *id)
{
	uint64_t h = 1469598103934665603ull;
	for (int i = 0; i < NCCL_UNIQUE_ID_BYTES; i++) {
		h ^= (unsigned char)id->internal[i];
		h *= 1099511628211ull;
	}
	return (int)(h & 0x7fffffff);
}

static struct ncclComm *comm_new(MPI_Comm mpi, int rank, int nranks)
{
	struct ncclComm *c = calloc(1, sizeof *c);
	if (c)
		*c = (struct ncclComm){MAGIC_COMM, mpi, rank, nranks};
	stats.comms++;
	return c;
}

static int comm_ok(const struct ncclComm *c)
{
	return c && c->magic == MAGIC_COMM;
}

/* The ranks that share the id, ordered by their NCCL rank; every one checks, together,
 * that there are nranks of them and that each rank is taken once. */
static ncclResult_t join(const ncclUniqueId *id, int nranks, int rank, MPI_Comm *out)
{
	MPI_Comm c;
	int rc = MPI_Comm_split(MPI_COMM_WORLD, id_color(id), rank, &c);
	if (rc != MPI_SUCCESS)
		return mpi_fail(rc, "MPI_Comm_split (ncclCommInitRank)");
	MPI_Comm_set_errhandler(c, MPI_ERRORS_RETURN);
	int size = 0, me = -1, bad, any = 0;
	MPI_Comm_size(c, &size);
	MPI_Comm_rank(c, &me);
	bad = size != nranks || me != rank;
	MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, c);
	if (any) {
		MPI_Comm_free(&c);
		if (size != nranks)
			return fail(ncclInvalidUsage,
				    "device emulator: ncclCommInitRank(nranks %d, rank %d), but %d processes of MPI_COMM_WORLD "
				    "hold this unique id",
				    nranks, rank, size);
		return fail(ncclInvalidUsage, "device emulator: ncclCommInitRank: two processes took the same rank, or "
					      "a rank outside 0..nranks-1 (this one: rank %d of %d)",
			    rank, nranks);
	}
	*out = c;
	return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId commId, int rank)
{
	if (!comm)
		return fail(ncclInvalidArgument, "ncclCommInitRank: comm is NULL");
	*comm = NULL;
	if (nranks < 1 || rank < 0 || rank >= nranks)
		return fail(ncclInvalidArgument, "ncclCommInitRank: rank %d of %d ranks", rank, nranks);
	if (memcmp(commId.internal, ID_MAGIC, sizeof ID_MAGIC))
		return fail(ncclInvalidArgument, "ncclCommInitRank: not a unique id of ncclGetUniqueId (all zero? not "
						 "shared?)");
	int use_mpi;
	ncclResult_t r = mpi_ready(nranks, &use_mpi);
	if (r != ncclSuccess)
		return r;
	MPI_Comm mc = MPI_COMM_NULL;
	if (use_mpi && (r = join(&commId, nranks, rank, &mc)) != ncclSuccess)
		return r;
	if (!(*comm = comm_new(mc, rank, nranks))) {
		if (mc != MPI_COMM_NULL)
			MPI_Comm_free(&mc);
		return fail(ncclSystemError, "ncclCommInitRank: out of memory");
	}
	return ncclSuccess;
}

ncclResult_t ncclCommSplit(ncclComm_t comm, int color, int key, ncclComm_t *newcomm, ncclConfig_t *config)
{
	if (!comm_ok(comm) || !newcomm)
		return fail(ncclInvalidArgument, "ncclCommSplit: invalid communicator or newcomm");
	*newcomm = NULL;
	if (color < 0 && color != NCCL_SPLIT_NOCOLOR)
		return fail(ncclInvalidArgument, "ncclCommSplit: color %d (colors are >= 0, or NCCL_SPLIT_NOCOLOR)", color);
	stats.splits++;
	if (comm->mpi == MPI_COMM_NULL) {
		if (color == NCCL_SPLIT_NOCOLOR)
			return ncclSuccess;
		*newcomm = comm_new(MPI_COMM_NULL, 0, 1);
		return *newcomm ? ncclSuccess : fail(ncclSystemError, "ncclCommSplit: out of memory");
	}
	MPI_Comm c;
	int rc = MPI_Comm_split(comm->mpi, color == NCCL_SPLIT_NOCOLOR ? MPI_UNDEFINED : color, key, &c);
	if (rc != MPI_SUCCESS)
		return mpi_fail(rc, "MPI_Comm_split (ncclCommSplit)");
	if (c == MPI_COMM_NULL)
		return ncclSuccess;
	MPI_Comm_set_errhandler(c, MPI_ERRORS_RETURN);
	int size, me;
	MPI_Comm_size(c, &size);
	MPI_Comm_rank(c, &me);
	if (!(*newcomm = comm_new(c, me, size))) {
		MPI_Comm_free(&c);
		return fail(ncclSystemError, "ncclCommSplit: out of memory");
	}
	return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm)
{
	if (!comm)
		return ncclSuccess;
	if (!comm_ok(comm))
		return fail(ncclInvalidArgument, "ncclCommDestroy: not a communicator");
	int fin = 0;
	MPI_Finalized(&fin);
	if (comm->mpi != MPI_COMM_NULL && !fin)
		MPI_Comm_free(&comm->mpi);
	comm->magic = 0;
	free(comm);
	return ncclSuccess;
}

ncclResult_t ncclCommCount(const ncclComm_t comm, int *count)
{
	if (!comm_ok(comm) || !count)
		return fail(ncclInvalidArgument, "ncclCommCount: invalid communicator or count");
	*count = comm->nranks;
	return ncclSuccess;
}

ncclResult_t ncclCommUserRank(const ncclComm_t comm, int *rank)
{
	if (!comm_ok(comm) || !rank)
		return fail(ncclInvalidArgument, "ncclCommUserRank: invalid communicator or rank");
	*rank = comm->rank;
	return ncclSuccess;
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *asyncError)
{
	if (!comm_ok(comm) || !asyncError)
		return fail(ncclInvalidArgument, "ncclCommGetAsyncError: invalid communicator or asyncError");
	*asyncError = ncclSuccess; /* everything finished before its call returned */
	return ncclSuccess;
}

/* ---- arguments ---- */

static size_t type_size(ncclDataType_t t)
{
	switch (t) {
	case ncclInt8:
	case ncclUint8:
	case ncclFloat8e4m3:
	case ncclFloat8e5m2:
		return 1;
	case ncclFloat16:
	case ncclBfloat16:
		return 2;
	case ncclInt32:
	case ncclUint32:
	case ncclFloat32:
		return 4;
	case ncclInt64:
	case ncclUint64:
	case ncclFloat64:
		return 8;
	default:
		return 0;
	}
}

/* A buffer of n elements of es bytes: device memory of the emulated driver. */
static ncclResult_t buffer_ok(const char *call, const char *which, const void *p, size_t n, size_t es)
{
	if (!n)
		return ncclSuccess;
	if (!p)
		return fail(ncclInvalidArgument, "%s: %s is NULL", call, which);
	emu_range_fn *in_device = emu_device_range();
	if (in_device && !in_device(p, n * es))
		return fail(ncclInvalidArgument, "%s: %s (%p, %zu bytes) is not device memory", call, which, p, n * es);
	return ncclSuccess;
}

static ncclResult_t common_ok(const char *call, const struct ncclComm *c, ncclDataType_t t, size_t *es)
{
	if (!comm_ok(c))
		return fail(ncclInvalidArgument, "%s: invalid communicator", call);
	if (!(*es = type_size(t)))
		return fail(ncclInvalidArgument, "%s: invalid data type %d", call, (int)t);
	return ncclSuccess;
}

/* ---- reductions, in rank order ---- */


/* acc = acc op src over n elements; avg sums here and divides in reduce_finish. Signed
 * integers wrap as the GPU's do (computed unsigned, which C defines). */
#define COMBINE(T, UT, acc, src, n, op)                                                    \
	do {                                                                               \
		T *a_ = (T *)(acc);                                                        \
		const T *s_ = (const T *)(src);                                            \
		for (size_t i_ = 0; i_ < (n); i_++) {                                      \
			T x_ = a_[i_], y_ = s_[i_];                                        \
			switch (op) {                                                      \
			case ncclProd:                                                     \
				a_[i_] = (T)((UT)x_ * (UT)y_);                             \
				break;                                                     \
			case ncclMax:                                                      \
				a_[i_] = x_ > y_ ? x_ : y_;                                \
				break;                                                     \
			case ncclMin:                                                      \
				a_[i_] = x_ < y_ ? x_ : y_;                                \
				break;                                                     \
			default: /* sum, avg */                                            \
				a_[i_] = (T)((UT)x_ + (UT)y_);                             \
			}                                                                  \
		}                                                                          \
	} while (0)

#define COMBINE_FLOAT(T, acc, src, n, op)                                 \
	do {                                                              \
		T *a_ = (T *)(acc);                                       \
		const T *s_ = (const T *)(src);                           \
		for (size_t i_ = 0; i_ < (n); i_++) {                     \
			T x_ = a_[i_], y_ = s_[i_];                       \
			a_[i_] = (op) == ncclProd ? x_ * y_                 \
				 : (op) == ncclMax ? (x_ > y_ ? x_ : y_)    \
				 : (op) == ncclMin ? (x_ < y_ ? x_ : y_)    \
						   : x_ + y_;               \
		}                                                         \
	} while (0)

static void combine_bf16(uint16_t *acc, const uint16_t *src, size_t n, ncclRedOp_t op)
{
	for (size_t i = 0; i < n; i++) {
		float x = bf16_to_f32(acc[i]), y = bf16_to_f32(src[i]);
		float v = op == ncclProd ? x * y : op == ncclMax ? (x > y ? x : y) : op == ncclMin ? (x < y ? x : y) : x + y;
		acc[i] = f32_to_bf16(v);
	}
}

static int combine(void *acc, const void *src, size_t n, ncclDataType_t t, ncclRedOp_t op)
{
	switch (t) {
	case ncclInt8:
		COMBINE(int8_t, uint8_t, acc, src, n, op);
		break;
	case ncclUint8:
		COMBINE(uint8_t, uint8_t, acc, src, n, op);
		break;
	case ncclInt32:
		COMBINE(int32_t, uint32_t, acc, src, n, op);
		break;
	case ncclUint32:
		COMBINE(uint32_t, uint32_t, acc, src, n, op);
		break;
	case ncclInt64:
		COMBINE(int64_t, uint64_t, acc, src, n, op);
		break;
	case ncclUint64:
		COMBINE(uint64_t, uint64_t, acc, src, n, op);
		break;
	case ncclFloat32:
		COMBINE_FLOAT(float, acc, src, n, op);
		break;
	case ncclFloat64:
		COMBINE_FLOAT(double, acc, src, n, op);
		break;
	case ncclBfloat16:
		combine_bf16(acc, src, n, op);
		break;
	default:
		return -1;
	}
	return 0;
}

/* ncclAvg: the sum over p ranks divided by p (integers truncated). */
static void reduce_finish(void *acc, size_t n, ncclDataType_t t, ncclRedOp_t op, int p)
{
	if (op != ncclAvg)
		return;
	for (size_t i = 0; i < n; i++)
		switch (t) {
		case ncclInt8:
			((int8_t *)acc)[i] = (int8_t)(((int8_t *)acc)[i] / p);
			break;
		case ncclUint8:
			((uint8_t *)acc)[i] = (uint8_t)(((uint8_t *)acc)[i] / p);
			break;
		case ncclInt32:
			((int32_t *)acc)[i] /= p;
			break;
		case ncclUint32:
			((uint32_t *)acc)[i] /= (uint32_t)p;
			break;
		case ncclInt64:
			((int64_t *)acc)[i] /= p;
			break;
		case ncclUint64:
			((uint64_t *)acc)[i] /= (uint64_t)p;
			break;
		case ncclFloat32:
			((float *)acc)[i] /= (float)p;
			break;
		case ncclFloat64:
			((double *)acc)[i] /= (double)p;
			break;
		case ncclBfloat16:
			((uint16_t *)acc)[i] = f32_to_bf16(bf16_to_f32(((uint16_t *)acc)[i]) / (float)p);
			break;
		default:
			break;
		}
}

/* One chunk: every rank's n values side by side (all[r * n ...]), reduced in rank order. */
static ncclResult_t allreduce_chunk(const char *send, char *recv, size_t n, size_t es, ncclDataType_t t,
				    ncclRedOp_t op, struct ncclComm *c, char *all)
{
	int rc = MPI_Allgather(send, (int)(n * es), MPI_BYTE, all, (int)(n * es), MPI_BYTE, c->mpi);
	if (rc != MPI_SUCCESS)
		return mpi_fail(rc, "MPI_Allgather (ncclAllReduce)");
	for (int r = 1; r < c->nranks; r++)
		combine(all, all + (size_t)r * n * es, n, t, op);
	reduce_finish(all, n, t, op, c->nranks);
	memcpy(recv, all, n * es);
	return ncclSuccess;
}

static ncclResult_t do_allreduce(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t t, ncclRedOp_t op,
				 struct ncclComm *c, size_t es)
{
	stats.allreduces++;
	stats.bytes += (double)count * (double)es;
	if (c->mpi == MPI_COMM_NULL || c->nranks == 1) {
		if (sendbuff != recvbuff)
			memmove(recvbuff, sendbuff, count * es);
		reduce_finish(recvbuff, count, t, op, 1);
		return ncclSuccess;
	}
	size_t chunk = REDUCE_CHUNK;
	if (chunk * es > (size_t)INT_MAX / 2)
		chunk = (size_t)INT_MAX / 2 / es;
	char *all = malloc(chunk * es * (size_t)c->nranks);
	if (!all)
		return fail(ncclSystemError, "ncclAllReduce: out of memory");
	ncclResult_t r = ncclSuccess;
	for (size_t done = 0; done < count && r == ncclSuccess; done += chunk) {
		size_t n = count - done < chunk ? count - done : chunk;
		r = allreduce_chunk((const char *)sendbuff + done * es, (char *)recvbuff + done * es, n, es, t, op, c, all);
	}
	free(all);
	return r;
}

/* ---- all-gather ---- */

static ncclResult_t do_allgather(const void *sendbuff, void *recvbuff, size_t sendcount, struct ncclComm *c, size_t es)
{
	stats.allgathers++;
	stats.bytes += (double)sendcount * (double)es * (c->nranks - 1);
	char *mine = (char *)recvbuff + (size_t)c->rank * sendcount * es;
	if (c->mpi == MPI_COMM_NULL) {
		if (mine != sendbuff)
			memmove(mine, sendbuff, sendcount * es);
		return ncclSuccess;
	}
	MPI_Datatype elem;
	MPI_Type_contiguous((int)es, MPI_BYTE, &elem);
	MPI_Type_commit(&elem);
	int rc = MPI_Allgather(mine == sendbuff ? MPI_IN_PLACE : sendbuff, (int)sendcount, elem, recvbuff, (int)sendcount,
			       elem, c->mpi);
	MPI_Type_free(&elem);
	return rc == MPI_SUCCESS ? ncclSuccess : mpi_fail(rc, "MPI_Allgather (ncclAllGather)");
}

/* ---- groups: queued operations, run at the outermost ncclGroupEnd ---- */

enum op_kind { OP_SEND, OP_RECV, OP_ALLREDUCE, OP_ALLGATHER };

struct op {
	enum op_kind kind;
	const void *send;
	void *recv;
	size_t count, es;
	ncclDataType_t type;
	ncclRedOp_t redop;
	int peer;
	struct ncclComm *comm;
};

static int group_depth;
static struct op *queue;
static size_t nqueue, capqueue;

static ncclResult_t enqueue(const struct op *o)
{
	if (nqueue == capqueue) {
		size_t cap = capqueue ? 2 * capqueue : 64;
		struct op *q = realloc(queue, cap * sizeof *q);
		if (!q)
			return fail(ncclSystemError, "device emulator: out of memory queueing a grouped operation");
		queue = q;
		capqueue = cap;
	}
	queue[nqueue++] = *o;
	return ncclSuccess;
}

/* Sends and receives of one rank with itself and no MPI: the k-th send to self is the k-th
 * receive from self. */
static ncclResult_t solo_p2p(const struct op *ops, size_t n)
{
	size_t s = 0;
	for (size_t i = 0; i < n; i++) {
		if (ops[i].kind != OP_RECV || ops[i].comm->mpi != MPI_COMM_NULL)
			continue;
		while (s < n && !(ops[s].kind == OP_SEND && ops[s].comm == ops[i].comm))
			s++;
		if (s == n)
			return fail(ncclInvalidUsage, "device emulator: ncclRecv from self with no matching ncclSend");
		if (ops[s].count * ops[s].es != ops[i].count * ops[i].es)
			return fail(ncclInvalidUsage, "device emulator: ncclRecv of %zu elements from self, but %zu sent",
				    ops[i].count, ops[s].count);
		memmove(ops[i].recv, ops[s].send, ops[i].count * ops[i].es);
		s++;
	}
	return ncclSuccess;
}

/* A receive must get what it asked for: NCCL's send and receive counts must match. */
static ncclResult_t check_received(const struct op *o, MPI_Status *st)
{
	int got = 0;
	MPI_Get_count(st, MPI_BYTE, &got);
	if ((size_t)got != o->count * o->es)
		return fail(ncclInvalidUsage, "device emulator: ncclRecv of %zu bytes from rank %d, which sent %d bytes",
			    o->count * o->es, o->peer, got);
	return ncclSuccess;
}

/* The queue's point-to-point operations posted together, its collectives run in order
 * meanwhile (every rank issues those in the same order), then everything waited for. */
static ncclResult_t run(struct op *ops, size_t n)
{
	MPI_Request *req = calloc(n ? n : 1, sizeof *req);
	MPI_Status *st = calloc(n ? n : 1, sizeof *st);
	size_t *which = calloc(n ? n : 1, sizeof *which);
	ncclResult_t r = req && st && which ? solo_p2p(ops, n) : fail(ncclSystemError, "device emulator: out of memory");
	size_t nreq = 0;
	for (size_t i = 0; i < n && r == ncclSuccess; i++) {
		struct op *o = &ops[i];
		if ((o->kind != OP_SEND && o->kind != OP_RECV) || o->comm->mpi == MPI_COMM_NULL)
			continue;
		int rc = o->kind == OP_SEND ? MPI_Isend(o->send, (int)(o->count * o->es), MPI_BYTE, o->peer, TAG,
							 o->comm->mpi, &req[nreq])
					    : MPI_Irecv(o->recv, (int)(o->count * o->es), MPI_BYTE, o->peer, TAG,
							o->comm->mpi, &req[nreq]);
		if (rc != MPI_SUCCESS)
			r = mpi_fail(rc, o->kind == OP_SEND ? "MPI_Isend (ncclSend)" : "MPI_Irecv (ncclRecv)");
		else
			which[nreq++] = i;
	}
	for (size_t i = 0; i < n && r == ncclSuccess; i++) {
		struct op *o = &ops[i];
		if (o->kind == OP_ALLREDUCE)
			r = do_allreduce(o->send, o->recv, o->count, o->type, o->redop, o->comm, o->es);
		else if (o->kind == OP_ALLGATHER)
			r = do_allgather(o->send, o->recv, o->count, o->comm, o->es);
	}
	if (nreq) {
		int rc = MPI_Waitall((int)nreq, req, st);
		if (rc != MPI_SUCCESS && r == ncclSuccess)
			r = mpi_fail(rc, "MPI_Waitall (ncclGroupEnd)");
		for (size_t j = 0; j < nreq && r == ncclSuccess; j++)
			if (ops[which[j]].kind == OP_RECV)
				r = check_received(&ops[which[j]], &st[j]);
	}
	free(req);
	free(st);
	free(which);
	return r;
}

/* Inside a group: queued; outside: a group of one. */
static ncclResult_t submit(const struct op *o)
{
	if (group_depth)
		return enqueue(o);
	struct op one = *o;
	return run(&one, 1);
}

ncclResult_t ncclGroupStart(void)
{
	group_depth++;
	return ncclSuccess;
}

ncclResult_t ncclGroupEnd(void)
{
	if (!group_depth)
		return fail(ncclInvalidUsage, "ncclGroupEnd without ncclGroupStart");
	if (--group_depth)
		return ncclSuccess;
	stats.groups++;
	ncclResult_t r = run(queue, nqueue);
	nqueue = 0;
	return r;
}

/* ---- the calls ---- */

ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype, ncclRedOp_t op,
			   ncclComm_t comm, cudaStream_t stream)
{
	size_t es;
	ncclResult_t r = common_ok("ncclAllReduce", comm, datatype, &es);
	if (r != ncclSuccess)
		return r;
	if ((unsigned)op >= (unsigned)ncclNumOps)
		return fail(ncclInvalidArgument, "ncclAllReduce: invalid reduction %d", (int)op);
	if (datatype == ncclFloat16 || datatype == ncclFloat8e4m3 || datatype == ncclFloat8e5m2)
		return fail(ncclInvalidArgument, "device emulator: reductions of data type %d are not emulated", (int)datatype);
	if ((r = buffer_ok("ncclAllReduce", "sendbuff", sendbuff, count, es)) != ncclSuccess ||
	    (r = buffer_ok("ncclAllReduce", "recvbuff", recvbuff, count, es)) != ncclSuccess)
		return r;
	struct op o = {.kind = OP_ALLREDUCE, .send = sendbuff, .recv = recvbuff, .count = count, .es = es,
		       .type = datatype, .redop = op, .comm = comm};
	return submit(&o);
}

ncclResult_t ncclAllGather(const void *sendbuff, void *recvbuff, size_t sendcount, ncclDataType_t datatype,
			   ncclComm_t comm, cudaStream_t stream)
{
	size_t es;
	ncclResult_t r = common_ok("ncclAllGather", comm, datatype, &es);
	if (r != ncclSuccess)
		return r;
	if (sendcount > INT_MAX)
		return fail(ncclInvalidArgument, "device emulator: ncclAllGather of %zu elements per rank", sendcount);
	if ((r = buffer_ok("ncclAllGather", "sendbuff", sendbuff, sendcount, es)) != ncclSuccess ||
	    (r = buffer_ok("ncclAllGather", "recvbuff", recvbuff, sendcount * (size_t)comm->nranks, es)) != ncclSuccess)
		return r;
	struct op o = {.kind = OP_ALLGATHER, .send = sendbuff, .recv = recvbuff, .count = sendcount, .es = es,
		       .type = datatype, .comm = comm};
	return submit(&o);
}

static ncclResult_t p2p(enum op_kind kind, const void *send, void *recv, size_t count, ncclDataType_t datatype, int peer,
			ncclComm_t comm)
{
	const char *call = kind == OP_SEND ? "ncclSend" : "ncclRecv";
	size_t es;
	ncclResult_t r = common_ok(call, comm, datatype, &es);
	if (r != ncclSuccess)
		return r;
	if (peer < 0 || peer >= comm->nranks)
		return fail(ncclInvalidArgument, "%s: peer %d of a %d-rank communicator", call, peer, comm->nranks);
	if (count * es > INT_MAX)
		return fail(ncclInvalidArgument, "device emulator: %s of %zu bytes", call, count * es);
	if ((r = buffer_ok(call, kind == OP_SEND ? "sendbuff" : "recvbuff", kind == OP_SEND ? send : recv, count, es)) !=
	    ncclSuccess)
		return r;
	if (kind == OP_SEND) {
		stats.sends++;
		stats.bytes += (double)count * (double)es;
	} else {
		stats.recvs++;
	}
	struct op o = {.kind = kind, .send = send, .recv = recv, .count = count, .es = es, .type = datatype, .peer = peer,
		       .comm = comm};
	return submit(&o);
}

ncclResult_t ncclSend(const void *sendbuff, size_t count, ncclDataType_t datatype, int peer, ncclComm_t comm,
		      cudaStream_t stream)
{
	return p2p(OP_SEND, sendbuff, NULL, count, datatype, peer, comm);
}

ncclResult_t ncclRecv(void *recvbuff, size_t count, ncclDataType_t datatype, int peer, ncclComm_t comm,
		      cudaStream_t stream)
{
	return p2p(OP_RECV, NULL, recvbuff, count, datatype, peer, comm);
}

__attribute__((destructor)) static void emu_nccl_report(void)
{
	free(queue);
	queue = NULL;
	if (!emu_trace())
		return;
	fprintf(stderr,
		"moec emu: libnccl.so.2: %lu communicators (%lu splits), %lu all-reduces, %lu all-gathers, %lu sends, "
		"%lu receives, %lu groups, %.0f bytes%s\n",
		stats.comms, stats.splits, stats.allreduces, stats.allgathers, stats.sends, stats.recvs, stats.groups,
		stats.bytes, mpi_ours ? " (MPI initialized here)" : "");
}
