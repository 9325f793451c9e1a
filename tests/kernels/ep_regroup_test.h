/* ep_regroup_test.h - the body of test_ep_regroup_{bf16,f32}.c: the ep_regroup twin, driven
 * by the tables runtime/ep.c builds from a route (moert_ep_layout), against a plain per-row
 * reference, in both directions, for ep 1..8 (and 3) with zero-row blocks; and ep.c's
 * per-block copy path (the CPU backend's) against the same reference.
 *
 * The reference knows nothing of tables: arrival row a of block (s, j) goes to expert-major
 * row (rows of experts < j from every source) + (rows of expert j from sources < s) + i.
 * Copies are exact: every comparison is bitwise. The includer defines ACT_BF16 first. */
#include "moec_host.h"
#include "testing.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "ep.h"

/* Twin instances: E = ep x E_LOCAL blocks, H = row width. Odd H and a row of 3 check that
 * nothing assumes 16-byte rows; E 128 is Qwen3-30B's at EP 8 with 16 experts per rank. */
#define ER_INST(e, h) ep_regroup_e##e##_h##h
#define E 6
#define H 3
#define MOEC_KERNEL_CPU ER_INST(6, 3)
#include "ep_regroup.c"
#undef MOEC_KERNEL_CPU
#undef E
#undef H
#define E 8
#define H 64
#define MOEC_KERNEL_CPU ER_INST(8, 64)
#include "ep_regroup.c"
#undef MOEC_KERNEL_CPU
#undef E
#undef H
#define E 16
#define H 24
#define MOEC_KERNEL_CPU ER_INST(16, 24)
#include "ep_regroup.c"
#undef MOEC_KERNEL_CPU
#undef E
#undef H
#define E 128
#define H 40
#define MOEC_KERNEL_CPU ER_INST(128, 40)
#include "ep_regroup.c"
#undef MOEC_KERNEL_CPU
#undef E
#undef H

typedef void (*regroup_fn)(const act_t *src, const int *table, act_t *dst, int rows);
static const struct {
	const char *name;
	int e, h;
	regroup_fn fn;
} insts[] = {
	{"e6_h3", 6, 3, ER_INST(6, 3)},
	{"e8_h64", 8, 64, ER_INST(8, 64)},
	{"e16_h24", 16, 24, ER_INST(16, 24)},
	{"e128_h40", 128, 40, ER_INST(128, 40)},
};

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
	rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
	return (uint32_t)(rng >> 11);
}

/* Counts per (source, local expert): pattern 0 random with a third of the blocks empty; 1
 * every row to one block; 2 nothing at all; 3 one source sends nothing and one expert gets
 * nothing. */
static void fill_counts(int *from, int ep, int el, int pattern)
{
	for (int b = 0; b < ep * el; b++)
		from[b] = pattern == 0 && rnd() % 3 ? (int)(rnd() % 9) : 0;
	if (pattern == 1)
		from[(rnd() % ep) * el + rnd() % el] = 37;
	if (pattern == 3)
		for (int s = 0; s < ep; s++)
			for (int j = 0; j < el; j++)
				from[s * el + j] = s == ep / 2 || j == el - 1 ? 0 : 1 + (int)(rnd() % 5);
}

/* The expert-major row of every arrival row, counted directly. */
static void reference_map(const int *from, int ep, int el, long *em_of)
{
	long a = 0;
	for (int s = 0; s < ep; s++)
		for (int j = 0; j < el; j++)
			for (int i = 0; i < from[s * el + j]; i++) {
				long em = i;
				for (int jj = 0; jj < j; jj++)
					for (int ss = 0; ss < ep; ss++)
						em += from[ss * el + jj];
				for (int ss = 0; ss < s; ss++)
					em += from[ss * el + j];
				em_of[a++] = em;
			}
}

/* The CPU transport of one rank, for ep.c's copy path: the "all-to-all" hands over rows that
 * already arrived (arrival order), so dispatch_io's output is its regroup alone. */
