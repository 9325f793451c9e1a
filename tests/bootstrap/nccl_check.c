/* nccl_check.c - runtime/comm_nccl.c.
 *
 *   nccl_check host
 *     No GPU needed (ctest bootstrap/nccl_host, everywhere). The group arithmetic
 *     (colors, keys, sizes) against `moec plan`'s groups for the Qwen3-235B layout and as a
 *     partition of the world for others; a library that is not there, or is not NCCL,
 *     fails with its name and what to do. Where libnccl.so.2 is absent, loading fails naming it, and a rank 0
 *     without NCCL still tells the others (they fail at once, not at the timeout). Where
 *     it is present (no driver needed): its version, fresh unique ids, and one id shared by
 *     3 forked ranks over the TCP bootstrap; a rank 0 whose ncclGetUniqueId fails (no such
 *     NCCL_SOCKET_IFNAME) tells the others.
 *
 *   nccl_check gpu [TP EP]
 *     One rank, on GPU LOCAL_RANK, of a torchrun-style start-up (nccl_ranks.sh starts one
 *     per GPU), or a single rank when WORLD_SIZE is unset (ctest gpu/nccl_one_rank). Exits
 *     77 (skipped) without a driver, a device or NCCL. Layout dp = world / TP, ep = EP:
 *     init, then on every group an all-reduce, an all-to-all-v with zero counts in it (and
 *     a round where every count is zero) and an in-place all-gather, each against the
 *     values every member put in, and the bytes counted against comm.c's formulas; and
 *     NCCL's own all-reduce on the world communicator and the device's stream.
 *
 *   nccl_check gpu-mpi [TP EP]
 *     The same under `mpirun -np N`, started as a trainer is: comm.c's MPI world gives the
 *     ranks (the device: the local rank) and carries the id (tests/emu/nccl_ranks.sh runs it
 *     on the device emulator).
 *
 *   nccl_check mpi
 *     Under `mpirun -np N` (ctest bootstrap/nccl_mpi, no GPU needed): the id goes out by
 *     MPI_Bcast (comm.c's world); every rank must hold rank 0's. Without NCCL, every rank
 *     must fail, the others saying rank 0 could not make it.
 *
 *   nccl_check free-port
 *     Print a TCP port nobody listens on now (for nccl_ranks.sh).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bootstrap.h"
#include "comm_nccl.h"
#include "device_cuda.h"
#include "moert.h"
#include "free_port.h"
#include "testing.h"

static char err[2048];

/* ---- the groups, on the host ---- */

/* World rank of member j of rank's group g. */
static int member(const struct moert_layout *l, int rank, enum moert_group g, int j)
{
	switch (g) {
	case MOERT_DP:
		return rank % l->tp + j * l->tp;
	case MOERT_TP:
		return rank / l->tp * l->tp + j;
	case MOERT_EP:
		return rank / l->ep * l->ep + j;
	case MOERT_EDP:
		return rank % l->ep + j * l->ep;
	default:
		return j;
	}
}

/* Rank's group g as "[a b c]". */
static void fmt_group(const struct moert_layout *l, int rank, enum moert_group g, char *buf, size_t n)
{
	int color, key, size;
	moert_nccl_split_args(l, rank, g, &color, &key, &size);
	size_t used = (size_t)snprintf(buf, n, "[");
	for (int r = 0; r < l->world && used < n; r++) {
		int c2, k2, s2;
		moert_nccl_split_args(l, r, g, &c2, &k2, &s2);
		if (c2 == color)
			used += (size_t)snprintf(buf + used, n - used, "%s%d", used > 1 ? " " : "", r);
	}
	if (used < n)
		snprintf(buf + used, n - used, "]");
}

/* Every group of every rank: its members are the ranks of its color, keys 0..size-1 in
 * world order (so the key is the index member() gives). */
static void check_partition(const struct moert_layout *l)
{
	for (int g = 0; g < MOERT_NGROUPS; g++)
		for (int r = 0; r < l->world; r++) {
			int color, key, size, n = 0;
			moert_nccl_split_args(l, r, (enum moert_group)g, &color, &key, &size);
			for (int q = 0; q < l->world; q++) {
				int c2, k2, s2;
				moert_nccl_split_args(l, q, (enum moert_group)g, &c2, &k2, &s2);
				if (c2 != color)
					continue;
				EXPECT_INT(s2, size);
				EXPECT_INT(member(l, r, (enum moert_group)g, k2), q);
				n++;
			}
			EXPECT_INT(n, size);
			EXPECT(key >= 0 && key < size);
		}
}

