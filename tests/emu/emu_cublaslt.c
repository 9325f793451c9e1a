/* emu_cublaslt.c - libcublasLt.so.13 of the device emulator (tests/emu/README.md): the
 * cuBLASLt entry points runtime/device_cuda.c resolves, computing on host memory.
 *
 * cublasLtMatmul computes D = alpha op(A) op(B) + beta C as cuBLASLt defines it: column-major
 * unless a layout's CUBLASLT_MATRIX_LAYOUT_ORDER says row-major, layouts describing the
 * matrices as stored (before TRANSA/TRANSB), C read only when beta != 0. A and B are fp32 or
 * bf16 (read exactly), C and D fp32 or bf16 (bf16 results rounded to nearest even, once),
 * computed as fp32 copies with OpenBLAS's cblas_sgemm (CUBLAS_COMPUTE_32F: fp32 products
 * and sums, no TF32). What cuBLASLt would refuse is refused with its status: a type
 * combination it has no kernel for (fp32 A/B with a bf16 C), a compute or scale type other
 * than 32F, and, since nothing here emulates them, epilogues, batches and the other orders
 * (CUBLAS_STATUS_NOT_SUPPORTED, with a note on stderr saying which).
 *
 * Beyond the arithmetic, what a GPU would catch: every operand must lie inside one device
 * allocation of the emulated driver (a host pointer fails, as it would fault), and a
 * pointer must be as aligned as the preference the algorithm was chosen under said
 * (device_cuda.c keys its algorithm cache on alignment for this reason).
 *
 * cublasLt.h is included so every definition is checked against cuBLASLt's prototype.
 */
#define _GNU_SOURCE
#include <cublasLt.h>

#include <cblas.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu.h"

#define MAGIC_HANDLE 0x4c54484eu
#define MAGIC_DESC 0x4c544453u
#define MAGIC_LAYOUT 0x4c544c59u
#define MAGIC_PREF 0x4c545052u
#define MAGIC_ALGO 0x656d7541u /* "Aume": the emulator's one algorithm */

/* Descriptors live in cuBLASLt's own opaque sizes, so the ABI is the header's. */
struct lt_handle {
	unsigned magic;
};

struct lt_desc {
	unsigned magic;
	int32_t compute, scale, pointer_mode, transa, transb, transc;
	uint32_t epilogue;
};

struct lt_layout {
	unsigned magic;
	uint32_t type;
	int32_t order, batch;
	uint64_t rows, cols;
	int64_t ld, batch_stride, plane_offset;
};

struct lt_pref {
	unsigned magic;
	uint32_t search, reduction_mask;
	uint32_t align[4]; /* A, B, C, D */
	float max_waves;
	uint64_t max_workspace, impl_mask;
};

_Static_assert(sizeof(struct lt_desc) <= sizeof(cublasLtMatmulDescOpaque_t), "lt_desc does not fit");
_Static_assert(sizeof(struct lt_layout) <= sizeof(cublasLtMatrixLayoutOpaque_t), "lt_layout does not fit");
_Static_assert(sizeof(struct lt_pref) <= sizeof(cublasLtMatmulPreferenceOpaque_t), "lt_pref does not fit");

/* What the one algorithm records: the problem's types and transposes it was chosen for,
 * and the alignments the preference promised. */
