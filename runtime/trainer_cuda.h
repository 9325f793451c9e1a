/* trainer_cuda.h - what the CUDA backend of a generated step calls besides its kernels
 * (model.c's CUDA macros), and how the trainer puts a run on the GPU. Host code only: no
 * CUDA header is needed to include it; the driver is loaded at run time (device_cuda.h).
 *
 * Failures here are fatal with a message naming the operation (a step cannot go on after a
 * failed copy or launch).
 */
#ifndef MOERT_TRAINER_CUDA_H
#define MOERT_TRAINER_CUDA_H
#include <stddef.h>

#include "trainer.h"

/* gemm.h's moert_mm on the device (cuBLASLt); A, B, C are device addresses; A and B must
 * have the same type (the step casts an fp32 operand to bf16 first). */
void moert_cuda_step_mm(const struct moert_run *r, int op, int M, int N, int K, const void *A, int a16, const void *B,
			int b16, void *C, int c16, float beta);
/* Copy n floats at activation offset off to r->host_buf (waits) and return it. */
const float *moert_cuda_step_get(const struct moert_run *r, long off, long n);
/* Copy bytes from host src to activation offset off (stream-ordered). */
void moert_cuda_step_put(const struct moert_run *r, long off, const void *src, long bytes);
/* The batch's four [tokens] arrays to activation offset off; the device addresses out. */
void moert_cuda_step_batch(const struct moert_run *r, const struct moert_batch *b, long off, int tokens,
			   const int **ids, const int **labels, const int **pos, const int **doc);
/* With r->logits_out: copy a [tokens, c] chunk of logits at vocab column v0 into it. */
void moert_cuda_step_logits(const struct moert_run *r, const float *chunk, int vocab, int v0, int tokens, int c);

/* Several ranks (r->comm->nccl attached): comm.h's collectives on device buffers, as the
 * CPU macros do them over MPI. group and kind are enum moert_group / moert_traffic. */
void moert_cuda_step_reduce(const struct moert_run *r, int group, int kind, float *x, long n);
void moert_cuda_step_tp_sum(const struct moert_run *r, void *x, long n, int bf16);
void moert_cuda_step_tp_gather(const struct moert_run *r, void *x, long bytes);
/* After AdamW under parallel.shard_optimizer: every rank's updated weight ranges to its dp
 * (dense) and edp (expert) group over NCCL (zero.h). */
void moert_cuda_step_zero_gather(const struct moert_run *r, long long experts_begin, long long param_floats);
/* ep.h's route from the device's counts [E] and offsets [E + 1] (copied to the host: NCCL
 * takes the all-to-all's sizes from there; the route's offsets and regroup tables go back up
 * in the same place), and the rows' dispatch (combine 0) or combine (1) over NCCL with the
 * regroup as one launch of the step's ep_regroup kernel: regroup, which the generated step
 * supplies (it alone knows the instance), moves rows rows of width floats from src to dst
 * by the device table (kernels/ep_regroup.cu). */
typedef void (*moert_ep_regroup_fn)(const struct moert_run *r, const int *table, const void *src, void *dst, int rows,
				    int width);
void moert_cuda_step_ep_route(const struct moert_run *r, int layer, const int *counts, const int *offsets);
void moert_cuda_step_ep(const struct moert_run *r, int layer, int combine, const void *in, int width, float *tmp,
			void *out, moert_ep_regroup_fn regroup);

/* cuLaunchKernel of the driver the runtime loaded (launch.h's MOEC_CU_LAUNCH_KERNEL). */
int moert_cu_launch(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
		    unsigned smem, void *stream, void **args, void **extra);

/* The trainer's side. First this rank's GPU (its local rank's) and, with several ranks,
 * NCCL: the unique id over MPI or torchrun's rendezvous, the layout's communicators, and
 * comm->nccl attached so comm.h's host collectives use it too. Fatal on failure. */
struct moert_nccl;
struct moert_cuda *moert_cuda_rank_open(const struct moert_model *m, struct moert_comm *comm, struct moert_nccl *nccl);
/* Then, on device d: load every kernel, allocate the device arenas (zeroed), copy the host
 * run's weights and moments up, and run the model's setup. dev is filled with device
 * addresses; it shares host's comm and expert-parallel routes. moert_cuda_run_close
 * closes d. */
void moert_cuda_run_open(const struct moert_model *m, const struct moert_run *host, struct moert_run *dev,
			 struct moert_cuda *d);
/* Copy weights and moments down (before a checkpoint), or gradients too (for --dump). */
void moert_cuda_run_download(const struct moert_model *m, const struct moert_run *dev, struct moert_run *host,
			     int with_grads);
/* Zero the gradients before an optimizer step: m->zero_ranges, or with all the whole arena. */
void moert_cuda_run_zero_grads(const struct moert_model *m, const struct moert_run *dev, int all);
void moert_cuda_run_close(struct moert_run *dev);

#endif