static void test_split_args(void)
{
	/* examples/qwen3_235b_a22b.yaml, as `moec plan` (README.md) prints its groups */
	struct moert_layout q = {.world = 16, .dp = 8, .tp = 2, .ep = 8, .edp = 2};
	char buf[128];
	fmt_group(&q, 0, MOERT_TP, buf, sizeof buf);
	EXPECT_STR(buf, "[0 1]");
	fmt_group(&q, 0, MOERT_DP, buf, sizeof buf);
	EXPECT_STR(buf, "[0 2 4 6 8 10 12 14]");
	fmt_group(&q, 0, MOERT_EP, buf, sizeof buf);
	EXPECT_STR(buf, "[0 1 2 3 4 5 6 7]");
	fmt_group(&q, 0, MOERT_EDP, buf, sizeof buf);
	EXPECT_STR(buf, "[0 8]");
	fmt_group(&q, 11, MOERT_EDP, buf, sizeof buf);
	EXPECT_STR(buf, "[3 11]");
	int color, key, size;
	moert_nccl_split_args(&q, 11, MOERT_DP, &color, &key, &size);
	EXPECT_INT(color, 1);
	EXPECT_INT(key, 5);
	EXPECT_INT(size, 8);
	check_partition(&q);
	/* tests/dist's layouts and a one-rank one */
	static const struct moert_layout others[] = {
		{1, 1, 1, 1, 1}, {2, 2, 1, 2, 1}, {4, 4, 1, 4, 1}, {8, 8, 1, 2, 4}, {2, 1, 2, 1, 2}, {4, 2, 2, 4, 1},
	};
	for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
		check_partition(&others[i]);
}

/* ---- host: loading and the id ---- */

struct id_result {
	int rc;
	struct moert_nccl_id id;
	char err[1024];
};

/* world forked ranks share an id over the bootstrap; bad_if: rank 0's NCCL_SOCKET_IFNAME. */
static void share_in_children(int world, const char *bad_if, struct id_result *out)
{
	int fds[8][2], port = testing_free_port();
	pid_t pids[8];
	fflush(NULL);
	for (int r = 0; r < world; r++) {
		if (pipe(fds[r]))
			exit(1);
		pids[r] = fork();
		if (pids[r] == 0) {
			if (r == 0 && bad_if)
				setenv("NCCL_SOCKET_IFNAME", bad_if, 1);
			struct moert_bootstrap_env e;
			memset(&e, 0, sizeof e);
			e.rank = r;
			e.world = world;
			e.local_world = 1;
			snprintf(e.master_addr, sizeof e.master_addr, "127.0.0.1");
			e.master_port = port;
			struct id_result res;
			memset(&res, 0, sizeof res);
			res.rc = moert_nccl_share_id(NULL, &e, &res.id, 5.0, res.err, sizeof res.err);
			ssize_t w = write(fds[r][1], &res, sizeof res);
			_exit(w == (ssize_t)sizeof res ? 0 : 3);
		}
		close(fds[r][1]);
	}
	for (int r = 0; r < world; r++) {
		memset(&out[r], 0, sizeof out[r]);
		out[r].rc = -99;
		size_t got = 0;
		while (got < sizeof out[r]) {
			ssize_t k = read(fds[r][0], (char *)&out[r] + got, sizeof out[r] - got);
			if (k <= 0)
				break;
			got += (size_t)k;
		}
		close(fds[r][0]);
		waitpid(pids[r], NULL, 0);
	}
}

static int all_zero(const struct moert_nccl_id *id)
{
	for (int i = 0; i < MOERT_NCCL_ID_BYTES; i++)
		if (id->bytes[i])
			return 0;
	return 1;
}