enum { ALGO_MAGIC, ALGO_SIGNATURE, ALGO_ALIGN_A, ALGO_ALIGN_B, ALGO_ALIGN_C, ALGO_ALIGN_D };

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("moec device emulator: cuBLASLt: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* ---- status ---- */

static const struct {
	cublasStatus_t s;
	const char *name, *text;
} statuses[] = {
	{CUBLAS_STATUS_SUCCESS, "CUBLAS_STATUS_SUCCESS", "success"},
	{CUBLAS_STATUS_NOT_INITIALIZED, "CUBLAS_STATUS_NOT_INITIALIZED", "the library was not initialized"},
	{CUBLAS_STATUS_ALLOC_FAILED, "CUBLAS_STATUS_ALLOC_FAILED", "the resource allocation failed"},
	{CUBLAS_STATUS_INVALID_VALUE, "CUBLAS_STATUS_INVALID_VALUE", "an invalid numeric value was used as an argument"},
	{CUBLAS_STATUS_ARCH_MISMATCH, "CUBLAS_STATUS_ARCH_MISMATCH", "an absent device architectural feature is required"},
	{CUBLAS_STATUS_MAPPING_ERROR, "CUBLAS_STATUS_MAPPING_ERROR", "an access to GPU memory space failed"},
	{CUBLAS_STATUS_EXECUTION_FAILED, "CUBLAS_STATUS_EXECUTION_FAILED", "the GPU program failed to execute"},
	{CUBLAS_STATUS_INTERNAL_ERROR, "CUBLAS_STATUS_INTERNAL_ERROR", "an internal operation failed"},
	{CUBLAS_STATUS_NOT_SUPPORTED, "CUBLAS_STATUS_NOT_SUPPORTED", "the functionality requested is not supported"},
	{CUBLAS_STATUS_LICENSE_ERROR, "CUBLAS_STATUS_LICENSE_ERROR", "error detected trying to check the license"},
};

const char *CUBLASWINAPI cublasLtGetStatusName(cublasStatus_t status)
{
	for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
		if (statuses[i].s == status)
			return statuses[i].name;
	return "CUBLAS_STATUS_UNKNOWN";
}

const char *CUBLASWINAPI cublasLtGetStatusString(cublasStatus_t status)
{
	for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
		if (statuses[i].s == status)
			return statuses[i].text;
	return "unknown error";
}

size_t CUBLASWINAPI cublasLtGetVersion(void)
{
	return CUBLAS_VER_MAJOR * 10000 + CUBLAS_VER_MINOR * 100 + CUBLAS_VER_PATCH;
}

/* ---- handle ---- */

static struct lt_handle *handle_of(cublasLtHandle_t h)
{
	struct lt_handle *p = (struct lt_handle *)h;
	return p && p->magic == MAGIC_HANDLE ? p : NULL;
}

/* Matmuls done, [A/B bf16][C bf16], for MOERT_EMU_TRACE at exit. */
static unsigned long total_matmuls[2][2];

cublasStatus_t CUBLASWINAPI cublasLtCreate(cublasLtHandle_t *lightHandle)
{
	if (!lightHandle)
		return CUBLAS_STATUS_INVALID_VALUE;
	struct lt_handle *h = calloc(1, sizeof *h);
	if (!h)
		return CUBLAS_STATUS_ALLOC_FAILED;
	h->magic = MAGIC_HANDLE;
	*lightHandle = (cublasLtHandle_t)h;
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasLtDestroy(cublasLtHandle_t lightHandle)
{
	struct lt_handle *h = handle_of(lightHandle);
	if (!h)
		return CUBLAS_STATUS_NOT_INITIALIZED;
	h->magic = 0;
	free(h);
	return CUBLAS_STATUS_SUCCESS;
}

/* ---- descriptors ---- */

cublasStatus_t CUBLASWINAPI cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *matmulDesc, cublasComputeType_t computeType,
						     cudaDataType_t scaleType)
{
	if (!matmulDesc)
		return CUBLAS_STATUS_INVALID_VALUE;
	struct lt_desc *d = calloc(1, sizeof(cublasLtMatmulDescOpaque_t));
	if (!d)
		return CUBLAS_STATUS_ALLOC_FAILED;
	*d = (struct lt_desc){.magic = MAGIC_DESC, .compute = (int32_t)computeType, .scale = (int32_t)scaleType,
			      .pointer_mode = CUBLASLT_POINTER_MODE_HOST, .transa = CUBLAS_OP_N, .transb = CUBLAS_OP_N,
			      .transc = CUBLAS_OP_N, .epilogue = CUBLASLT_EPILOGUE_DEFAULT};
	*matmulDesc = (cublasLtMatmulDesc_t)d;
	return CUBLAS_STATUS_SUCCESS;
}

static struct lt_desc *desc_of(cublasLtMatmulDesc_t p)
{
	struct lt_desc *d = (struct lt_desc *)p;
	return d && d->magic == MAGIC_DESC ? d : NULL;
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t matmulDesc)
{
	struct lt_desc *d = desc_of(matmulDesc);
	if (!d)
		return CUBLAS_STATUS_INVALID_VALUE;
	d->magic = 0;
	free(d);
	return CUBLAS_STATUS_SUCCESS;
}

/* An attribute's value of size bytes into field, when size is the attribute's. */
static cublasStatus_t set_field(void *field, size_t field_size, const void *buf, size_t size)
{
	if (!buf || size != field_size)
		return CUBLAS_STATUS_INVALID_VALUE;
	memcpy(field, buf, size);
	return CUBLAS_STATUS_SUCCESS;
}

static int op_ok(int32_t op)
{
	return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C;
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t matmulDesc,
							   cublasLtMatmulDescAttributes_t attr, const void *buf,
							   size_t sizeInBytes)
{
	struct lt_desc *d = desc_of(matmulDesc);
	if (!d)
		return CUBLAS_STATUS_INVALID_VALUE;
	int32_t v32;
	cublasStatus_t s;
	switch (attr) {
	case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE:
		return set_field(&d->compute, sizeof d->compute, buf, sizeInBytes);
	case CUBLASLT_MATMUL_DESC_SCALE_TYPE:
		return set_field(&d->scale, sizeof d->scale, buf, sizeInBytes);
	case CUBLASLT_MATMUL_DESC_POINTER_MODE:
		return set_field(&d->pointer_mode, sizeof d->pointer_mode, buf, sizeInBytes);
	case CUBLASLT_MATMUL_DESC_TRANSA:
	case CUBLASLT_MATMUL_DESC_TRANSB:
	case CUBLASLT_MATMUL_DESC_TRANSC:
		if ((s = set_field(&v32, sizeof v32, buf, sizeInBytes)) != CUBLAS_STATUS_SUCCESS)
			return s;
		if (!op_ok(v32))
			return CUBLAS_STATUS_INVALID_VALUE;
		*(attr == CUBLASLT_MATMUL_DESC_TRANSA ? &d->transa : attr == CUBLASLT_MATMUL_DESC_TRANSB ? &d->transb
													  : &d->transc) = v32;
		return CUBLAS_STATUS_SUCCESS;
	case CUBLASLT_MATMUL_DESC_EPILOGUE:
		return set_field(&d->epilogue, sizeof d->epilogue, buf, sizeInBytes);
	case CUBLASLT_MATMUL_DESC_SM_COUNT_TARGET: /* a scheduling hint: nothing to honour here */
		return set_field(&v32, sizeof v32, buf, sizeInBytes);
	default:
		note("matmul descriptor attribute %d is not emulated", (int)attr);
		return CUBLAS_STATUS_NOT_SUPPORTED;
	}
}

cublasStatus_t CUBLASWINAPI cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *matLayout, cudaDataType type,
						       uint64_t rows, uint64_t cols, int64_t ld)
{
	if (!matLayout)
		return CUBLAS_STATUS_INVALID_VALUE;
	struct lt_layout *l = calloc(1, sizeof(cublasLtMatrixLayoutOpaque_t));
	if (!l)
		return CUBLAS_STATUS_ALLOC_FAILED;
	*l = (struct lt_layout){.magic = MAGIC_LAYOUT, .type = (uint32_t)type, .order = CUBLASLT_ORDER_COL, .batch = 1,
				.rows = rows, .cols = cols, .ld = ld};
	*matLayout = (cublasLtMatrixLayout_t)l;
	return CUBLAS_STATUS_SUCCESS;
}

