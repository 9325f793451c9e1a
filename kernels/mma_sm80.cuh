// mma_sm80.cuh - the inline-PTX helpers of the attention templates (attention_fwd.cu,
// attention_bwd.cu): ex2.approx, cp.async, ldmatrix, mma.sync.m16n8k16 bf16 and cvt to
// bf16x2 (sm_80+; the bf16 ones are used only when ACT_BF16). Included after moec_device.cuh.
// tests/kernels/attention_emu/transform.py drops the include and emu.h supplies CPU versions
// under the same names, so keep the two in step. moe_gemm.cuh has its own variants (volatile
// mma, bool zero-fill, templated wait), not the same semantics, so they are not shared.
#ifndef MOEC_MMA_SM80_CUH
#define MOEC_MMA_SM80_CUH

__device__ __forceinline__ float attn_exp2(float x)
{
	float y;
	asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
	return y;
}

__device__ __forceinline__ unsigned attn_smem_addr(const void *p)
{
	return (unsigned)__cvta_generic_to_shared(p);
}

// 16 (or 4) bytes global -> shared, asynchronously; src_bytes 0 writes zeros (rows past T).
__device__ __forceinline__ void attn_cp_async16(void *dst, const void *src, int src_bytes)
{
	asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(attn_smem_addr(dst)), "l"(src), "r"(src_bytes)
		     : "memory");
}

__device__ __forceinline__ void attn_cp_async4(void *dst, const void *src, int src_bytes)
{
	asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(attn_smem_addr(dst)), "l"(src), "r"(src_bytes)
		     : "memory");
}

__device__ __forceinline__ void attn_cp_async_commit(void)
{
	asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// Wait until at most one committed group (the tile in flight) is still pending.
__device__ __forceinline__ void attn_cp_async_wait_one(void)
{
	asm volatile("cp.async.wait_group 1;\n" ::: "memory");
}

__device__ __forceinline__ void attn_cp_async_wait_all(void)
{
	asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

// Four 8x8 b16 matrices; lane l supplies the row address of matrix l / 8, row l % 8.
__device__ __forceinline__ void attn_ldsm_x4(unsigned r[4], const bf16 *p)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
		     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
		     : "r"(attn_smem_addr(p)));
}

__device__ __forceinline__ void attn_ldsm_x4_trans(unsigned r[4], const bf16 *p)
{
	asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
		     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
		     : "r"(attn_smem_addr(p)));
}

// c (16x8 fp32) += a (16x16 bf16, row) * b (16x8 bf16, col).
__device__ __forceinline__ void attn_mma(float c[4], const unsigned a[4], unsigned b0, unsigned b1)
{
	asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
	    "{%0, %1, %2, %3};\n"
	    : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
	    : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats -> bf16x2, lo in the low half (the lower column of a fragment pair).
__device__ __forceinline__ unsigned attn_pack(float lo, float hi)
{
	unsigned r;
	asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
	return r;
}

#endif