static void host_without_nccl(void)
{
	printf("NCCL is not here: %s\n", err);
	EXPECT(strstr(err, "cannot load NCCL (libnccl.so.2)") != NULL);
	EXPECT(strstr(err, "LD_LIBRARY_PATH") != NULL);
	struct moert_nccl_id id;
	EXPECT_INT(moert_nccl_unique_id(&id, err, sizeof err), -1);
	EXPECT(strstr(err, "libnccl.so.2") != NULL);
	/* rank 0 cannot make the id, and says so to rank 1 rather than leaving it waiting */
	struct id_result res[2];
	share_in_children(2, NULL, res);
	EXPECT_INT(res[0].rc, -1);
	EXPECT(strstr(res[0].err, "rank 0: cannot load NCCL (libnccl.so.2)") != NULL);
	EXPECT_INT(res[1].rc, -1);
	EXPECT(strstr(res[1].err, "rank 1: rank 0 could not make NCCL's unique id") != NULL);
}

static void host_with_nccl(void)
{
	int v = moert_nccl_version();
	printf("NCCL %d.%d.%d is here\n", v / 10000, v / 100 % 100, v % 100);
	EXPECT(v >= 21800);

	/* before any id is made in this process: a rank 0 whose NCCL finds no interface */
	struct id_result res[3];
	share_in_children(2, "moert_no_such_if0", res);
	EXPECT_INT(res[0].rc, -1);
	EXPECT(strstr(res[0].err, "rank 0: ncclGetUniqueId: ") != NULL);
	EXPECT_INT(res[1].rc, -1);
	EXPECT(strstr(res[1].err, "rank 1: rank 0 could not make NCCL's unique id") != NULL);
	printf("rank 0 without an interface: %s\n", res[0].err);

	struct moert_nccl_id a, b;
	EXPECT_INT(moert_nccl_unique_id(&a, err, sizeof err), 0);
	EXPECT_INT(moert_nccl_unique_id(&b, err, sizeof err), 0);
	EXPECT(!all_zero(&a));
	EXPECT(memcmp(&a, &b, sizeof a) != 0);
	/* one rank makes its own */
	EXPECT_INT(moert_nccl_share_id(NULL, NULL, &a, 1.0, err, sizeof err), 0);
	EXPECT(!all_zero(&a));

	share_in_children(3, NULL, res);
	for (int r = 0; r < 3; r++) {
		if (res[r].rc)
			fprintf(stderr, "rank %d: %s\n", r, res[r].err);
		EXPECT_INT(res[r].rc, 0);
		EXPECT(!memcmp(&res[r].id, &res[0].id, sizeof res[0].id));
	}
	EXPECT(!all_zero(&res[0].id));
}

static int host(void)
{
	test_split_args();
	EXPECT_INT(moert_nccl_load_lib("libnccl-moert-absent.so.2", err, sizeof err), -1);
	EXPECT(strstr(err, "cannot load NCCL (libnccl-moert-absent.so.2)") != NULL);
	EXPECT(strstr(err, "NCCL 2.18 or later") != NULL);
	EXPECT(strstr(err, "directory holding libnccl-moert-absent.so.2 on LD_LIBRARY_PATH") != NULL);
	EXPECT_INT(moert_nccl_version(), 0);
	/* a library that is there but is not NCCL */
	EXPECT_INT(moert_nccl_load_lib("libm.so.6", err, sizeof err), -1);
	EXPECT(strstr(err, "libm.so.6: no ncclGetVersion: it is not NCCL") != NULL);
	EXPECT_INT(moert_nccl_version(), 0);
	if (moert_nccl_load(err, sizeof err))
		host_without_nccl();
	else
		host_with_nccl();
	return testing_report();
}

/* ---- mpi ---- */