static struct lt_layout *layout_of(cublasLtMatrixLayout_t p)
{
	struct lt_layout *l = (struct lt_layout *)p;
	return l && l->magic == MAGIC_LAYOUT ? l : NULL;
}

cublasStatus_t CUBLASWINAPI cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t matLayout)
{
	struct lt_layout *l = layout_of(matLayout);
	if (!l)
		return CUBLAS_STATUS_INVALID_VALUE;
	l->magic = 0;
	free(l);
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t matLayout,
							     cublasLtMatrixLayoutAttribute_t attr, const void *buf,
							     size_t sizeInBytes)
{
	struct lt_layout *l = layout_of(matLayout);
	if (!l)
		return CUBLAS_STATUS_INVALID_VALUE;
	switch (attr) {
	case CUBLASLT_MATRIX_LAYOUT_TYPE:
		return set_field(&l->type, sizeof l->type, buf, sizeInBytes);
	case CUBLASLT_MATRIX_LAYOUT_ORDER:
		return set_field(&l->order, sizeof l->order, buf, sizeInBytes);
	case CUBLASLT_MATRIX_LAYOUT_ROWS:
		return set_field(&l->rows, sizeof l->rows, buf, sizeInBytes);
	case CUBLASLT_MATRIX_LAYOUT_COLS:
		return set_field(&l->cols, sizeof l->cols, buf, sizeInBytes);
	case CUBLASLT_MATRIX_LAYOUT_LD:
		return set_field(&l->ld, sizeof l->ld, buf, sizeInBytes);
	case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT:
		return set_field(&l->batch, sizeof l->batch, buf, sizeInBytes);
	case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET:
		return set_field(&l->batch_stride, sizeof l->batch_stride, buf, sizeInBytes);
	case CUBLASLT_MATRIX_LAYOUT_PLANE_OFFSET:
		return set_field(&l->plane_offset, sizeof l->plane_offset, buf, sizeInBytes);
	default:
		note("matrix layout attribute %d is not emulated", (int)attr);
		return CUBLAS_STATUS_NOT_SUPPORTED;
	}
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *pref)
{
	if (!pref)
		return CUBLAS_STATUS_INVALID_VALUE;
	struct lt_pref *p = calloc(1, sizeof(cublasLtMatmulPreferenceOpaque_t));
	if (!p)
		return CUBLAS_STATUS_ALLOC_FAILED;
	/* cublasLt.h's defaults: no workspace, 256-byte alignment of everything */
	*p = (struct lt_pref){.magic = MAGIC_PREF, .reduction_mask = CUBLASLT_REDUCTION_SCHEME_MASK,
			      .align = {256, 256, 256, 256}, .impl_mask = UINT64_MAX};
	*pref = (cublasLtMatmulPreference_t)p;
	return CUBLAS_STATUS_SUCCESS;
}

