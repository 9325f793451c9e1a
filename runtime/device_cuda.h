/* device_cuda.h - one NVIDIA GPU through the CUDA driver API and cuBLASLt, both loaded at
 * run time with dlopen, so every binary starts (and the CPU backend runs) on machines with
 * no driver; only moert_cuda_open fails there, with a message saying so.
 *
 * What the CUDA backend of a trainer needs and nothing more: the primary context of one
 * device, one stream, device memory (the trainer allocates one arena up front, so nothing
 * is allocated in the step loop), copies, cubins loaded from memory (the trainer embeds
 * them) with their kernels' dynamic shared memory limits raised, launches, events for
 * timing, and dense GEMMs on cuBLASLt with the same row-major conventions as gemm.h.
 *
 * Device pointers are CUdeviceptr values (uint64_t). Every function returns 0, or -1 with
 * err filled ("cuMemAlloc(1.5 GiB): CUDA_ERROR_OUT_OF_MEMORY: out of memory"); none exits.
 */
#ifndef MOERT_DEVICE_CUDA_H
#define MOERT_DEVICE_CUDA_H
#include <stddef.h>
#include <stdint.h>

struct moert_cuda;
typedef uint64_t moert_dptr;
typedef struct moert_cuda_fn *moert_cuda_fn; /* a CUfunction */

/* dlopen libcuda.so.1 (and libcublasLt.so.*), cuInit, the device's primary context, one
 * non-blocking stream. ordinal: the device index (the local rank under a launcher). */
int moert_cuda_open(int ordinal, struct moert_cuda **out, char *err, size_t errlen);
void moert_cuda_close(struct moert_cuda *d);
/* A CUresult as "CUDA_ERROR_ILLEGAL_ADDRESS: an illegal memory access ...", with what to do
 * where the error has a usual cause. */
void moert_cuda_result_text(const struct moert_cuda *d, int rc, char *buf, size_t n);
/* "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 79.1 GiB" */
const char *moert_cuda_describe(const struct moert_cuda *d);
/* Compute capability as major * 10 + minor (90 for sm_90). */
int moert_cuda_cc(const struct moert_cuda *d);
/* The driver's cuLaunchKernel, for launch.h's stubs (MOEC_CU_LAUNCH_KERNEL). */
void *moert_cuda_launch_kernel_fn(const struct moert_cuda *d);
/* The stream every operation here is queued on (a CUstream). */
void *moert_cuda_stream(const struct moert_cuda *d);

int moert_cuda_alloc(struct moert_cuda *d, size_t bytes, moert_dptr *out, char *err, size_t errlen);
void moert_cuda_free(struct moert_cuda *d, moert_dptr p);
/* Bytes moert_cuda_alloc has handed out (the trainer's arenas and workspaces; not the CUDA
 * context's, cuBLASLt's or NCCL's own). */
size_t moert_cuda_allocated(const struct moert_cuda *d);
/* Stream-ordered copies and fill; moert_cuda_sync waits for everything queued. */
int moert_cuda_h2d(struct moert_cuda *d, moert_dptr dst, const void *src, size_t bytes, char *err, size_t errlen);
int moert_cuda_d2h(struct moert_cuda *d, void *dst, moert_dptr src, size_t bytes, char *err, size_t errlen);
int moert_cuda_d2d(struct moert_cuda *d, moert_dptr dst, moert_dptr src, size_t bytes, char *err, size_t errlen);
int moert_cuda_memset(struct moert_cuda *d, moert_dptr dst, int byte, size_t bytes, char *err, size_t errlen);
int moert_cuda_sync(struct moert_cuda *d, char *err, size_t errlen);

/* Load a cubin image (kept by the caller until close) and get kernel `name` from it; its
 * dynamic shared memory limit is raised to dyn_smem bytes when that exceeds 48 KiB. */
int moert_cuda_kernel(struct moert_cuda *d, const void *cubin, size_t size, const char *name, unsigned dyn_smem,
		      moert_cuda_fn *out, char *err, size_t errlen);
int moert_cuda_launch(struct moert_cuda *d, moert_cuda_fn f, const unsigned grid[3], const unsigned block[3],
		      unsigned smem, void **args, char *err, size_t errlen);

/* Elapsed milliseconds between two points of the stream: mark, run, elapsed. */
int moert_cuda_mark(struct moert_cuda *d, int slot, char *err, size_t errlen); /* slot 0..7 */
int moert_cuda_elapsed_ms(struct moert_cuda *d, int from_slot, int to_slot, float *ms, char *err, size_t errlen);

/* Dense GEMMs on cuBLASLt, row-major, as gemm.h:
 *   MOERT_MM_NT  C[M,N] = A[M,K] B[N,K]^T + beta C
 *   MOERT_MM_NN  C[M,N] = A[M,K] B[K,N]   + beta C
 *   MOERT_MM_TN  C[M,N] = A[K,M]^T B[K,N] + beta C
 * ab_bf16: A and B are bf16 (else fp32); c_bf16: C is bf16 (else fp32). Compute in fp32
 * (CUBLAS_COMPUTE_32F; with fp32 inputs no TF32). The algorithm is chosen once per
 * (op, M, N, K, types, beta != 0) by the heuristic and cached; the workspace is allocated once. */
enum moert_mm_op { MOERT_MM_NT, MOERT_MM_NN, MOERT_MM_TN };
int moert_cuda_mm(struct moert_cuda *d, enum moert_mm_op op, int M, int N, int K, moert_dptr A, moert_dptr B,
		  moert_dptr C, float beta, int ab_bf16, int c_bf16, char *err, size_t errlen);
/* Load cuBLASLt, create its handle and allocate the 32 MiB workspace now rather than at
 * the first moert_cuda_mm (which calls this itself), so a missing or mismatched cuBLASLt
 * is reported before training starts. Idempotent. Supported types: fp32 A/B with fp32 C,
 * bf16 A/B with fp32 or bf16 C (fp32 A/B with a bf16 C is not a cuBLASLt combination). */
int moert_cuda_mm_init(struct moert_cuda *d, char *err, size_t errlen);

#endif
