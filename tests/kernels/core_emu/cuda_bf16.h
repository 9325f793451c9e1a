// cuda_bf16.h (emulator) - runs moec's core kernel templates (embedding, rmsnorm, rope, add,
// casts, adamw, grad_sumsq, scale, ce_*) on the CPU, so their index math, tails, grid-stride
// loops, alignment fallbacks, warp/block reductions and last-block-done reductions can be
// checked against the CPU twins on a machine without a GPU. It shadows the real
// <cuda_bf16.h> (first on the include path) and supplies the few types and intrinsics those
// templates use, with their CUDA semantics:
//   - a block's threads are fibers (ucontext) run round-robin; __syncthreads,
//     __syncthreads_or and the warp-wide __shfl_xor_sync / __ballot_sync are barriers, and a
//     barrier that can never complete (a thread skipped it or exited) is reported;
//   - blocks run one after another, so __threadfence is a no-op and atomicAdd is a plain
//     read-modify-write (the last-block ticket sees every other block's writes, as on a GPU);
//   - __shared__ variables are function statics, poisoned with NaN bytes before each block.
// IEEE helpers (__fmul_rn, __fmaf_rn, ...) are the exact operations; the host build must not
// contract a*b+c (run.sh passes -ffp-contract=off). The vector types carry CUDA's alignment
// and run.sh builds the kernels with -fsanitize=alignment, so a 16-byte (or 8-, 4-byte)
// access through a misaligned pointer stops the run, as it would fault on a GPU. Not a
// timing model.
#pragma once
#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__

struct __nv_bfloat16 {
	unsigned short x;
};
struct __align__(4) __nv_bfloat162 {
	__nv_bfloat16 x, y;
};
struct __align__(16) uint4 { unsigned int x, y, z, w; };
struct __align__(8) uint2 { unsigned int x, y; };
struct __align__(16) float4 { float x, y, z, w; };
struct __align__(8) float2 { float x, y; };
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return uint4{a, b, c, d}; }
inline float4 make_float4(float a, float b, float c, float d) { return float4{a, b, c, d}; }
inline float2 make_float2(float a, float b) { return float2{a, b}; }

inline float __uint_as_float(unsigned u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}
inline unsigned __float_as_uint(float f)
{
	unsigned u;
	memcpy(&u, &f, 4);
	return u;
}
inline float __int_as_float(int i) { return __uint_as_float((unsigned)i); }
inline float __bfloat162float(__nv_bfloat16 h) { return __uint_as_float((unsigned)h.x << 16); }
inline __nv_bfloat16 __float2bfloat16_rn(float f)
{
	unsigned u = __float_as_uint(f);
	__nv_bfloat16 h;
	if ((u & 0x7fffffffu) > 0x7f800000u) {
		h.x = (unsigned short)((u >> 16) | 0x40);
		return h;
	}
	u += 0x7fffu + ((u >> 16) & 1u);
	h.x = (unsigned short)(u >> 16);
	return h;
}
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) { return __nv_bfloat162{__float2bfloat16_rn(a), __float2bfloat16_rn(b)}; }
inline float2 __bfloat1622float2(__nv_bfloat162 h) { return float2{__bfloat162float(h.x), __bfloat162float(h.y)}; }

inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
// swiglu_fwd: CUDA's int min/max; __expf as the twins' expf (so the emulated kernel must
// match its twin bit for bit; on a GPU __expf is ex2.approx, the same in swiglu_fwd and
// moe_gate_up_fwd's epilogue).
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline float __expf(float x) { return expf(x); }
template <class T> inline T __ldg(const T *p) { return *p; }
template <class T> inline T __ldcg(const T *p) { return *p; }
inline void __threadfence() {}
inline unsigned atomicAdd(unsigned *p, unsigned v)
{
	const unsigned o = *p;
	*p = o + v;
	return o;
}

