/* testing.h - the smallest test harness: expectations that print file:line, expected and
 * got, and a closing "N passed, N failed" line. Include once per test executable. */
#ifndef MOEC_TESTING_H
#define MOEC_TESTING_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int testing_passed, testing_failed;

#define EXPECT(cond)                                                                  \
	do {                                                                          \
		if (cond) {                                                           \
			testing_passed++;                                             \
		} else {                                                              \
			testing_failed++;                                             \
			fprintf(stderr, "%s:%d: FAIL: %s\n", __FILE__, __LINE__, #cond); \
		}                                                                     \
	} while (0)

#define EXPECT_INT(got, want)                                                                          \
	do {                                                                                           \
		long long g_ = (long long)(got), w_ = (long long)(want);                               \
		if (g_ == w_) {                                                                        \
			testing_passed++;                                                              \
		} else {                                                                               \
			testing_failed++;                                                              \
			fprintf(stderr, "%s:%d: FAIL: %s = %lld, want %lld\n", __FILE__, __LINE__, #got, g_, w_); \
		}                                                                                      \
	} while (0)

/* |got - want| <= rel * |want| */
#define EXPECT_NEAR(got, want, rel)                                                                              \
	do {                                                                                                     \
		double g_ = (double)(got), w_ = (double)(want);                                                  \
		if (fabs(g_ - w_) <= (rel) * fabs(w_)) {                                                         \
			testing_passed++;                                                                        \
		} else {                                                                                         \
			testing_failed++;                                                                        \
			fprintf(stderr, "%s:%d: FAIL: %s = %.6g, want %.6g (within %g%%)\n", __FILE__, __LINE__, #got, g_, w_, \
			        100.0 * (rel));                                                                  \
		}                                                                                                \
	} while (0)

#define EXPECT_STR(got, want)                                                                              \
	do {                                                                                               \
		const char *g_ = (got), *w_ = (want);                                                      \
		if (g_ && w_ && !strcmp(g_, w_)) {                                                         \
			testing_passed++;                                                                  \
		} else {                                                                                   \
			testing_failed++;                                                                  \
			fprintf(stderr, "%s:%d: FAIL: %s = \"%s\", want \"%s\"\n", __FILE__, __LINE__, #got, \
			        g_ ? g_ : "(null)", w_ ? w_ : "(null)");                                     \
		}                                                                                          \
	} while (0)

/* text (an error message, a command's output) contains want. */
#define EXPECT_CONTAINS(text, want)                                                                          \
	do {                                                                                                 \
		const char *h_ = (text), *n_ = (want);                                                       \
		if (h_ && strstr(h_, n_)) {                                                                  \
			testing_passed++;                                                                    \
		} else {                                                                                     \
			testing_failed++;                                                                    \
			fprintf(stderr, "%s:%d: FAIL: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__,     \
			        h_ ? h_ : "(null)", n_);                                                     \
		}                                                                                            \
	} while (0)

/* A fresh directory /tmp/moec_test_<name>_XXXXXX in dir (n bytes); 0 or -1. */
static inline int testing_tmpdir(char *dir, size_t n, const char *name)
{
	snprintf(dir, n, "/tmp/moec_test_%s_XXXXXX", name);
	return mkdtemp(dir) ? 0 : -1;
}

/* rm -rf dir (the directory testing_tmpdir made). */
static inline void testing_rmdir(const char *dir)
{
	char cmd[4200];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd))
		fprintf(stderr, "could not remove %s\n", dir);
}

static inline int testing_report(void)
{
	printf("%d passed, %d failed\n", testing_passed, testing_failed);
	return testing_failed != 0;
}

#endif