static struct lt_pref *pref_of(cublasLtMatmulPreference_t p)
{
	struct lt_pref *q = (struct lt_pref *)p;
	return q && q->magic == MAGIC_PREF ? q : NULL;
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref)
{
	struct lt_pref *p = pref_of(pref);
	if (!p)
		return CUBLAS_STATUS_INVALID_VALUE;
	p->magic = 0;
	free(p);
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
								 cublasLtMatmulPreferenceAttributes_t attr,
								 const void *buf, size_t sizeInBytes)
{
	struct lt_pref *p = pref_of(pref);
	if (!p)
		return CUBLAS_STATUS_INVALID_VALUE;
	switch (attr) {
	case CUBLASLT_MATMUL_PREF_SEARCH_MODE:
		return set_field(&p->search, sizeof p->search, buf, sizeInBytes);
	case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES:
		return set_field(&p->max_workspace, sizeof p->max_workspace, buf, sizeInBytes);
	case CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK:
		return set_field(&p->reduction_mask, sizeof p->reduction_mask, buf, sizeInBytes);
	case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES:
	case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
	case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES:
	case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES:
		return set_field(&p->align[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES], sizeof p->align[0], buf,
				 sizeInBytes);
	case CUBLASLT_MATMUL_PREF_MAX_WAVES_COUNT:
		return set_field(&p->max_waves, sizeof p->max_waves, buf, sizeInBytes);
	case CUBLASLT_MATMUL_PREF_IMPL_MASK:
		return set_field(&p->impl_mask, sizeof p->impl_mask, buf, sizeInBytes);
	default:
		return CUBLAS_STATUS_INVALID_VALUE;
	}
}

/* ---- the problem ---- */

struct problem {
	const struct lt_desc *d;
	const struct lt_layout *a, *b, *c, *dd;
	uint64_t m, n, k;
	int ab_bf16, c_bf16;
};

static size_t type_size(uint32_t t)
{
	return t == CUDA_R_16BF ? 2 : 4;
}

static int layout_ld_ok(const struct lt_layout *l)
{
	uint64_t need = l->order == CUBLASLT_ORDER_ROW ? l->cols : l->rows;
	return l->ld >= 1 && (uint64_t)l->ld >= need;
}

/* Elements from a matrix's start to one past its last element, as stored. */
static uint64_t layout_span(const struct lt_layout *l)
{
	if (!l->rows || !l->cols)
		return 0;
	return l->order == CUBLASLT_ORDER_ROW ? (l->rows - 1) * (uint64_t)l->ld + l->cols
					      : (l->cols - 1) * (uint64_t)l->ld + l->rows;
}

static uint64_t packed_signature(const struct problem *p)
{
	return (uint64_t)p->a->type | (uint64_t)p->c->type << 8 | (uint64_t)p->dd->type << 16 |
	       (uint64_t)(p->d->transa != CUBLAS_OP_N) << 24 | (uint64_t)(p->d->transb != CUBLAS_OP_N) << 25 |
	       (uint64_t)(uint32_t)p->d->compute << 32;
}