static const float *arrived;
static size_t arrived_floats;
static void fake_alltoallv(void *ctx, const float *send, const long *sc, const long *sd, float *recv, const long *rc,
			   const long *rd)
{
	(void)ctx, (void)send, (void)sc, (void)sd, (void)rc, (void)rd;
	memcpy(recv, arrived, arrived_floats * sizeof *recv);
}
static void host_copy(void *ctx, float *dst, const float *src, size_t bytes)
{
	(void)ctx;
	memcpy(dst, src, bytes);
}

static void check_route(int ii, int ep, int pattern)
{
	const int e = insts[ii].e, h = insts[ii].h, el = e / ep;
	struct moert_ep_route rt;
	moert_ep_init(&rt, ep, el);
	fill_counts(rt.from, ep, el, pattern);
	moert_ep_layout(&rt);
	const long rows = rt.rows, n = rows * h;
	act_t *arr = malloc((size_t)(n + 1) * sizeof *arr), *em = malloc((size_t)(n + 1) * sizeof *em);
	act_t *want = malloc((size_t)(n + 1) * sizeof *want), *back = malloc((size_t)(n + 1) * sizeof *back);
	long *em_of = malloc((size_t)(rows + 1) * sizeof *em_of);
	for (long i = 0; i < n; i++) /* distinct values: a misplaced row cannot compare equal */
		act_store(arr + i, (float)(i % 4093) + 0.5f * (float)(i / 4093 % 2));
	reference_map(rt.from, ep, el, em_of);
	for (long a = 0; a < rows; a++)
		memcpy(want + em_of[a] * h, arr + a * h, (size_t)h * sizeof *arr);

	/* dispatch: arrival -> expert-major; combine: back */
	memset(em, 0xff, (size_t)(n + 1) * sizeof *em);
	insts[ii].fn(arr, MOERT_EP_TABLE(&rt, rt.regroup, 1), em, (int)rows);
	int ok = !memcmp(em, want, (size_t)n * sizeof *em);
	memset(back, 0xff, (size_t)(n + 1) * sizeof *back);
	insts[ii].fn(em, MOERT_EP_TABLE(&rt, rt.regroup, 0), back, (int)rows);
	ok &= !memcmp(back, arr, (size_t)n * sizeof *back);
	ok &= MOERT_EP_TABLE(&rt, rt.regroup, 1)[e] == rows && MOERT_EP_TABLE(&rt, rt.regroup, 0)[e] == rows;
	if (!ok)
		fprintf(stderr, "ep_regroup %s ep=%d pattern=%d (%ld rows): the twin with ep.c's table differs from the reference\n",
			insts[ii].name, ep, pattern, rows);
	EXPECT(ok);

	/* ep.c's own copy path (no regroup hook: one copy per block), rows as floats */
	if ((h * (long)sizeof(act_t)) % 4 == 0) {
		const int width = h * (int)sizeof(act_t) / 4;
		const struct moert_ep_io io = {.alltoallv = fake_alltoallv, .copy = host_copy};
		float *tmp = malloc((size_t)(rows * width + 1) * sizeof *tmp);
		memset(em, 0xff, (size_t)(n + 1) * sizeof *em);
		arrived = (const float *)arr;
		arrived_floats = (size_t)rows * width;
		moert_ep_dispatch_io(&io, &rt, (const float *)arr, width, tmp, (float *)em);
		EXPECT(!memcmp(em, want, (size_t)n * sizeof *em));
		free(tmp);
	}
	free(arr), free(em), free(want), free(back), free(em_of);
	moert_ep_free(&rt);
}

int main(void)
{
	static const int eps[] = {1, 2, 3, 4, 8};
	int cases = 0;
	for (size_t ii = 0; ii < sizeof insts / sizeof insts[0]; ii++)
		for (size_t k = 0; k < sizeof eps / sizeof eps[0]; k++) {
			if (insts[ii].e % eps[k])
				continue;
			for (int pattern = 0; pattern < 4; pattern++)
				for (int rep = 0; rep < (pattern == 0 ? 4 : 1); rep++, cases++)
					check_route((int)ii, eps[k], pattern);
		}
	printf("ep_regroup (%s): %d routes\n", ACT_BF16 ? "bf16" : "fp32", cases);
	return testing_report();
}
