/* sigcache.h - pass 6 as the build runs it: lint every instance, or reuse its result.
 *
 * Requires: instance files written under DIR/gen (emit.c) and an open cache.
 * Establishes: for every instance, the kernel's and the twin's signatures, checked against
 *   each other (lint.c); errors printed at the template's own file:line.
 * libclang takes tens of milliseconds per instance, which alone would break the 0.2 s
 * warm-build budget, so a clean lint result is stored in the kernel cache as <key>.sig:
 * key = SHA-256 of "moec-lint-1", the moec executable's identity (size and mtime: a
 * rebuilt moec may lint differently), the kernels and stub dirs, and both instances with
 * their includes (kernels/, templates/, kernels/cpu/). Only clean results are stored, so
 * an instance with errors is linted (and reported) on every build.
 */
#ifndef MOEC_SIGCACHE_H
#define MOEC_SIGCACHE_H

#include "cache.h"
#include "kernels.h"
#include "lint.h"

/* sigs and twin_sigs have ks->n entries. poll(arg), when given, is called between
 * instances (the build redraws the jit progress line with it). Returns the number of
 * errors. */
int sigcache_lint_all(const struct kernel_set *ks, const char *dir, const struct cache *c, struct kernel_sig *sigs,
		      struct kernel_sig *twin_sigs, int debug, void (*poll)(void *), void *arg);
/* Text form of two signatures, and back (exposed for tests). sigcache_parse returns 0 on
 * success. */
char *sigcache_format(const struct kernel_sig *kernel, const struct kernel_sig *twin);
int sigcache_parse(const char *text, struct kernel_sig *kernel, struct kernel_sig *twin);

#endif