/* The shapes and types of a matmul, checked as cuBLASLt checks them: INVALID_VALUE for what
 * cannot be a GEMM, NOT_SUPPORTED for a GEMM there is no kernel for (here: none emulated). */
static cublasStatus_t problem_make(cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t A, cublasLtMatrixLayout_t B,
				   cublasLtMatrixLayout_t C, cublasLtMatrixLayout_t D, struct problem *p)
{
	memset(p, 0, sizeof *p);
	p->d = desc_of(desc), p->a = layout_of(A), p->b = layout_of(B), p->c = layout_of(C), p->dd = layout_of(D);
	if (!p->d || !p->a || !p->b || !p->c || !p->dd)
		return CUBLAS_STATUS_INVALID_VALUE;
	const struct lt_desc *d = p->d;
	const struct lt_layout *ls[4] = {p->a, p->b, p->c, p->dd};
	for (int i = 0; i < 4; i++) {
		if (ls[i]->order != CUBLASLT_ORDER_COL && ls[i]->order != CUBLASLT_ORDER_ROW) {
			note("memory order %d is not emulated (column- and row-major are)", ls[i]->order);
			return CUBLAS_STATUS_NOT_SUPPORTED;
		}
		if (ls[i]->batch != 1 || ls[i]->plane_offset) {
			note("batched and planar-complex layouts are not emulated");
			return CUBLAS_STATUS_NOT_SUPPORTED;
		}
		if (!layout_ld_ok(ls[i]))
			return CUBLAS_STATUS_INVALID_VALUE;
	}
	/* op(A) is m x k, op(B) k x n, C and D m x n */
	int ta = d->transa != CUBLAS_OP_N, tb = d->transb != CUBLAS_OP_N;
	p->m = ta ? p->a->cols : p->a->rows;
	p->k = ta ? p->a->rows : p->a->cols;
	uint64_t kb = tb ? p->b->cols : p->b->rows;
	p->n = tb ? p->b->rows : p->b->cols;
	if (kb != p->k || p->c->rows != p->m || p->c->cols != p->n || p->dd->rows != p->m || p->dd->cols != p->n)
		return CUBLAS_STATUS_INVALID_VALUE;
	if (d->transc != CUBLAS_OP_N || d->epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
		note("TRANSC and epilogues are not emulated");
		return CUBLAS_STATUS_NOT_SUPPORTED;
	}
	if (d->pointer_mode != CUBLASLT_POINTER_MODE_HOST && d->pointer_mode != CUBLASLT_POINTER_MODE_DEVICE) {
		note("pointer mode %d is not emulated (host and device scalars are)", d->pointer_mode);
		return CUBLAS_STATUS_NOT_SUPPORTED;
	}
	/* CUBLAS_COMPUTE_32F with fp32 scale: fp32 A/B with fp32 C/D, bf16 A/B with bf16 or fp32 C/D */
	int ab = p->a->type == CUDA_R_16BF ? 1 : p->a->type == CUDA_R_32F ? 0 : -1;
	int cd = p->c->type == CUDA_R_16BF ? 1 : p->c->type == CUDA_R_32F ? 0 : -1;
	if (d->compute != CUBLAS_COMPUTE_32F || d->scale != CUDA_R_32F || ab < 0 || cd < 0 || p->b->type != p->a->type ||
	    p->dd->type != p->c->type || (!ab && cd)) {
		note("compute %d, scale %d, A %u, B %u, C %u, D %u: not a combination cuBLASLt has (or the emulator "
		     "emulates: 32F compute and scale; fp32 A/B with fp32 C/D; bf16 A/B with bf16 or fp32 C/D)",
		     d->compute, d->scale, p->a->type, p->b->type, p->c->type, p->dd->type);
		return CUBLAS_STATUS_NOT_SUPPORTED;
	}
	p->ab_bf16 = ab;
	p->c_bf16 = cd;
	return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t lightHandle,
							   cublasLtMatmulDesc_t operationDesc,
							   cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc,
							   cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc,
							   cublasLtMatmulPreference_t preference, int requestedAlgoCount,
							   cublasLtMatmulHeuristicResult_t heuristicResultsArray[],
							   int *returnAlgoCount)
{
	if (!handle_of(lightHandle))
		return CUBLAS_STATUS_NOT_INITIALIZED;
	const struct lt_pref *pref = pref_of(preference);
	if (requestedAlgoCount <= 0 || !heuristicResultsArray || !returnAlgoCount || !pref)
		return CUBLAS_STATUS_INVALID_VALUE;
	struct problem p;
	cublasStatus_t s = problem_make(operationDesc, Adesc, Bdesc, Cdesc, Ddesc, &p);
	if (s != CUBLAS_STATUS_SUCCESS)
		return s;
	*returnAlgoCount = 0;
	/* no kernel reads its operands in pieces smaller than an element */
	size_t es[4] = {type_size(p.a->type), type_size(p.b->type), type_size(p.c->type), type_size(p.dd->type)};
	for (int i = 0; i < 4; i++)
		if (pref->align[i] < es[i])
			return CUBLAS_STATUS_SUCCESS;
	cublasLtMatmulHeuristicResult_t *r = &heuristicResultsArray[0];
	memset(r, 0, sizeof *r);
	r->algo.data[ALGO_MAGIC] = MAGIC_ALGO;
	r->algo.data[ALGO_SIGNATURE] = packed_signature(&p);
	for (int i = 0; i < 4; i++)
		r->algo.data[ALGO_ALIGN_A + i] = pref->align[i];
	r->workspaceSize = 0;
	r->state = CUBLAS_STATUS_SUCCESS;
	r->wavesCount = 1.0f;
	*returnAlgoCount = 1;
	return CUBLAS_STATUS_SUCCESS;
}

