/* st_same.c - compare two safetensors files tensor by tensor (the export test's checker).
 *
 *   st_same A B              A and B hold the same tensors: names, dtypes, shapes, bytes
 *   st_same --prefix P A B   every tensor X of A is in B as P+X, identical (B may hold more:
 *                            a trainer's --dump holds weights as "adamw.X" beside gradients)
 *   st_same --bf16 A B       B holds A's tensors, each F32 one as BF16 rounded to nearest
 *                            even (other dtypes identical)
 *
 * Exit 0 when they agree, 1 with the differences (at most 10 listed), 2 on usage or I/O
 * errors. The rounding is derived here from the values (the nearer of the two bfloat16
 * neighbours, ties to even), not with the bit trick export.c uses, so a mistake in either
 * shows.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

static int ndiff;

static void differ(const char *fmt, const char *name, const char *what)
{
	if (++ndiff <= 10) {
		fprintf(stderr, fmt, name, what);
		fputc('\n', stderr);
	}
}

static int same_shape(const struct st_tensor *a, const struct st_tensor *b)
{
	if (a->ndim != b->ndim)
		return 0;
	for (int d = 0; d < a->ndim; d++)
		if (a->shape[d] != b->shape[d])
			return 0;
	return 1;
}

static double bf16_value(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

/* The bfloat16 nearest to f, ties to the even one. Rounding treats the overflow neighbour
 * as 2^128, as IEEE rounding does, so values past the largest bfloat16's half-ulp become
 * infinity. */
static uint16_t bf16_nearest(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof u);
	uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1); /* truncated, next in magnitude */
	double x = fabs((double)f), vlo = fabs(bf16_value(lo));
	double vhi = (hi & 0x7fffu) == 0x7f80u ? ldexp(1.0, 128) : fabs(bf16_value(hi));
	if (x - vlo < vhi - x)
		return lo;
	if (x - vlo > vhi - x)
		return hi;
	return (lo & 1u) ? hi : lo;
}

/* B's tensor must be A's F32 values rounded to BF16. */
static void check_bf16(const struct st_tensor *a, const struct st_tensor *b)
{
	if (b->dtype != ST_BF16) {
		differ("%s: %s", a->name, "is not BF16 in B");
		return;
	}
	for (uint64_t i = 0; i < a->numel; i++) {
		float f;
		uint16_t h;
		memcpy(&f, (const char *)a->data + 4 * i, 4);
		memcpy(&h, (const char *)b->data + 2 * i, 2);
		int ok = isnan(f) ? isnan(bf16_value(h)) : h == bf16_nearest(f);
		if (!ok) {
			char what[96];
			snprintf(what, sizeof what, "element %llu: %.9g became 0x%04x, want 0x%04x", (unsigned long long)i,
				 (double)f, h, isnan(f) ? 0x7fc0 : bf16_nearest(f));
			differ("%s: %s", a->name, what);
			return;
		}
	}
}

static void compare(const struct st_tensor *a, const struct st_tensor *b, int bf16)
{
	if (!same_shape(a, b)) {
		differ("%s: %s", a->name, "shapes differ");
	} else if (bf16 && a->dtype == ST_F32) {
		check_bf16(a, b);
	} else if (a->dtype != b->dtype) {
		differ("%s: %s", a->name, "dtypes differ");
	} else if (a->nbytes != b->nbytes || memcmp(a->data, b->data, a->nbytes)) {
		differ("%s: %s", a->name, "data differs");
	}
}

static struct st_file *open_or_die(const char *path)
{
	struct st_file *f;
	char err[1024];
	if (st_open(path, &f, err, sizeof err)) {
		fprintf(stderr, "st_same: %s\n", err);
		exit(2);
	}
	return f;
}

int main(int argc, char **argv)
{
	const char *prefix = "";
	int bf16 = 0, i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--bf16"))
			bf16 = 1;
		else if (!strcmp(argv[i], "--prefix") && i + 1 < argc)
			prefix = argv[++i];
		else
			break;
	}
	if (argc - i != 2) {
		fprintf(stderr, "usage: st_same [--prefix P] [--bf16] A.safetensors B.safetensors\n");
		return 2;
	}
	struct st_file *a = open_or_die(argv[i]), *b = open_or_die(argv[i + 1]);
	size_t matched = 0;
	for (size_t k = 0; k < st_count(a); k++) {
		const struct st_tensor *ta = st_tensor_at(a, k);
		char name[1024];
		snprintf(name, sizeof name, "%s%s", prefix, ta->name);
		const struct st_tensor *tb = st_find(b, name);
		if (!tb) {
			differ("%s: %s", name, "missing in B");
			continue;
		}
		matched++;
		compare(ta, tb, bf16);
	}
	/* Without a prefix the sets must be equal: B holds nothing A does not. */
	if (!*prefix && st_count(b) != matched)
		for (size_t k = 0; k < st_count(b); k++)
			if (!st_find(a, st_tensor_at(b, k)->name))
				differ("%s: %s", st_tensor_at(b, k)->name, "missing in A");
	if (ndiff)
		fprintf(stderr, "st_same: %s and %s: %d difference%s\n", argv[i], argv[i + 1], ndiff, ndiff == 1 ? "" : "s");
	else
		printf("st_same: %zu tensors of %s %s in %s\n", matched, argv[i], bf16 ? "rounded to BF16" : "identical",
		       argv[i + 1]);
	st_close(a);
	st_close(b);
	return ndiff ? 1 : 0;
}
