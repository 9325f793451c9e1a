/* comm_nccl.c - collectives between GPUs over NCCL, loaded at run time. See comm_nccl.h.
 *
 * NCCL is not part of the CUDA toolkit, so nccl.h may be missing where a trainer is built
 * (every runtime file is compiled into every trainer): the few NCCL types and entry points
 * used here are declared below, in nccl.h's ABI (an enum is an unsigned int for gcc and
 * clang when it has no negative values, and a struct ncclComm * is the same pointer).
 * Where nccl.h is found, each declaration is checked against the header's own at compile
 * time, so a wrong signature cannot creep in. A direct call by mistake fails the link
 * (no NCCL library is linked), so it cannot slip through either.
 */
#define _GNU_SOURCE
#include "comm_nccl.h"
#include "moert.h"

#include <cuda.h> /* CUstream, which is cudaStream_t */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NCCL_LIB "libnccl.so.2"
#define NCCL_MIN_VERSION 21800 /* 2.18.0: ncclCommSplit; zero-count send/recv work since 2.12.10 */

/* ---- nccl.h's ABI, as used here ---- */

#if defined(__GNUC__) && defined(__has_include)
#if __has_include(<nccl.h>) && !defined(MOERT_NO_NCCL_H) /* MOERT_NO_NCCL_H: test the other way */
#include <nccl.h>
#define HAVE_NCCL_H 1
#endif
#endif

/* The two struct types are nccl.h's own where it is at hand, so the checks below are
 * exact; without it, the id is the same 128 bytes and the config is only ever NULL. */
#ifdef HAVE_NCCL_H
typedef ncclUniqueId nccl_unique_id;
typedef ncclConfig_t nccl_config;
#else
typedef struct {
	char internal[MOERT_NCCL_ID_BYTES];
} nccl_unique_id;
typedef struct nccl_config nccl_config;
#endif
typedef unsigned nccl_result;       /* ncclResult_t */
typedef struct ncclComm *nccl_comm; /* ncclComm_t */
#define NCCL_SUCCESS 0u             /* ncclSuccess */
#define NCCL_IN_PROGRESS 7u         /* ncclInProgress */
#define NCCL_INT32 2u               /* ncclInt32 (an ncclDataType_t) */
#define NCCL_FLOAT32 7u             /* ncclFloat32 */
#define NCCL_FLOAT64 8u             /* ncclFloat64 */
#define NCCL_BFLOAT16 9u            /* ncclBfloat16 */
#define NCCL_SUM 0u                 /* ncclSum (an ncclRedOp_t) */
#define NCCL_MAX 2u                 /* ncclMax */

typedef nccl_result get_version_fn(int *version);
typedef nccl_result get_unique_id_fn(nccl_unique_id *id);
typedef nccl_result comm_init_rank_fn(nccl_comm *comm, int nranks, nccl_unique_id id, int rank);
/* config: always NULL, so a group inherits the world's configuration */
typedef nccl_result comm_split_fn(nccl_comm comm, int color, int key, nccl_comm *newcomm, nccl_config *config);
typedef nccl_result comm_destroy_fn(nccl_comm comm);
typedef nccl_result comm_count_fn(const nccl_comm comm, int *count);
typedef nccl_result comm_user_rank_fn(const nccl_comm comm, int *rank);
typedef nccl_result comm_get_async_error_fn(nccl_comm comm, nccl_result *async_error);
typedef const char *get_error_string_fn(nccl_result result);
typedef const char *get_last_error_fn(nccl_comm comm);
typedef nccl_result all_reduce_fn(const void *sendbuff, void *recvbuff, size_t count, unsigned datatype, unsigned op,
				  nccl_comm comm, CUstream stream);
typedef nccl_result all_gather_fn(const void *sendbuff, void *recvbuff, size_t sendcount, unsigned datatype,
				  nccl_comm comm, CUstream stream);
typedef nccl_result send_fn(const void *sendbuff, size_t count, unsigned datatype, int peer, nccl_comm comm,
			    CUstream stream);