/* ---- the product ---- */


/* Offset in elements of (i, j) in a layout. */
static size_t at(const struct lt_layout *l, uint64_t i, uint64_t j)
{
	return l->order == CUBLASLT_ORDER_ROW ? (size_t)(i * (uint64_t)l->ld + j) : (size_t)(j * (uint64_t)l->ld + i);
}

/* The stored matrix as a dense column-major fp32 copy (rows x cols, ld rows). */
static float *unpack(const struct lt_layout *l, const void *src)
{
	float *out = malloc((size_t)(l->rows * l->cols > 0 ? l->rows * l->cols : 1) * sizeof *out);
	if (!out)
		return NULL;
	for (uint64_t j = 0; j < l->cols; j++)
		for (uint64_t i = 0; i < l->rows; i++)
			out[j * l->rows + i] = l->type == CUDA_R_16BF ? bf16_to_f32(((const uint16_t *)src)[at(l, i, j)])
								      : ((const float *)src)[at(l, i, j)];
	return out;
}

static void pack(const struct lt_layout *l, const float *src, void *dst)
{
	for (uint64_t j = 0; j < l->cols; j++)
		for (uint64_t i = 0; i < l->rows; i++) {
			float v = src[j * l->rows + i];
			if (l->type == CUDA_R_16BF)
				((uint16_t *)dst)[at(l, i, j)] = f32_to_bf16(v);
			else
				((float *)dst)[at(l, i, j)] = v;
		}
}

/* What a GPU would fault on or refuse: operands outside device memory, and pointers less
 * aligned than the algorithm was chosen for. */
static cublasStatus_t operands_ok(const struct problem *p, const cublasLtMatmulAlgo_t *algo, const void *ptr[4],
				  int read_c)
{
	static const char *names[4] = {"A", "B", "C", "D"};
	const struct lt_layout *ls[4] = {p->a, p->b, p->c, p->dd};
	emu_range_fn *in_device = emu_device_range();
	if (algo && (algo->data[ALGO_MAGIC] != MAGIC_ALGO || algo->data[ALGO_SIGNATURE] != packed_signature(p))) {
		note("the algorithm was not chosen by cublasLtMatmulAlgoGetHeuristic for this problem's types and transposes");
		return CUBLAS_STATUS_INVALID_VALUE;
	}
	for (int i = 0; i < 4; i++) {
		if (i == 2 && !read_c)
			continue;
		size_t bytes = (size_t)layout_span(ls[i]) * type_size(ls[i]->type);
		if (!bytes)
			continue;
		if (!ptr[i]) {
			note("%s is NULL", names[i]);
			return CUBLAS_STATUS_INVALID_VALUE;
		}
		if (algo && (uintptr_t)ptr[i] % algo->data[ALGO_ALIGN_A + i]) {
			note("%s at %p is not %llu-byte aligned, as the preference the algorithm was chosen under said",
			     names[i], ptr[i], (unsigned long long)algo->data[ALGO_ALIGN_A + i]);
			return CUBLAS_STATUS_INVALID_VALUE;
		}
		if (in_device && !in_device(ptr[i], bytes)) {
			note("%s (%p, %zu bytes) is not inside one device allocation: a GPU would fault here", names[i],
			     ptr[i], bytes);
			return CUBLAS_STATUS_EXECUTION_FAILED;
		}
	}
	return CUBLAS_STATUS_SUCCESS;
}

