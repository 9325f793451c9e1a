// emu.h - run CUDA kernel templates on the CPU: one fiber per thread, warp collectives
// (shfl, ldmatrix, mma.m16n8k16 bf16, syncwarp) and __syncthreads as cooperative barriers,
// cp.async copies deferred to the wait that must complete them.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>

#define __global__
#define __device__
#define __forceinline__ static inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static

struct emu_bf16 { uint16_t bits; };
static inline float emu_bf2f(emu_bf16 h) { uint32_t u = (uint32_t)h.bits << 16; float f; memcpy(&f, &u, 4); return f; }
static inline emu_bf16 emu_f2bf(float f)
{
	uint32_t u; memcpy(&u, &f, 4); emu_bf16 h;
	if ((u & 0x7fffffffu) > 0x7f800000u) { h.bits = (uint16_t)((u >> 16) | 0x40); return h; }
	u += 0x7fffu + ((u >> 16) & 1u); h.bits = (uint16_t)(u >> 16); return h;
}
struct uint4 { unsigned x, y, z, w; };
struct alignas(16) float4 { float x, y, z, w; };
struct emu_dim { unsigned x, y, z; };

// ---- runtime (emu_rt.cpp) ----
extern emu_dim emu_blockIdx_v, emu_gridDim_v, emu_blockDim_v;
emu_dim *emu_threadIdx_p(void);
#define threadIdx (*emu_threadIdx_p())
#define blockIdx emu_blockIdx_v
#define gridDim emu_gridDim_v
#define blockDim emu_blockDim_v
extern unsigned char *emu_dyn_smem;
extern unsigned emu_dyn_smem_size;
void emu_syncthreads(void);
void emu_warp_barrier(void);
int emu_lane(void);
int emu_warp(void);
void emu_trap(void);
struct emu_slot { const void *p; uint32_t u[8]; float f[8]; };
emu_slot *emu_warp_slots(void); // this warp's 32 slots
void emu_launch(emu_dim grid, emu_dim block, unsigned dyn_smem, std::function<void()> body);
// cp.async per thread
void emu_cp_async(void *dst, const void *src, int bytes, int src_bytes);
void emu_cp_commit(void);
void emu_cp_wait(int n);

#define __syncthreads() emu_syncthreads()
static inline void __syncwarp(unsigned = 0xffffffffu) { emu_warp_barrier(); }
static inline float __shfl_xor_sync(unsigned, float v, int m)
{
	emu_slot *s = emu_warp_slots(); int l = emu_lane();
	s[l].f[0] = v; emu_warp_barrier(); float r = s[l ^ m].f[0]; emu_warp_barrier(); return r;
}
static inline int __ldg(const int *p) { return *p; }
static inline float __ldg(const float *p) { return *p; }
static inline float __int_as_float(int x) { float f; memcpy(&f, &x, 4); return f; }
static inline float __int_as_float(unsigned x) { float f; memcpy(&f, &x, 4); return f; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline int atomicMax(int *p, int v) { int o = *p; if (v > o) *p = v; return o; }
static inline int atomicMin(int *p, int v) { int o = *p; if (v < o) *p = v; return o; }

// ---- the helpers the templates define with inline PTX, emulated ----
static inline float attn_exp2(float x) { return exp2f(x); }
static inline void attn_cp_async16(void *dst, const void *src, int src_bytes) { emu_cp_async(dst, src, 16, src_bytes); }
static inline void attn_cp_async4(void *dst, const void *src, int src_bytes) { emu_cp_async(dst, src, 4, src_bytes); }
static inline void attn_cp_async_commit(void) { emu_cp_commit(); }
static inline void attn_cp_async_wait_all(void) { emu_cp_wait(0); }
static inline void attn_cp_async_wait_one(void) { emu_cp_wait(1); }
static inline uint32_t emu_pack(uint16_t lo, uint16_t hi) { return (uint32_t)lo | ((uint32_t)hi << 16); }
static inline unsigned attn_pack(float lo, float hi) { return emu_pack(emu_f2bf(lo).bits, emu_f2bf(hi).bits); }
static inline void emu_ldsm(unsigned r[4], const emu_bf16 *p, bool trans)
{
	emu_slot *s = emu_warp_slots(); int l = emu_lane();
	s[l].p = p; emu_warp_barrier();
	for (int i = 0; i < 4; i++) {
		if (!trans) {
			const emu_bf16 *row = (const emu_bf16 *)s[8 * i + l / 4].p;
			r[i] = emu_pack(row[2 * (l % 4)].bits, row[2 * (l % 4) + 1].bits);
		} else {
			const emu_bf16 *r0 = (const emu_bf16 *)s[8 * i + 2 * (l % 4)].p, *r1 = (const emu_bf16 *)s[8 * i + 2 * (l % 4) + 1].p;
			r[i] = emu_pack(r0[l / 4].bits, r1[l / 4].bits);
		}
		// ldmatrix requires 16-byte aligned row addresses
		if (((uintptr_t)s[8 * i + (l & 7)].p & 15) != 0) { fprintf(stderr, "ldmatrix: unaligned row address\n"); abort(); }
	}
	emu_warp_barrier();
}
static inline void attn_ldsm_x4(unsigned r[4], const emu_bf16 *p) { emu_ldsm(r, p, false); }
static inline void attn_ldsm_x4_trans(unsigned r[4], const emu_bf16 *p) { emu_ldsm(r, p, true); }
static inline float emu_half(uint32_t reg, int hi) { emu_bf16 h; h.bits = (uint16_t)(hi ? reg >> 16 : reg & 0xffff); return emu_bf2f(h); }
// mma.sync.m16n8k16.row.col.f32.bf16.bf16.f32 (PTX ISA fragment layouts)
static inline void attn_mma(float c[4], const unsigned a[4], unsigned b0, unsigned b1)
{
	emu_slot *s = emu_warp_slots(); int l = emu_lane();
	for (int i = 0; i < 4; i++) s[l].u[i] = a[i];
	s[l].u[4] = b0; s[l].u[5] = b1;
	emu_warp_barrier();
	const int g = l >> 2, t = l & 3;
	float d[4];
	for (int e = 0; e < 4; e++) {
		const int row = g + (e >= 2 ? 8 : 0), col = 2 * t + (e & 1);
		double acc = c[e];
		for (int k = 0; k < 16; k++) {
			const int la = (row % 8) * 4 + (k % 8) / 2, ra = (row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
			const int lb = col * 4 + (k % 8) / 2, rb = k >= 8 ? 5 : 4;
			acc += (double)emu_half(s[la].u[ra], k & 1) * emu_half(s[lb].u[rb], k & 1);
		}
		d[e] = (float)acc;
	}
	emu_warp_barrier();
	for (int e = 0; e < 4; e++) c[e] = d[e];
}