namespace emu {
struct dim3 {
	unsigned x, y, z;
};
struct thread {
	ucontext_t ctx;
	dim3 tid;
	bool done;
	uint64_t slot; // warp/block collective staging
};
struct barrier {
	int n, count;
	unsigned gen;
	const char *what;
};

inline thread *cur;
inline dim3 block, grid, bdim;
inline std::vector<thread> threads;
inline ucontext_t sched;
inline barrier cta_bar;
inline std::vector<barrier> warp_bar;
inline long long progress;
inline int errors;
inline std::vector<std::pair<void *, size_t>> shared_vars; // poisoned before each block

inline void fail(const char *what)
{
	if (errors++ < 20)
		fprintf(stderr, "emu: block %u thread %u: %s\n", block.x, cur ? cur->tid.x : 0u, what);
}
inline void yield() { swapcontext(&cur->ctx, &sched); }
inline void wait(barrier &b)
{
	const unsigned g = b.gen;
	progress++;
	if (++b.count == b.n) {
		b.count = 0;
		b.gen++;
		return;
	}
	while (b.gen == g)
		yield();
}
inline int lane() { return (int)(cur->tid.x & 31); }
inline thread &peer(int l) { return threads[(cur->tid.x & ~31u) + (unsigned)l]; }
inline void warp_sync() { wait(warp_bar[cur->tid.x >> 5]); }

template <class T> inline T shfl(T v, int src)
{
	static_assert(sizeof(T) <= 8, "");
	uint64_t b = 0;
	memcpy(&b, &v, sizeof v);
	cur->slot = b;
	warp_sync();
	b = peer(src & 31).slot;
	warp_sync();
	T r;
	memcpy(&r, &b, sizeof r);
	return r;
}

// Runs fn as a grid of `g` blocks of `n` threads.
inline void launch(unsigned g, unsigned n, const std::function<void()> &fn)
{
	static const std::function<void()> *body;
	body = &fn;
	static std::vector<std::vector<char>> stacks;
	if (stacks.size() < n)
		stacks.resize(n);
	for (auto &s : stacks)
		if (s.empty())
			s.resize(64 * 1024);
	if (n % 32 || n > 1024)
		fail("block size not a multiple of 32 (or above 1024)");
	grid = dim3{g, 1, 1};
	bdim = dim3{n, 1, 1};
	for (unsigned b = 0; b < g; b++) {
		block = dim3{b, 0, 0};
		for (auto &v : shared_vars)
			memset(v.first, 0xff, v.second);
		threads.assign(n, thread());
		cta_bar = barrier{(int)n, 0, 0, "__syncthreads"};
		warp_bar.assign(n / 32, barrier{32, 0, 0, "warp collective"});
		for (unsigned t = 0; t < n; t++) {
			thread &th = threads[t];
			th.tid = dim3{t, 0, 0};
			th.done = false;
			getcontext(&th.ctx);
			th.ctx.uc_stack.ss_sp = stacks[t].data();
			th.ctx.uc_stack.ss_size = stacks[t].size();
			th.ctx.uc_link = &sched;
			makecontext(&th.ctx, (void (*)()) + [] {
				(*body)();
				cur->done = true;
			}, 0);
		}
		for (;;) {
			int alive = 0;
			const long long p0 = progress;
			for (auto &th : threads)
				if (!th.done) {
					cur = &th;
					swapcontext(&sched, &th.ctx);
					alive += !th.done;
				}
			if (!alive)
				break;
			if (progress == p0) {
				cur = &threads[0];
				fail("deadlock: threads wait at a barrier that can never complete (a thread skipped it or exited)");
				exit(1);
			}
		}
		if (cta_bar.count || [] { for (auto &w : warp_bar) if (w.count) return true; return false; }())
			fail("block finished with threads still waiting at a barrier");
	}
	cur = nullptr;
}

// Registers a __shared__ variable for poisoning (called once per variable, see EMU_SHARED).
struct shared_reg {
	shared_reg(void *p, size_t n) { shared_vars.push_back({p, n}); }
};
} // namespace emu

#define threadIdx (emu::cur->tid)
#define blockIdx (emu::block)
#define gridDim (emu::grid)
#define blockDim (emu::bdim)

inline void __syncthreads() { emu::wait(emu::cta_bar); }
inline int __syncthreads_or(int p)
{
	emu::cur->slot = p != 0;
	emu::wait(emu::cta_bar);
	int r = 0;
	for (auto &t : emu::threads)
		r |= (int)t.slot;
	emu::wait(emu::cta_bar);
	return r;
}
inline unsigned __ballot_sync(unsigned, int pred)
{
	emu::cur->slot = pred != 0;
	emu::warp_sync();
	unsigned m = 0;
	for (int l = 0; l < 32; l++)
		m |= (unsigned)emu::peer(l).slot << l;
	emu::warp_sync();
	return m;
}
template <class T> inline T __shfl_xor_sync(unsigned, T v, int m, int = 32) { return emu::shfl(v, emu::lane() ^ m); }