/* D = alpha op(A) op(B) + beta C on fp32 copies; C is read only when beta != 0. */
static cublasStatus_t compute(const struct problem *p, float alpha, float beta, const void *A, const void *B,
			      const void *C, void *D)
{
	const uint64_t m = p->m, n = p->n, k = p->k;
	float *a = unpack(p->a, A), *b = unpack(p->b, B);
	float *c = beta != 0.0f ? unpack(p->c, C) : calloc((size_t)(m * n > 0 ? m * n : 1), sizeof *c);
	cublasStatus_t s = CUBLAS_STATUS_ALLOC_FAILED;
	if (a && b && c) {
		if (k)
			cblas_sgemm(CblasColMajor, p->d->transa != CUBLAS_OP_N ? CblasTrans : CblasNoTrans,
				    p->d->transb != CUBLAS_OP_N ? CblasTrans : CblasNoTrans, (int)m, (int)n, (int)k, alpha,
				    a, (int)(p->a->rows ? p->a->rows : 1), b, (int)(p->b->rows ? p->b->rows : 1), beta, c,
				    (int)(m ? m : 1));
		else
			for (uint64_t i = 0; i < m * n; i++)
				c[i] *= beta;
		pack(p->dd, c, D);
		s = CUBLAS_STATUS_SUCCESS;
	}
	free(a);
	free(b);
	free(c);
	return s;
}

cublasStatus_t CUBLASWINAPI cublasLtMatmul(cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t computeDesc,
					   const void *alpha, const void *A, cublasLtMatrixLayout_t Adesc, const void *B,
					   cublasLtMatrixLayout_t Bdesc, const void *beta, const void *C,
					   cublasLtMatrixLayout_t Cdesc, void *D, cublasLtMatrixLayout_t Ddesc,
					   const cublasLtMatmulAlgo_t *algo, void *workspace, size_t workspaceSizeInBytes,
					   cudaStream_t stream)
{
	if (!handle_of(lightHandle))
		return CUBLAS_STATUS_NOT_INITIALIZED;
	if (!alpha || !beta)
		return CUBLAS_STATUS_INVALID_VALUE;
	struct problem p;
	cublasStatus_t s = problem_make(computeDesc, Adesc, Bdesc, Cdesc, Ddesc, &p);
	if (s != CUBLAS_STATUS_SUCCESS)
		return s;
	/* in place (C == D) needs one layout for both, as cuBLASLt requires */
	if (C == D && (p.c->order != p.dd->order || p.c->ld != p.dd->ld))
		return CUBLAS_STATUS_INVALID_VALUE;
	float al, be; /* scale type fp32; host or device pointers are both host memory here */
	memcpy(&al, alpha, sizeof al);
	memcpy(&be, beta, sizeof be);
	const void *ptr[4] = {A, B, C, D};
	if ((s = operands_ok(&p, algo, ptr, be != 0.0f)) != CUBLAS_STATUS_SUCCESS)
		return s;
	if (!p.m || !p.n)
		return CUBLAS_STATUS_SUCCESS;
	s = compute(&p, al, be, A, B, C, D);
	if (s == CUBLAS_STATUS_SUCCESS)
		total_matmuls[p.ab_bf16][p.c_bf16]++;
	return s;
}

__attribute__((destructor)) static void emu_cublaslt_report(void)
{
	if (!emu_trace())
		return;
	fprintf(stderr, "moec emu: libcublasLt.so.13: %lu matmuls (fp32: %lu; bf16 A/B: %lu with fp32 C, %lu with bf16 C)\n",
		total_matmuls[0][0] + total_matmuls[1][0] + total_matmuls[1][1], total_matmuls[0][0], total_matmuls[1][0],
		total_matmuls[1][1]);
}