static int mpi(int argc, char **argv)
{
	const char *n = getenv("OMPI_COMM_WORLD_SIZE");
	int w = n ? atoi(n) : 1;
	struct moert_layout l = {.world = w, .dp = w, .tp = 1, .ep = w, .edp = 1};
	struct moert_comm comm;
	moert_comm_init(&comm, &l, &argc, &argv);
	struct moert_nccl_id id, copy;
	memset(&id, 0, sizeof id);
	int rc = moert_nccl_share_id(&comm, NULL, &id, 10.0, err, sizeof err);
	int failed = moert_max_i32(&comm, MOERT_WORLD, rc != 0), ok;
	if (failed) {
		/* no NCCL here: every rank fails, and the others say whose fault it is */
		ok = rc != 0 && strstr(err, comm.rank ? "rank 0 could not make NCCL's unique id" : "libnccl.so.2");
		printf("%s\n", err);
	} else {
		copy = id;
		moert_comm_bcast_bytes(&comm, 0, &copy, sizeof copy);
		ok = !memcmp(&copy, &id, sizeof id) && !all_zero(&id);
	}
	int bad = moert_max_i32(&comm, MOERT_WORLD, !ok);
	if (comm.rank == 0)
		printf("%d ranks under MPI: %s\n", comm.world,
		       bad ? "FAILED" : failed ? "no NCCL here, and every rank says so" : "every rank holds rank 0's id");
	moert_comm_finalize(&comm);
	return bad;
}

/* ---- gpu ---- */

static struct moert_cuda *dv;

#define CHECK_OK(call)                                                                   \
	do {                                                                             \
		err[0] = 0;                                                              \
		if (call) {                                                              \
			fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, err); \
			exit(1);                                                         \
		}                                                                        \
	} while (0)

static moert_dptr up(const float *h, long n)
{
	moert_dptr p = 0;
	CHECK_OK(moert_cuda_alloc(dv, (size_t)(n ? n : 1) * 4, &p, err, sizeof err));
	if (n)
		CHECK_OK(moert_cuda_h2d(dv, p, h, (size_t)n * 4, err, sizeof err));
	return p;
}

static void down(float *h, moert_dptr p, long n)
{
	CHECK_OK(moert_cuda_sync(dv, err, sizeof err));
	if (n)
		CHECK_OK(moert_cuda_d2h(dv, h, p, (size_t)n * 4, err, sizeof err));
	CHECK_OK(moert_cuda_sync(dv, err, sizeof err));
}

static int bad_floats(const float *got, const float *want, long n, const char *what, enum moert_group g, int rank)
{
	for (long i = 0; i < n; i++)
		if (got[i] != want[i]) {
			fprintf(stderr, "rank %d: %s over group %d: [%ld] = %g, want %g\n", rank, what, g, i, got[i], want[i]);
			return 1;
		}
	return 0;
}

static void check_allreduce(struct moert_nccl *c, const struct moert_layout *l, enum moert_group g, long n)
{
	float *h = malloc((size_t)n * 4), *want = malloc((size_t)n * 4);
	for (long i = 0; i < n; i++) {
		h[i] = (float)((c->rank + 1) * (i % 7 + 1));
		want[i] = 0;
		for (int j = 0; j < c->size[g]; j++)
			want[i] += (float)((member(l, c->rank, g, j) + 1) * (i % 7 + 1));
	}
	moert_dptr d = up(h, n);
	memset(c->bytes, 0, sizeof c->bytes);
	moert_nccl_allreduce_f32(c, g, MOERT_BYTES_DP, d, n);
	down(h, d, n);
	int p = c->size[g];
	EXPECT(c->bytes[MOERT_BYTES_DP] == (p > 1 ? 2.0 * (p - 1) / p * 4.0 * n : 0));
	EXPECT_INT(bad_floats(h, want, n, "all-reduce", g, c->rank), 0);
	moert_cuda_free(dv, d);
	free(h);
	free(want);
}

/* Elements group index a sends to index b in a round: 0, 5 or 10; round 2 sends none. */
static long a2a_count(int a, int b, int round)
{
	return round == 2 ? 0 : (a + 2 * b + round) % 3 * 5;
}

