/* kernels.h - pass 5a: which kernel instances one training step needs.
 *
 * Requires: a checked spec, its IR (lower.c) and plan (plan.c); the templates in the
 *   kernels dir ($MOEC_KERNELS_DIR, else <source>/kernels), each opening with its
 *   "// moec: constants ..." and "// moec: launch ..." lines (kernels/README.md).
 * Establishes: the ordered, duplicate-free list of instances (forward, backward,
 *   optimizer), each with its template and CPU twin loaded, every constant either
 *   template names given a value (or left to the template's own #ifndef default), the
 *   instance name built from the config (rmsnorm_fwd_bf16_dim2048,
 *   moe_gate_up_fwd_bf16_e16_h2048_i768), and the launch geometry text. Specs whose
 *   features have no kernels yet (MLA, GPT-OSS, ...) fail here with "not supported yet".
 *
 * Constants describe what ONE rank's kernel computes: NH and NKV are the heads a rank
 * holds (NH / tp, and NKV / tp or 1 when kv heads are replicated), E_LOCAL = E / ep, D the
 * dense MLP width per rank (D / tp); E, K, H, V, HD, SEQ are whole-model values.
 */
#ifndef MOEC_KERNELS_H
#define MOEC_KERNELS_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "lower.h"
#include "plan.h"
#include "spec.h"

#define KERNEL_NAME_MAX 160
#define KERNEL_TEMPLATE_MAX 64
#define KERNEL_MAX_CONSTS 40
#define KERNEL_CONST_NAME_MAX 32
#define KERNEL_CONST_VALUE_MAX 48

struct kernel_const {
	char name[KERNEL_CONST_NAME_MAX];   /* "DIM" */
	char value[KERNEL_CONST_VALUE_MAX]; /* "2048", "1e-06f" */
};

/* name -> value text; the spec-wide values, or one instance's prelude. */
struct kernel_dict {
	int n;
	struct kernel_const v[KERNEL_MAX_CONSTS];
};

struct source;

struct kernel_inst {
	char name[KERNEL_NAME_MAX];         /* instance name: template + dtype + shape parts */
	char tmpl[KERNEL_TEMPLATE_MAX];     /* template name: "rmsnorm_fwd" */
	char why[160];                      /* what the step uses it for ("q/k norm; ...") */
	struct kernel_dict consts;          /* the .cu prelude, in the template's order */
	struct kernel_dict twin_consts;     /* the twin's prelude, in the twin's order */
	char launch[256];                   /* "grid=(rows) block=(256)" */
	const struct source *cu;            /* kernels/<tmpl>.cu (diag.c keeps it loaded) */
	const struct source *twin;          /* kernels/cpu/<tmpl>.c */
	char *cu_text;                      /* the generated instance sources (emit.c fills them) */
	char *twin_text;
};

struct kernel_set {
	char dir[PATH_MAX];                 /* the kernels dir, as given */
	struct kernel_dict dict;            /* spec-wide constant values */
	struct kernel_inst *v;              /* [n] in step order: forward, backward, optimizer */
	int n;
};

/* moec build --kernel-const TEMPLATE:NAME=VALUE, for tuning: constant NAME of every template
 * of the build whose name matches the glob TEMPLATE (fnmatch: "moe_*") gets VALUE in place of
 * its default. Only a template's own constants (tile sizes: TILE_M, STAGES...) can be set, not
 * the spec-wide ones (H, E_LOCAL, ACT_BF16...) the trainer's step is written for. The value
 * names the instance like any constant the emitter sets (moe_down_fwd_bf16_..._st4), so the
 * cache key and the manifest follow. */
#define KERNEL_MAX_USER_CONSTS 16

struct kernel_user_const {
	char arg[KERNEL_TEMPLATE_MAX + KERNEL_CONST_NAME_MAX + KERNEL_CONST_VALUE_MAX]; /* as given */
	char glob[KERNEL_TEMPLATE_MAX];
	char name[KERNEL_CONST_NAME_MAX];
	char value[KERNEL_CONST_VALUE_MAX];
};

struct kernel_user_consts {
	int n;
	struct kernel_user_const v[KERNEL_MAX_USER_CONSTS];
};

/* Parse one TEMPLATE:NAME=VALUE (VALUE a positive decimal integer) into uc; 0, or -1 with
 * err saying what is wrong. */
int kernels_parse_user_const(const char *arg, struct kernel_user_consts *uc, char *err, size_t errlen);

/* The kernels dir: $MOEC_KERNELS_DIR if set, else MOEC_SOURCE_DIR "/kernels". */
const char *kernels_default_dir(void);
/* Fill ks for the spec, with the user's constants uc (NULL: none). Errors (unsupported
 * features, missing templates or twins, a constant without a value, a --kernel-const that
 * matches no template or names a constant it does not have) go through diag.c; returns their
 * number. ks is valid for kernels_free() either way. */
int kernels_select(const struct spec *s, const struct ir *ir, const struct plan *p, const char *dir,
		   const struct kernel_user_consts *uc, struct kernel_set *ks);
void kernels_free(struct kernel_set *ks);

/* The spec-wide dictionary alone (tests, model.h). */
void kernels_fill_dict(const struct spec *s, const struct ir *ir, const struct plan *p, struct kernel_dict *d);
/* Value of a constant, or NULL. */
const char *kernels_dict_get(const struct kernel_dict *d, const char *name);
/* A double as a C float literal: 1e-06f, 1000000.0f. */
void kernels_float_literal(double v, char *buf, size_t n);
/* Build an instance name from a template and its prelude (exposed for tests). */
void kernels_name_instance(const char *tmpl, const struct kernel_dict *consts, char *buf, size_t n);
/* The value text of a constant the instance leaves to its template's "#ifndef NAME /
 * #define NAME value" default (in the template or a header it includes); false if none. */
bool kernels_default_value(const struct kernel_inst *k, const char *name, char *value, size_t n);
/* Index of an instance by name, or -1. */
int kernels_find(const struct kernel_set *ks, const char *name);

#endif
