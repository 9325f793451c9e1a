// cuda_bf16.h (emulator) - runs moec's MoE routing templates (router_fwd/bwd, moe_count, moe_scan,
// moe_route, moe_capacity, moe_permute/_bwd, moe_combine/_bwd) on the CPU, so that their index
// math, warp collectives, block scans, radix select and last-block-done reduction can be
// compared with the CPU twins on a machine without a GPU. It shadows the real <cuda_bf16.h>
// (first on the include path) and supplies the types and intrinsics those templates use:
//   - a block's threads are fibers (ucontext); a runnable fiber is picked at random every time
//     one blocks, so code that relies on an order the hardware does not promise (a missing
//     __syncthreads, a warp reading shared memory that another lane of it rewrites with no
//     shuffle in between under independent thread scheduling) tends to fail;
//   - __syncthreads and every warp collective (__shfl_*_sync, __ballot_sync, __reduce_*_sync)
//     are barriers over the live threads; a collective with exited lanes and a barrier that
//     can never complete (deadlock) are reported as emulator errors;
//   - blocks run one after another in a random order, so __threadfence is a no-op and atomics
//     are plain read-modify-writes (the last-block ticket sees every other block's writes);
//   - __shared__ variables are function statics, filled with 0xff bytes (NaN, -1) before every
//     block after the first (run.sh registers them).
// Not a timing model.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <ucontext.h>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__
#define __shared__ static
#define __CUDACC__ 1

struct dim3e { unsigned int x, y, z; };
struct alignas(16) uint4 { unsigned int x, y, z, w; };
inline uint4 make_uint4(unsigned int x, unsigned int y, unsigned int z, unsigned int w) { return uint4{x, y, z, w}; }

struct emu_fiber {
	ucontext_t ctx;
	dim3e tid;
	int lane, warp, done;
	char *stack;
};
struct emu_warp_state {
	int live, arrived, gen;
	uint64_t slot[32];
};
extern emu_fiber *emu_cur;
extern dim3e emu_blockIdx, emu_blockDim, emu_gridDim;
extern std::vector<emu_warp_state> emu_warps;
extern int emu_block_live, emu_block_arrived, emu_errors;
extern std::vector<std::pair<void *, size_t>> emu_shared_vars; // poisoned before each block
// Registers a __shared__ variable for poisoning (run.sh adds one after each declaration).
struct emu_shared_reg {
	emu_shared_reg(void *p, size_t n) { emu_shared_vars.push_back({p, n}); }
};
void emu_yield();

#define threadIdx (emu_cur->tid)
#define blockIdx emu_blockIdx
#define blockDim emu_blockDim
#define gridDim emu_gridDim

void emu_block_barrier();
void emu_warp_barrier_impl(int warp);
inline void __syncthreads() { emu_block_barrier(); }
inline void emu_warp_barrier()
{
	emu_warp_state &w = emu_warps[emu_cur->warp];
	if (w.live != 32 && emu_errors++ < 5)
		fprintf(stderr, "EMU ERROR: warp collective with %d live lanes (block %u warp %d)\n", w.live, emu_blockIdx.x,
			emu_cur->warp);
	emu_warp_barrier_impl(emu_cur->warp);
}
inline void __syncwarp(unsigned = 0xffffffffu) { emu_warp_barrier(); }
template <class T> inline uint64_t emu_bits(T v)
{
	uint64_t u = 0;
	memcpy(&u, &v, sizeof v);
	return u;
}
template <class T> inline T emu_from(uint64_t u)
{
	T v;
	memcpy(&v, &u, sizeof v);
	return v;
}
// Every lane publishes v, then reads lane src's value.
template <class T> inline T emu_exchange(T v, int src)
{
	emu_warp_state &w = emu_warps[emu_cur->warp];
	w.slot[emu_cur->lane] = emu_bits(v);
	emu_warp_barrier();
	T r = emu_from<T>(w.slot[src & 31]);
	emu_warp_barrier();
	return r;
}
template <class T> inline T __shfl_sync(unsigned, T v, int src) { return emu_exchange(v, src); }
template <class T> inline T __shfl_xor_sync(unsigned, T v, int o) { return emu_exchange(v, emu_cur->lane ^ o); }
template <class T> inline T __shfl_up_sync(unsigned, T v, unsigned d)
{
	int l = emu_cur->lane;
	T r = emu_exchange(v, l >= (int)d ? l - (int)d : l);
	return r;
}
template <class T> inline T __shfl_down_sync(unsigned, T v, unsigned d)
{
	int l = emu_cur->lane;
	return emu_exchange(v, l + (int)d < 32 ? l + (int)d : l);
}
// Collectives over all 32 slots.
template <class T, class F> inline T emu_reduce(T v, F f)
{
	emu_warp_state &w = emu_warps[emu_cur->warp];
	w.slot[emu_cur->lane] = emu_bits(v);
	emu_warp_barrier();
	T r = emu_from<T>(w.slot[0]);
	for (int i = 1; i < 32; i++)
		r = f(r, emu_from<T>(w.slot[i]));
	emu_warp_barrier();
	return r;
}
inline unsigned __ballot_sync(unsigned, int pred)
{
	return emu_reduce<unsigned>(pred ? 1u << emu_cur->lane : 0u, [](unsigned a, unsigned b) { return a | b; });
}
inline unsigned __reduce_max_sync(unsigned, unsigned v)
{
	return emu_reduce<unsigned>(v, [](unsigned a, unsigned b) { return a > b ? a : b; });
}
inline unsigned __reduce_min_sync(unsigned, unsigned v)
{
	return emu_reduce<unsigned>(v, [](unsigned a, unsigned b) { return a < b ? a : b; });
}
inline int __reduce_add_sync(unsigned, int v) { return emu_reduce<int>(v, [](int a, int b) { return a + b; }); }
inline unsigned __reduce_add_sync(unsigned, unsigned v)
{
	return emu_reduce<unsigned>(v, [](unsigned a, unsigned b) { return a + b; });
}

// Atomics: fibers switch only at barriers, so plain read-modify-write is atomic here.
template <class T> inline T atomicAdd(T *p, T v)
{
	T o = *p;
	*p = o + v;
	return o;
}
template <class T> inline T atomicOr(T *p, T v)
{
	T o = *p;
	*p = o | v;
	return o;
}
template <class T> inline T atomicExch(T *p, T v)
{
	T o = *p;
	*p = v;
	return o;
}
inline void __threadfence() {}
template <class T> inline T __ldcg(const T *p) { return *p; }

inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline float __int_as_float(int x) { return emu_from<float>((uint32_t)x); }
inline float __uint_as_float(unsigned x) { return emu_from<float>((uint32_t)x); }
inline unsigned __float_as_uint(float f) { return (unsigned)emu_bits(f); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

struct __nv_bfloat16 {
	unsigned short x;
};
inline float __bfloat162float(__nv_bfloat16 b) { return emu_from<float>((uint32_t)b.x << 16); }
inline __nv_bfloat16 __float2bfloat16_rn(float f)
{
	uint32_t u = (uint32_t)emu_bits(f);
	__nv_bfloat16 h;
	if ((u & 0x7fffffffu) > 0x7f800000u) {
		h.x = (unsigned short)((u >> 16) | 0x40);
		return h;
	}
	u += 0x7fffu + ((u >> 16) & 1u);
	h.x = (unsigned short)(u >> 16);
	return h;
}
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.x; }

// Runs fn on grid x block threads (1-D), blocks in a random order.
void emu_launch(unsigned grid, unsigned block, const std::function<void()> &fn);