static void check_alltoallv(struct moert_nccl *c, enum moert_group g, int round)
{
	int p = c->size[g], a = c->index[g];
	long *sc = calloc((size_t)p, sizeof *sc), *sd = calloc((size_t)p, sizeof *sd);
	long *rc = calloc((size_t)p, sizeof *rc), *rd = calloc((size_t)p, sizeof *rd);
	long ns = 0, nr = 0;
	for (int b = 0; b < p; b++) {
		sc[b] = a2a_count(a, b, round), sd[b] = ns, ns += sc[b];
		rc[b] = a2a_count(b, a, round), rd[b] = nr, nr += rc[b];
	}
	float *s = malloc((size_t)(ns + 1) * 4), *r = malloc((size_t)(nr + 8) * 4), *want = malloc((size_t)(nr + 8) * 4);
	for (int b = 0; b < p; b++) {
		for (long k = 0; k < sc[b]; k++)
			s[sd[b] + k] = (float)(a * 1000 + b * 100 + k);
		for (long k = 0; k < rc[b]; k++)
			want[rd[b] + k] = (float)(b * 1000 + a * 100 + k);
	}
	for (long i = 0; i < nr + 8; i++)
		r[i] = -1;
	for (long i = nr; i < nr + 8; i++)
		want[i] = -1; /* nothing written past the end */
	moert_dptr ds = up(s, ns), dr = up(r, nr + 8);
	memset(c->bytes, 0, sizeof c->bytes);
	moert_nccl_alltoallv_f32(c, g, MOERT_BYTES_A2A, ds, sc, sd, dr, rc, rd);
	down(r, dr, nr + 8);
	double bytes = 0;
	for (int b = 0; b < p; b++)
		bytes += b == a ? 0 : 4.0 * sc[b];
	EXPECT(c->bytes[MOERT_BYTES_A2A] == bytes);
	EXPECT_INT(bad_floats(r, want, nr + 8, "all-to-all-v", g, c->rank), 0);
	moert_cuda_free(dv, ds);
	moert_cuda_free(dv, dr);
	free(s), free(r), free(want), free(sc), free(sd), free(rc), free(rd);
}

static void check_allgather(struct moert_nccl *c, enum moert_group g, long n)
{
	int p = c->size[g], a = c->index[g];
	float *h = malloc((size_t)(p * n) * 4), *want = malloc((size_t)(p * n) * 4);
	for (int j = 0; j < p; j++)
		for (long k = 0; k < n; k++) {
			h[j * n + k] = j == a ? (float)(j * 10 + k) : -7.0f;
			want[j * n + k] = (float)(j * 10 + k);
		}
	moert_dptr d = up(h, p * n);
	memset(c->bytes, 0, sizeof c->bytes);
	moert_nccl_allgather_f32(c, g, MOERT_BYTES_TP, d, n);
	down(h, d, p * n);
	EXPECT(c->bytes[MOERT_BYTES_TP] == 4.0 * n * (p - 1));
	EXPECT_INT(bad_floats(h, want, p * n, "all-gather", g, c->rank), 0);
	moert_cuda_free(dv, d);
	free(h);
	free(want);
}

/* NCCL's own all-reduce, out of place, on the world communicator and the device's stream:
 * what a one-rank run cannot reach through moert_nccl_allreduce_f32 (it skips one rank). */
typedef unsigned nccl_all_reduce(const void *, void *, size_t, unsigned, unsigned, void *, void *);

static void check_raw_allreduce(struct moert_nccl *c)
{
	void *h = dlopen("libnccl.so.2", RTLD_NOW | RTLD_NOLOAD);
	nccl_all_reduce *f = h ? (nccl_all_reduce *)dlsym(h, "ncclAllReduce") : NULL;
	EXPECT(f != NULL);
	if (!f)
		return;
	float x[3] = {(float)c->rank + 1, 2, -3}, y[3] = {0, 0, 0};
	moert_dptr dx = up(x, 3), dy = up(y, 3);
	unsigned r = f((void *)(uintptr_t)dx, (void *)(uintptr_t)dy, 3, 7 /* ncclFloat32 */, 0 /* ncclSum */,
		       c->nccl[MOERT_WORLD], c->stream);
	EXPECT_INT(r, 0);
	down(y, dy, 3);
	float w = (float)c->world;
	EXPECT(y[0] == w * (w + 1) / 2 && y[1] == 2 * w && y[2] == -3 * w);
	moert_cuda_free(dv, dx);
	moert_cuda_free(dv, dy);
}

/* mpi: the ranks are comm.c's MPI world's (the id goes by MPI_Bcast); NULL: the
 * torchrun-style environment's (the id goes over the TCP bootstrap). */