typedef nccl_result recv_fn(void *recvbuff, size_t count, unsigned datatype, int peer, nccl_comm comm, CUstream stream);
typedef nccl_result group_fn(void);

#define NCCL_FUNCS(X)                                    \
	X(ncclGetVersion, get_version_fn)                \
	X(ncclGetUniqueId, get_unique_id_fn)             \
	X(ncclCommInitRank, comm_init_rank_fn)           \
	X(ncclCommSplit, comm_split_fn)                  \
	X(ncclCommDestroy, comm_destroy_fn)              \
	X(ncclCommCount, comm_count_fn)                  \
	X(ncclCommUserRank, comm_user_rank_fn)           \
	X(ncclCommGetAsyncError, comm_get_async_error_fn) \
	X(ncclGetErrorString, get_error_string_fn)       \
	X(ncclGetLastError, get_last_error_fn)           \
	X(ncclAllReduce, all_reduce_fn)                  \
	X(ncclAllGather, all_gather_fn)                  \
	X(ncclSend, send_fn)                             \
	X(ncclRecv, recv_fn)                             \
	X(ncclGroupStart, group_fn)                      \
	X(ncclGroupEnd, group_fn)

#ifdef HAVE_NCCL_H
#define SAME_AS_NCCL_H(name, type) \
	_Static_assert(__builtin_types_compatible_p(__typeof__(name), type), #name ": declared here unlike in nccl.h");
NCCL_FUNCS(SAME_AS_NCCL_H)
#undef SAME_AS_NCCL_H
_Static_assert(NCCL_UNIQUE_ID_BYTES == MOERT_NCCL_ID_BYTES, "NCCL_UNIQUE_ID_BYTES differs");
_Static_assert((unsigned)ncclSuccess == NCCL_SUCCESS && (unsigned)ncclInProgress == NCCL_IN_PROGRESS,
	       "ncclResult_t values differ");
_Static_assert((unsigned)ncclFloat32 == NCCL_FLOAT32 && (unsigned)ncclSum == NCCL_SUM, "ncclFloat32 or ncclSum differs");
_Static_assert((unsigned)ncclInt32 == NCCL_INT32 && (unsigned)ncclFloat64 == NCCL_FLOAT64 &&
		       (unsigned)ncclBfloat16 == NCCL_BFLOAT16 && (unsigned)ncclMax == NCCL_MAX,
	       "an ncclDataType_t or ncclRedOp_t value differs");
#endif

struct nccl_api {
#define API_MEMBER(name, type) type *name;
	NCCL_FUNCS(API_MEMBER)
#undef API_MEMBER
};

/* NCCL is process-wide state anyway (one library, one set of communicators per rank). */
static struct nccl_api api;
static void *nccl_lib;
static int nccl_version;

/* ---- loading ---- */

/* NCCL_VERSION(X, Y, Z) is X*1000 + Y*100 + Z up to 2.8, X*10000 + Y*100 + Z after. */
static void fmt_version(int v, char *buf, size_t n)
{
	if (v >= 10000)
		snprintf(buf, n, "%d.%d.%d", v / 10000, v / 100 % 100, v % 100);
	else
		snprintf(buf, n, "%d.%d.%d", v / 1000, v / 100 % 10, v % 100);
}

static int resolve(void *h, const char *path, struct nccl_api *a, char *err, size_t errlen)
{
	void *f;
#define API_RESOLVE(name, type)                                                                                  \
	f = dlsym(h, #name);                                                                                     \
	if (!f) {                                                                                                \
		moert_seterr(err, errlen, "%s has no %s, which NCCL 2.18 and later have: is it NCCL?", \
			     path, #name);                                                                       \
		return -1;                                                                                       \
	}                                                                                                        \
	a->name = (type *)f;
	NCCL_FUNCS(API_RESOLVE)
#undef API_RESOLVE
	return 0;
}

/* 1 when the library is NCCL 2.18 or later (*v: its version), else 0 with err. */
static int version_ok(get_version_fn *get_version, const char *path, int *v, char *err, size_t errlen)
{
	*v = 0;
	if (!get_version || get_version(v) != NCCL_SUCCESS) {
		moert_seterr(err, errlen, "%s: %s: it is not NCCL; install NCCL 2.18 or later", path,
			     get_version ? "ncclGetVersion failed" : "no ncclGetVersion");
		return 0;
	}
	if (*v < NCCL_MIN_VERSION) {
		char ver[32];
		fmt_version(*v, ver, sizeof ver);
		moert_seterr(err, errlen, "%s is NCCL %s; moert needs 2.18 or later (ncclCommSplit): install a newer NCCL", path,
			     ver);
		return 0;
	}
	return 1;
}

int moert_nccl_load_lib(const char *path, char *err, size_t errlen)
{
	if (nccl_lib)
		return 0;
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		const char *why = dlerror();
		moert_seterr(err, errlen,
			     "cannot load NCCL (%s): %s; more than one GPU needs NCCL 2.18 or later: install it (the libnccl2 "
			     "package, or the nvidia-nccl-cu13 wheel) and put the directory holding %s on LD_LIBRARY_PATH",
			     path, why ? why : "not found", path);
		return -1;
	}
	/* the version first, so an old NCCL says which it is rather than what it lacks */
	int v = 0;
	struct nccl_api a;
	if (!version_ok((get_version_fn *)dlsym(h, "ncclGetVersion"), path, &v, err, errlen) ||
	    resolve(h, path, &a, err, errlen)) {
		dlclose(h);
		return -1;
	}
	api = a;
	nccl_lib = h;
	nccl_version = v;
	return 0;
}

int moert_nccl_load(char *err, size_t errlen)
{
	return moert_nccl_load_lib(NCCL_LIB, err, errlen);
}

int moert_nccl_version(void)
{
	return nccl_version;
}

/* "unhandled cuda error (run with NCCL_DEBUG=INFO for details): <what NCCL last said>" */
static void nccl_text(nccl_result r, char *buf, size_t n)
{
	const char *s = api.ncclGetErrorString(r), *last = api.ncclGetLastError(NULL);
	snprintf(buf, n, "%s%s%s", s ? s : "unknown NCCL error", last && *last ? ": " : "", last && *last ? last : "");
}

/* ---- the unique id ---- */

int moert_nccl_unique_id(struct moert_nccl_id *id, char *err, size_t errlen)
{
	if (moert_nccl_load(err, errlen))
		return -1;
	nccl_unique_id u;
	nccl_result r = api.ncclGetUniqueId(&u);
	if (r != NCCL_SUCCESS) {
		char why[512];
		nccl_text(r, why, sizeof why);
		moert_seterr(err, errlen, "ncclGetUniqueId: %s (NCCL_DEBUG=INFO says more; NCCL_SOCKET_IFNAME picks the interface)",
			     why);
		return -1;
	}
	memcpy(id->bytes, u.internal, sizeof id->bytes);
	return 0;
}

int moert_nccl_share_id(struct moert_comm *mpi, const struct moert_bootstrap_env *env, struct moert_nccl_id *id,
			double timeout_s, char *err, size_t errlen)
{
	const int by_mpi = mpi && mpi->world > 1, by_env = !by_mpi && env && env->world > 1;
	const int rank = by_mpi ? mpi->rank : by_env ? env->rank : 0;
	/* byte 0: did rank 0 make the id; then the id */
	unsigned char buf[1 + MOERT_NCCL_ID_BYTES];
	char why[1024] = "";
	memset(buf, 0, sizeof buf);
	if (rank == 0 && !moert_nccl_unique_id(id, why, sizeof why)) {
		buf[0] = 1;
		memcpy(buf + 1, id->bytes, MOERT_NCCL_ID_BYTES);
	}
	if (by_mpi)
		moert_comm_bcast_bytes(mpi, 0, buf, sizeof buf);
	else if (by_env && moert_bootstrap_broadcast(env, buf, sizeof buf, timeout_s, err, errlen))
		return -1;
	if (!buf[0]) {
		if (rank == 0)
			moert_seterr(err, errlen, "rank 0: %s", why);
		else
			moert_seterr(err, errlen, "rank %d: rank 0 could not make NCCL's unique id (its message says why)", rank);
		return -1;
	}
	memcpy(id->bytes, buf + 1, MOERT_NCCL_ID_BYTES);
	return 0;
}

/* ---- communicators ---- */

void moert_nccl_split_args(const struct moert_layout *l, int rank, enum moert_group g, int *color, int *key, int *size)
{
	/* comm.c's MPI_Comm_split calls: tp = r % tp, dp = r / tp, ep = r % ep, edp = r / ep */
	switch (g) {
	case MOERT_DP:
		*color = rank % l->tp, *key = rank / l->tp, *size = l->world / l->tp;
		break;
	case MOERT_TP:
		*color = rank / l->tp, *key = rank % l->tp, *size = l->tp;
		break;
	case MOERT_EP:
		*color = rank / l->ep, *key = rank % l->ep, *size = l->ep;
		break;
	case MOERT_EDP:
		*color = rank % l->ep, *key = rank / l->ep, *size = l->world / l->ep;
		break;
	default:
		*color = 0, *key = rank, *size = l->world;
		break;
	}
}

static int layout_ok(const struct moert_layout *l, int rank, int world, char *err, size_t errlen)
{
	if (l->world != world || l->dp < 1 || l->tp < 1 || l->ep < 1 || l->edp < 1 || l->dp * l->tp != world ||
	    l->ep * l->edp != world) {
		moert_seterr(err, errlen,
			     "rank %d: the trainer was built for %d ranks (dp %d x tp %d, ep %d x edp %d) but was started as %d",
			     rank, l->world, l->dp, l->tp, l->ep, l->edp, world);
		return 0;
	}
	if (rank < 0 || rank >= world) {
		moert_seterr(err, errlen, "rank %d is outside the world of %d ranks", rank, world);
		return 0;
	}
	return 1;
}

/* NCCL's view of a communicator must be the layout's: a mismatch means the ranks disagree
 * about the layout or the split went wrong, and every collective after it would be wrong. */
static int check_comm(struct moert_nccl *c, enum moert_group g, const char *what, char *err, size_t errlen)
{
	int n = 0, r = 0;
	nccl_comm comm = c->nccl[g];
	nccl_result e = api.ncclCommCount(comm, &n);
	if (e == NCCL_SUCCESS)
		e = api.ncclCommUserRank(comm, &r);
	if (e != NCCL_SUCCESS) {
		char why[512];
		nccl_text(e, why, sizeof why);
		moert_seterr(err, errlen, "rank %d: querying the %s communicator: %s", c->rank, what, why);
		return -1;
	}
	if (n != c->size[g] || r != c->index[g]) {
		moert_seterr(err, errlen, "rank %d: NCCL made the %s communicator with %d ranks, this rank %d in it; the layout "
			     "says %d ranks and %d: were all ranks built from the same spec?", c->rank, what, n, r, c->size[g],
			     c->index[g]);
		return -1;
	}
	return 0;
}

static const char *group_name(enum moert_group g)
{
	static const char *names[] = {"world", "dp", "tp", "ep", "edp"};
	return (unsigned)g < MOERT_NGROUPS ? names[g] : "?";
}

/* The group's communicator: none for one rank, the world's for the whole world, else a
 * split of the world's. Every rank takes the same branch for g (sizes come from the layout),
 * which ncclCommSplit, a collective over the world, needs. */
static int make_group(struct moert_nccl *c, const struct moert_layout *l, enum moert_group g, char *err, size_t errlen)
{
	int color, key, size;
	moert_nccl_split_args(l, c->rank, g, &color, &key, &size);
	c->size[g] = size;
	c->index[g] = key;
	if (size == 1)
		return 0;
	if (size == c->world) {
		c->nccl[g] = c->nccl[MOERT_WORLD]; /* key = rank here, so the ranks line up */
		return check_comm(c, g, group_name(g), err, errlen);
	}
	nccl_comm sub = NULL;
	nccl_result r = api.ncclCommSplit(c->nccl[MOERT_WORLD], color, key, &sub, NULL);
	if (r != NCCL_SUCCESS || !sub) {
		char why[512];
		nccl_text(r, why, sizeof why);
		moert_seterr(err, errlen, "rank %d: ncclCommSplit for the %s groups (color %d, key %d): %s (NCCL_DEBUG=INFO says more)",
			     c->rank, group_name(g), color, key, r != NCCL_SUCCESS ? why : "no communicator returned");
		return -1;
	}
	c->nccl[g] = sub;
	c->owned[g] = 1;
	return check_comm(c, g, group_name(g), err, errlen);
}

int moert_nccl_init(struct moert_nccl *c, const struct moert_layout *l, int rank, int world, const struct moert_nccl_id *id,
		    struct moert_cuda *d, char *err, size_t errlen)
{
	memset(c, 0, sizeof *c);
	c->rank = rank;
	c->world = world;
	if (moert_nccl_load(err, errlen) || !layout_ok(l, rank, world, err, errlen))
		return -1;
	c->stream = moert_cuda_stream(d);
	nccl_unique_id u;
	memcpy(u.internal, id->bytes, sizeof u.internal);
	nccl_comm w = NULL;
	nccl_result r = api.ncclCommInitRank(&w, world, u, rank);
	if (r != NCCL_SUCCESS || !w) {
		char why[512];
		nccl_text(r, why, sizeof why);
		moert_seterr(err, errlen,
			     "rank %d: ncclCommInitRank (%d ranks, %s): %s (NCCL_DEBUG=INFO says more; every rank must use its own "
			     "GPU and the same id)",
			     rank, world, moert_cuda_describe(d), r != NCCL_SUCCESS ? why : "no communicator returned");
		return -1;
	}
	c->nccl[MOERT_WORLD] = w;
	c->owned[MOERT_WORLD] = 1;
	c->size[MOERT_WORLD] = world;
	c->index[MOERT_WORLD] = rank;
	if (check_comm(c, MOERT_WORLD, "world", err, errlen))
		goto fail;
	for (int g = MOERT_WORLD + 1; g < MOERT_NGROUPS; g++)
		if (make_group(c, l, (enum moert_group)g, err, errlen))
			goto fail;
	return 0;
fail:
	moert_nccl_finalize(c);
	return -1;
}

void moert_nccl_finalize(struct moert_nccl *c)
{
	moert_nccl_detach_host(c);
	/* the groups before the world they were split from */
	for (int g = MOERT_NGROUPS - 1; g >= 0; g--) {
		if (c->nccl[g] && c->owned[g] && nccl_lib)
			api.ncclCommDestroy(c->nccl[g]);
		c->nccl[g] = NULL;
		c->owned[g] = 0;
	}
}

int moert_nccl_async_error(struct moert_nccl *c, char *err, size_t errlen)
{
	for (int g = 0; g < MOERT_NGROUPS; g++) {
		if (!c->owned[g])
			continue;
		nccl_result a = NCCL_SUCCESS;
		nccl_result r = api.ncclCommGetAsyncError(c->nccl[g], &a);
		if (r == NCCL_SUCCESS && (a == NCCL_SUCCESS || a == NCCL_IN_PROGRESS))
			continue;
		char why[512];
		nccl_text(r != NCCL_SUCCESS ? r : a, why, sizeof why);
		moert_seterr(err, errlen, "rank %d: NCCL failed in the %s communicator: %s", c->rank, group_name((enum moert_group)g),
			     why);
		return -1;
	}
	return 0;
}

/* ---- collectives ---- */

static void check(const struct moert_nccl *c, nccl_result r, const char *what, enum moert_group g)
{
	if (r != NCCL_SUCCESS) {
		char why[512];
		nccl_text(r, why, sizeof why);
		moert_fatal("rank %d: %s over the %s group failed: %s (NCCL_DEBUG=INFO says more)", c->rank, what, group_name(g),
			    why);
	}
}

static void *dev(moert_dptr p)
{
	return (void *)(uintptr_t)p;
}

/* Ring all-reduce volume per rank, the convention comm.c and plan.c use. */
static void count_allreduce(struct moert_nccl *c, enum moert_group g, enum moert_traffic t, double bytes)
{
	int p = c->size[g];
	if (p > 1)
		c->bytes[t] += 2.0 * (p - 1) / p * bytes;
}

static void allreduce(struct moert_nccl *c, enum moert_group g, moert_dptr buf, long n, unsigned type, unsigned op)
{
	if (n < 0)
		moert_fatal("rank %d: an all-reduce of %ld values", c->rank, n);
	check(c, api.ncclAllReduce(dev(buf), dev(buf), (size_t)n, type, op, c->nccl[g], c->stream), "ncclAllReduce", g);
}

void moert_nccl_allreduce_f32(struct moert_nccl *c, enum moert_group g, enum moert_traffic t, moert_dptr buf, long n)
{
	if (c->size[g] == 1 || n == 0)
		return;
	count_allreduce(c, g, t, 4.0 * n);
	allreduce(c, g, buf, n, NCCL_FLOAT32, NCCL_SUM);
}

void moert_nccl_allreduce_bf16(struct moert_nccl *c, enum moert_group g, enum moert_traffic t, moert_dptr buf, long n)
{
	if (c->size[g] == 1 || n == 0)
		return;
	count_allreduce(c, g, t, 2.0 * n);
	allreduce(c, g, buf, n, NCCL_BFLOAT16, NCCL_SUM);
}

static void check_counts(const struct moert_nccl *c, const long *counts, const long *displs, int p, const char *what)
{
	for (int i = 0; i < p; i++)
		if (counts[i] < 0 || displs[i] < 0)
			moert_fatal("rank %d: all-to-all %s count %ld at displacement %ld for rank %d of the group", c->rank, what,
				    counts[i], displs[i], i);
}

void moert_nccl_alltoallv_f32(struct moert_nccl *c, enum moert_group g, enum moert_traffic t, moert_dptr send,
			      const long *send_counts, const long *send_displs, moert_dptr recv, const long *recv_counts,
			      const long *recv_displs)
{
	const int p = c->size[g];
	for (int i = 0; i < p; i++)
		if (i != c->index[g])
			c->bytes[t] += 4.0 * send_counts[i];
	check_counts(c, send_counts, send_displs, p, "send");
	check_counts(c, recv_counts, recv_displs, p, "receive");
	/* A one-rank group has no communicator; its one exchange, with itself, goes over the
	 * world's (NCCL sends to self), so there is no device copy to write here. */
	nccl_comm comm = p == 1 ? c->nccl[MOERT_WORLD] : c->nccl[g];
	check(c, api.ncclGroupStart(), "ncclGroupStart", g);
	for (int i = 0; i < p; i++) {
		const int peer = p == 1 ? c->rank : i;
		/* Every peer's send and receive, count 0 included (NCCL allows it): a pair skipped
		 * on one side only would leave the other waiting for it, so no rank skips any. */
		check(c, api.ncclSend(dev(send + 4 * (moert_dptr)send_displs[i]), (size_t)send_counts[i], NCCL_FLOAT32, peer,
				      comm, c->stream),
		      "ncclSend", g);
		check(c, api.ncclRecv(dev(recv + 4 * (moert_dptr)recv_displs[i]), (size_t)recv_counts[i], NCCL_FLOAT32, peer,
				      comm, c->stream),
		      "ncclRecv", g);
	}
	check(c, api.ncclGroupEnd(), "the all-to-all (ncclGroupEnd)", g);
}

void moert_nccl_allgather_f32(struct moert_nccl *c, enum moert_group g, enum moert_traffic t, moert_dptr buf, long n)
{
	const int p = c->size[g];
	if (p == 1 || n == 0)
		return;
	if (n < 0)
		moert_fatal("rank %d: an all-gather of %ld floats", c->rank, n);
	c->bytes[t] += 4.0 * n * (p - 1); /* ring: each rank passes on p - 1 blocks */
	/* in place: NCCL's rule is sendbuff == recvbuff + rank * sendcount */
	moert_dptr mine = buf + 4 * (moert_dptr)n * (moert_dptr)c->index[g];
	check(c, api.ncclAllGather(dev(mine), dev(buf), (size_t)n, NCCL_FLOAT32, c->nccl[g], c->stream), "ncclAllGather", g);
}

void moert_nccl_allgatherv(struct moert_nccl *c, enum moert_group g, enum moert_traffic t, moert_dptr buf, int elem_bytes,
			   const long *counts, const long *displs)
{
	const unsigned type = elem_bytes == 2 ? NCCL_BFLOAT16 : NCCL_FLOAT32; /* moved, not summed */
	const moert_dptr es = (moert_dptr)elem_bytes;
	const int p = c->size[g], me = c->index[g];
	if (p == 1)
		return;
	check_counts(c, counts, displs, p, "gather");
	double total = 0;
	for (int i = 0; i < p; i++)
		total += counts[i];
	c->bytes[t] += (p - 1) * (double)elem_bytes * total / p; /* a ring all-gather's volume, plan.c's convention */
	/* NCCL's all-gather wants equal counts: each rank's range goes to every peer as a send,
	 * and every peer's comes in as a receive, count 0 included (no rank skips a pair) */
	check(c, api.ncclGroupStart(), "ncclGroupStart", g);
	for (int i = 0; i < p; i++) {
		if (i == me)
			continue;
		check(c, api.ncclSend(dev(buf + es * (moert_dptr)displs[me]), (size_t)counts[me], type, i, c->nccl[g], c->stream),
		      "ncclSend", g);
		check(c, api.ncclRecv(dev(buf + es * (moert_dptr)displs[i]), (size_t)counts[i], type, i, c->nccl[g], c->stream),
		      "ncclRecv", g);
	}
	check(c, api.ncclGroupEnd(), "the all-gather-v (ncclGroupEnd)", g);
}

/* ---- host memory, staged through the device ---- */

int moert_nccl_attach_host(struct moert_nccl *c, struct moert_cuda *d, size_t stage_bytes, char *err, size_t errlen)
{
	stage_bytes = (stage_bytes + 255) / 256 * 256;
	if (moert_cuda_alloc(d, stage_bytes, &c->stage, err, errlen))
		return -1;
	c->dev = d;
	c->stage_bytes = stage_bytes;
	return 0;
}

void moert_nccl_detach_host(struct moert_nccl *c)
{
	if (c->dev && c->stage)
		moert_cuda_free(c->dev, c->stage);
	c->dev = NULL;
	c->stage = 0;
	c->stage_bytes = 0;
}

static void staged(struct moert_nccl *c, const char *what)
{
	if (!c->dev)
		moert_fatal("rank %d: %s of host memory before moert_nccl_attach_host", c->rank, what);
}

static void host_copy(struct moert_nccl *c, int up, moert_dptr d, void *h, size_t bytes)
{
	char err[512];
	if (up ? moert_cuda_h2d(c->dev, d, h, bytes, err, sizeof err) : moert_cuda_d2h(c->dev, h, d, bytes, err, sizeof err))
		moert_fatal("rank %d: staging a collective through the GPU: %s", c->rank, err);
}

static void host_wait(struct moert_nccl *c)
{
	char err[512];
	if (moert_cuda_sync(c->dev, err, sizeof err))
		moert_fatal("rank %d: waiting for a collective: %s", c->rank, err);
}

void moert_nccl_host_allreduce(struct moert_nccl *c, enum moert_group g, enum moert_traffic t, void *buf, long n,
			       enum moert_nccl_reduce how)
{
	static const unsigned types[] = {NCCL_FLOAT32, NCCL_FLOAT64, NCCL_INT32};
	static const size_t sizes[] = {4, 8, 4};
	if (c->size[g] == 1 || n <= 0)
		return;
	staged(c, "an all-reduce");
	const size_t es = sizes[how];
	count_allreduce(c, g, t, (double)es * n);
	const long chunk = (long)(c->stage_bytes / es);
	for (long done = 0; done < n; done += chunk) {
		long k = n - done < chunk ? n - done : chunk;
		char *h = (char *)buf + (size_t)done * es;
		host_copy(c, 1, c->stage, h, (size_t)k * es);
		allreduce(c, g, c->stage, k, types[how], how == MOERT_NCCL_I32_MAX ? NCCL_MAX : NCCL_SUM);
		host_copy(c, 0, c->stage, h, (size_t)k * es);
		host_wait(c);
	}
}

void moert_nccl_host_alltoall_i32(struct moert_nccl *c, enum moert_group g, const int *send, int *recv, int per_rank)
{
	const int p = c->size[g];
	const size_t bytes = (size_t)p * per_rank * sizeof(int);
	staged(c, "an all-to-all");
	if (2 * bytes > c->stage_bytes)
		moert_fatal("rank %d: an all-to-all of %d x %d ints does not fit the %zu-byte staging buffer", c->rank, p,
			    per_rank, c->stage_bytes);
	long counts[MOERT_NCCL_MAX_PEERS], displs[MOERT_NCCL_MAX_PEERS];
	if (p > MOERT_NCCL_MAX_PEERS)
		moert_fatal("rank %d: an all-to-all over %d ranks (at most %d)", c->rank, p, MOERT_NCCL_MAX_PEERS);
	for (int i = 0; i < p; i++)
		counts[i] = per_rank, displs[i] = (long)i * per_rank;
	host_copy(c, 1, c->stage, (void *)send, bytes);
	/* ints move as 4-byte words (send and receive do no arithmetic); counts, not rows, so
	 * not all-to-all traffic in the accounting */
	moert_nccl_alltoallv_f32(c, g, MOERT_BYTES_OTHER, c->stage, counts, displs, c->stage + bytes, counts, displs);
	host_copy(c, 0, c->stage + bytes, recv, bytes);
	host_wait(c);
}

void moert_nccl_host_gather_f32(struct moert_nccl *c, enum moert_group g, int root, const float *send, float *recv,
				long n)
{
	const int p = c->size[g], me = c->index[g];
	if (p == 1) {
		memmove(recv, send, (size_t)n * sizeof *recv);
		return;
	}
	staged(c, "a gather");
	c->bytes[MOERT_BYTES_OTHER] += me == root ? 0 : 4.0 * n;
	/* root receives every other rank's chunk into its own slot of the staging buffer */
	const long chunk = (long)(c->stage_bytes / sizeof(float) / (size_t)p);
	for (long done = 0; done < n; done += chunk) {
		long k = n - done < chunk ? n - done : chunk;
		if (me != root)
			host_copy(c, 1, c->stage, (void *)(send + done), (size_t)k * 4);
		check(c, api.ncclGroupStart(), "ncclGroupStart", g);
		for (int i = 0; i < p; i++) {
			if (me == root && i != root)
				check(c, api.ncclRecv(dev(c->stage + 4 * (moert_dptr)k * i), (size_t)k, NCCL_FLOAT32, i, c->nccl[g],
						      c->stream),
				      "ncclRecv", g);
			else if (me != root && i == root)
				check(c, api.ncclSend(dev(c->stage), (size_t)k, NCCL_FLOAT32, root, c->nccl[g], c->stream), "ncclSend", g);
		}
		check(c, api.ncclGroupEnd(), "the gather (ncclGroupEnd)", g);
		if (me == root)
			for (int i = 0; i < p; i++) {
				float *to = recv + (size_t)i * n + done;
				if (i == root)
					memcpy(to, send + done, (size_t)k * 4);
				else
					host_copy(c, 0, c->stage + 4 * (moert_dptr)k * i, to, (size_t)k * 4);
			}
		host_wait(c);
	}
}
