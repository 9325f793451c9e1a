/* zero.h - parallel.shard_optimizer (ZeRO-1): which part of AdamW's state a rank keeps.
 *
 * The parameter arena has two regions with their own data-parallel groups: the dense blocks
 * [0, experts_begin) are replicated over dp (each tp rank holds its own slice of the split
 * ones, replicated over its dp group), the expert blocks [experts_begin, param_floats) over
 * edp. With sharding each region is cut into equal element ranges (ceil(n / group); the last
 * ones may be shorter or empty), one per rank of its group, regardless of tensor bounds:
 * AdamW's per-block offsets and decay flags apply to the pieces of blocks a range covers.
 *
 * What is sharded: AdamW's m and v (a rank's arenas hold its dense range, then its expert
 * range), and in a bf16 step the fp32 master weights (r->master, laid out as m and v). What
 * is not: the weights the forward reads (an fp32 step's fp32 weights; a bf16 step's bf16
 * copies, and its norms, which it reads in fp32: compiler/step.c puts them first, so the
 * fp32 arena keeps just [0, fp32_floats)), and the gradients (all-reduced whole as without
 * sharding, so the norm and the update are bit for bit those of an unsharded run). After
 * AdamW updates its ranges each rank all-gathers what the forward reads: the fp32 weights,
 * or the norms in fp32 and the rest as bf16 copies (which AdamW wrote from the masters; the
 * norms' bf16 copies are not gathered: no step reads them).
 * Checkpoints hold full tensors either way: the ranges are gathered before a save and cut
 * out of the full tensors on resume, so a checkpoint moves between sharded and unsharded
 * runs and across layouts.
 */
#ifndef MOERT_ZERO_H
#define MOERT_ZERO_H

struct moert_model;
struct moert_comm;
struct moert_run;

/* This rank's part of the optimizer state. Without sharding the ranges are the whole
 * regions and the bases their offsets, so the same tables serve both. */
struct moert_zero {
	int on;
	long long lo[2], hi[2]; /* element ranges of the dense [0] and expert [1] regions */
	long long base[2];      /* where each starts in the exp_avg / exp_avg_sq arenas */
	long long floats;       /* those arenas' size: ceil(dense / dp) + ceil(experts / edp) */
	long long fp32_end;     /* weights below it are kept in fp32 (all, unless the masters shard) */
	int master;             /* a bf16 step's masters shard too (r->master) */
};

/* Rank index of p's range of a region of n floats: [*lo, *hi). */
void moert_zero_part(long long n, int p, int index, long long *lo, long long *hi);
/* The part this rank keeps (comm NULL or a one-rank group: the whole region). */
void moert_zero_init(struct moert_zero *z, const struct moert_model *m, const struct moert_comm *c);
/* AdamW's tables over the pieces of the nblocks blocks (block_offsets [nblocks + 1]) that
 * this rank updates: weight, gradient, moment and bf16-copy pointers (bf16 NULL: none) and
 * the pieces' prefix sums (offsets [nblocks + 1]); an uncovered block is an empty piece. */
void moert_zero_tables(const struct moert_zero *z, const long *block_offsets, int nblocks, long long experts_begin,
		       float *params, float *master, float *grads, float *exp_avg, float *exp_avg_sq, void *params16,
		       float **p, float **g, float **m, float **v, void **p16, long *offsets);
/* The ranges of the p ranks of a region [begin, end) cut to the window [w0, w1): counts and
 * displacements (elements) for an all-gather-v; 0 when the window is empty. */
int moert_zero_window(long long begin, long long end, int p, long long w0, long long w1, long *counts, long *displs);
/* After AdamW on the CPU backend: every rank's updated ranges of the weights to every rank
 * of its group (MPI all-gather-v; dense over dp, experts over edp). */
void moert_zero_gather_weights(const struct moert_run *r, long long experts_begin, long long param_floats);
/* Checkpoints: a full [param_floats] moment arena from the ranks' parts (full is complete on
 * the ranks whose dp and edp index is 0, which are those train_state_save reads), and this
 * rank's part cut out of a full one. */
void moert_zero_expand(const struct moert_zero *z, const struct moert_model *m, struct moert_comm *c,
		       const float *part, float *full);
void moert_zero_cut(const struct moert_zero *z, const float *full, float *part);

#endif
