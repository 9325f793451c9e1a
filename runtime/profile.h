/* profile.h - `train --profile`: where a step's time goes, kernel by kernel.
 *
 * The generated step brackets every kernel call and GEMM with moert_prof_begin/end (a
 * no-op unless --profile). On the CPU backend each call is timed by the clock; on the CUDA
 * backend by two events around it, read at once — which serializes the GPU with the host,
 * so a profiled step is slower than a plain one, but each kernel's own time is exact. The
 * report lists every kernel (and the three GEMM kinds) with calls, time per step and share,
 * and the MoE layers' part (the router_* and moe_* kernels): milliseconds per layer and the
 * expert GEMMs' TFLOP/s counted as 6 * k * H * I * 3 per token (forward + backward).
 * The first step of a run pays one-time costs (cuBLASLt's algorithm queries and the lazy
 * loading of its kernels, first touches of the arenas), so when more steps follow the
 * trainer resets the table after it and the report covers the rest.
 */
#ifndef MOERT_PROFILE_H
#define MOERT_PROFILE_H
#include <stdio.h>

struct moert_model;
struct moert_run;

struct moert_profile {
	int n;              /* kernels + 3 GEMM kinds */
	double *ms;         /* time per id */
	long *calls;
	double t0;          /* CPU: the clock at begin */
};

struct moert_profile *moert_prof_new(const struct moert_model *m);
/* Forget what was timed so far (the warm-up step). */
void moert_prof_reset(struct moert_profile *p);
void moert_prof_free(struct moert_profile *p);
void moert_prof_begin(const struct moert_run *r);
/* id: a kernel's index in the model's kernel list, or n_kernels + 0/1/2 for the NT/NN/TN GEMMs */
void moert_prof_end(const struct moert_run *r, int id);
/* The table, over `steps` optimizer steps (each tokens_per_step tokens); warmup_skipped:
 * the run's first step was timed but reset (said in the title). */
void moert_prof_report(const struct moert_profile *p, const struct moert_model *m, long steps, int warmup_skipped,
		       FILE *f);

#endif
