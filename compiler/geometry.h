/* geometry.h - a kernel's launch geometry as C: its template's "// moec: launch grid=(..)
 * block=(..) smem=(..)" line, with the instance's constants (and the template defaults it
 * leaves alone, e.g. TILE_M) substituted, so host code can compute grid, block and dynamic
 * shared memory from the kernel's runtime arguments.
 *
 * The launch text is C-like: kernel parameter names (rows, tokens, n), constants, integer
 * arithmetic, ?:, and max(a, b), min(a, b), ceil(a / b) (rounding up, where C's / would
 * round down). An identifier that is neither a constant nor a parameter (grad_sumsq's
 * `total`) becomes an extra argument the caller passes.
 */
#ifndef MOEC_GEOMETRY_H
#define MOEC_GEOMETRY_H
#include <stdbool.h>
#include <stddef.h>
#include "kernels.h"
#include "lint.h"

#define GEOMETRY_EXPR_MAX 1024
#define GEOMETRY_MAX_EXTRA 4

struct geometry {
	char grid[3][GEOMETRY_EXPR_MAX];  /* "1" for an absent dimension */
	char block[3][GEOMETRY_EXPR_MAX];
	char smem[GEOMETRY_EXPR_MAX];     /* "0" when the line has none */
	bool smem_constant;               /* smem uses no runtime argument */
	char extra[GEOMETRY_MAX_EXTRA][64]; /* identifiers the caller must pass (as long) */
	int nextra;
};

/* Translate k's launch line against its signature. 0, or -1 with err (a line this
 * translator cannot read: say which). */
int geometry_translate(const struct kernel_inst *k, const struct kernel_sig *sig, struct geometry *g, char *err,
		       size_t errlen);

#endif