static int gpu(int tp, int ep, struct moert_comm *mpi)
{
	struct moert_bootstrap_env env;
	if (mpi) {
		memset(&env, 0, sizeof env);
		env.rank = mpi->rank, env.world = mpi->world, env.local_rank = moert_local_rank(mpi);
	} else if (moert_bootstrap_env(&env, err, sizeof err) < 0) {
		fprintf(stderr, "nccl_check: %s\n", err);
		return 1;
	}
	if (env.world % tp || env.world % ep) {
		fprintf(stderr, "nccl_check: tp %d and ep %d must divide WORLD_SIZE=%d\n", tp, ep, env.world);
		return 2;
	}
	if (moert_cuda_open(env.local_rank, &dv, err, sizeof err)) {
		printf("SKIP: no CUDA driver/device: %s\n", err);
		return 77;
	}
	if (moert_nccl_load(err, sizeof err)) {
		printf("SKIP: %s\n", err);
		return 77;
	}
	struct moert_nccl_id id;
	CHECK_OK(moert_nccl_share_id(mpi, &env, &id, 120.0, err, sizeof err));
	struct moert_layout l = {.world = env.world, .dp = env.world / tp, .tp = tp, .ep = ep, .edp = env.world / ep};
	struct moert_nccl c;
	CHECK_OK(moert_nccl_init(&c, &l, env.rank, env.world, &id, dv, err, sizeof err));
	for (int g = 0; g < MOERT_NGROUPS; g++) {
		int color, key, size;
		moert_nccl_split_args(&l, env.rank, (enum moert_group)g, &color, &key, &size);
		EXPECT_INT(c.size[g], size);
		EXPECT_INT(c.index[g], key);
		EXPECT(size == 1 ? c.nccl[g] == NULL || g == MOERT_WORLD : c.nccl[g] != NULL);
	}
	for (int g = 0; g < MOERT_NGROUPS; g++) {
		enum moert_group gg = (enum moert_group)g;
		check_allreduce(&c, &l, gg, 1);
		check_allreduce(&c, &l, gg, 4099);
		for (int round = 0; round < 3; round++)
			check_alltoallv(&c, gg, round);
		check_allgather(&c, gg, 3);
	}
	check_raw_allreduce(&c);
	EXPECT_INT(moert_nccl_async_error(&c, err, sizeof err), 0);
	CHECK_OK(moert_cuda_sync(dv, err, sizeof err));
	moert_nccl_finalize(&c);
	EXPECT(c.nccl[MOERT_WORLD] == NULL);
	int v = moert_nccl_version();
	printf("rank %d of %d on %s, NCCL %d.%d.%d, groups dp %d tp %d ep %d edp %d: ", env.rank, env.world,
	       moert_cuda_describe(dv), v / 10000, v / 100 % 100, v % 100, c.size[MOERT_DP], c.size[MOERT_TP],
	       c.size[MOERT_EP], c.size[MOERT_EDP]);
	moert_cuda_close(dv);
	return testing_report();
}

static int gpu_mpi(int tp, int ep, int argc, char **argv)
{
	const char *n = getenv("OMPI_COMM_WORLD_SIZE");
	int w = n ? atoi(n) : 1;
	struct moert_layout l = {.world = w, .dp = w, .tp = 1, .ep = w, .edp = 1};
	struct moert_comm comm;
	moert_comm_init(&comm, &l, &argc, &argv);
	int rc = gpu(tp, ep, &comm);
	moert_comm_finalize(&comm);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "host"))
		return host();
	if (argc >= 2 && !strcmp(argv[1], "mpi"))
		return mpi(argc, argv);
	if (argc >= 2 && !strcmp(argv[1], "free-port"))
		return printf("%d\n", testing_free_port()) < 0;
	if (argc >= 2 && !strcmp(argv[1], "gpu"))
		return gpu(argc > 2 ? atoi(argv[2]) : 1, argc > 3 ? atoi(argv[3]) : 1, NULL);
	if (argc >= 2 && !strcmp(argv[1], "gpu-mpi"))
		return gpu_mpi(argc > 2 ? atoi(argv[2]) : 1, argc > 3 ? atoi(argv[3]) : 1, argc, argv);
	fprintf(stderr, "usage: nccl_check host | mpi | gpu [TP EP] | gpu-mpi [TP EP] | free-port\n");
	return 2;
}
