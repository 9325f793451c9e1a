// cuda_bf16.h (emulator) - runs moec's expert-GEMM templates on the CPU, one CTA at a time,
// so their index math, tails, tile scheduler and cp.async pipeline can be checked against
// the CPU twins on a machine without a GPU. Shadows the real <cuda_bf16.h> (first on the
// include path) and supplies, with MOEC_EMU defined, the four PTX primitives of
// moe_gemm.cuh from their PTX ISA definitions:
//   ldmatrix .x4 (.trans): lanes 8i..8i+7 give the row addresses of matrix i; lane l gets
//     row l/4, columns 2(l%4), 2(l%4)+1 of each matrix (.trans: the matrix transposed);
//   mma.m16n8k16 .bf16: A a0..a7 = (g, 2t+i&1) (g+8, ..) (g, 2t+8+..) (g+8, 2t+8+..),
//     B b0..b3 = (2t+i&1, g) (2t+8+i&1, g), C/D c0..c3 = (g, 2t+i&1) (g+8, 2t+i&1),
//     g = lane/4, t = lane%4; products of bf16 are exact in fp32, summed in fp32;
//   cp.async 16 (src-size 0: zero fill), commit_group, wait_group N;
//   and those of the wgmma engine (moe_wgmma.cuh, built with -DMOE_WGMMA=1):
//   wgmma.mma_async m64n256k16 bf16 from two shared-memory descriptors (128-byte swizzle,
//     K-major or MN-major by the transpose flag), decoded here from the PTX ISA's canonical
//     layouts and its accumulator layout d[4i + 2h + e] = D(16 (warp % 4) + lane / 4 + 8h,
//     8i + 2 (lane % 4) + e); it runs when its group retires (wgmma.wait_group), as the real
//     one may, so a stage refilled or an accumulator read too early shows;
//   wgmma.fence / commit_group / wait_group N, fence.proxy.async.
// Threads are fibers (ucontext); __syncthreads and the warp-wide instructions are barriers;
// warps are scheduled one at a time for maximum skew (see launch()). Hazard checks: every shared byte has a pending-copy count;
// cp.async poisons its destination at issue and writes the data only at wait_group, and
// ldmatrix fails on a byte with a copy in flight (catches a read before the wait, and a
// stage refilled while another warp still reads it). Reads of global memory by cp.async
// must fall inside registered buffers. ldmatrix phases that hit a shared-memory bank twice
// are counted (the swizzle should make that zero). wgmma hazards: its shared bytes must
// have landed and been fenced (fence.proxy.async by the thread whose cp.async wrote them)
// before it is issued, and a cp.async into bytes a wgmma in flight reads fails. Not a timing
// model.
#pragma once
#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
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
inline float __bfloat162float(__nv_bfloat16 h)
{
	uint32_t u = (uint32_t)h.x << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	__nv_bfloat16 h;
	if ((u & 0x7fffffffu) > 0x7f800000u) {
		h.x = (unsigned short)((u >> 16) | 0x40);
		return h;
	}
	u += 0x7fffu + ((u >> 16) & 1u);
	h.x = (unsigned short)(u >> 16);
	return h;
}
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.x; }
inline float __uint_as_float(unsigned u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}
inline float __expf(float x) { return expf(x); }
struct float2 {
	float x, y;
};
inline float2 make_float2(float x, float y) { return float2{x, y}; }
using std::max;
using std::min;

namespace emu {
struct dim {
	unsigned x, y, z;
};
struct copy {
	unsigned char *dst;
	const unsigned char *src; // nullptr: zero fill
};
struct wgmma_op {
	float *d;                // the issuing thread's 128 accumulators
	uint64_t da, db;         // descriptors
	int ta, tb;              // transpose (MN-major) flags
};
struct thread {
	ucontext_t ctx;
	std::vector<wgmma_op> wg_open;               // issued since the last wgmma.commit_group
	std::deque<std::vector<wgmma_op>> wg_groups; // committed, oldest first
	std::vector<size_t> landed;                  // shared offsets of copies landed, not yet fenced
	dim tid;
	bool done;
	std::vector<copy> open;               // issued, not yet committed
	std::deque<std::vector<copy>> groups; // committed groups, oldest first
	uint64_t slot[8];                     // warp-collective staging
	bool at_cta;                          // parked at __syncthreads ...
	unsigned cta_gen;                     // ... of this barrier generation
};
struct barrier {
	int n, count;
	unsigned gen;
};

inline thread *cur;
inline dim block, grid_dim, block_dim;
inline std::vector<thread> threads;
inline ucontext_t sched;
inline barrier cta_bar;
inline std::vector<barrier> warp_bar;
inline unsigned char *smem;
inline size_t smem_size;
inline std::vector<int> pending;
inline std::vector<unsigned char> unfenced; // landed by cp.async, not yet fence.proxy.async'ed
inline std::vector<int> wg_reading;         // read by a wgmma in flight (counted per warpgroup)
inline std::vector<std::pair<const unsigned char *, size_t>> globals;
inline long long progress;
inline int errors;
inline long long ldsm_phases, ldsm_conflicted; // 8x8 matrices read; of those, with a bank conflict

inline void fail(const char *what)
{
	if (errors++ < 20)
		fprintf(stderr, "emu: block %u thread %u: %s\n", block.x, cur->tid.x, what);
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
inline thread &peer(int l) { return threads[(cur->tid.x & ~31u) + l]; }
inline void warp_sync() { wait(warp_bar[cur->tid.x >> 5]); }

inline size_t smem_off(const void *p, size_t bytes)
{
	const unsigned char *c = (const unsigned char *)p;
	if (c < smem || c + bytes > smem + smem_size) {
		fail("shared access outside the dynamic shared memory");
		return 0;
	}
	return (size_t)(c - smem);
}
inline bool in_globals(const void *p, size_t bytes)
{
	const unsigned char *c = (const unsigned char *)p;
	for (auto &g : globals)
		if (c >= g.first && c + bytes <= g.first + g.second)
			return true;
	return false;
}
inline void run_group(std::vector<copy> &g)
{
	for (auto &c : g) {
		if (c.src)
			memcpy(c.dst, c.src, 16);
		else
			memset(c.dst, 0, 16);
		const size_t o = (size_t)(c.dst - smem);
		for (int i = 0; i < 16; i++) {
			pending[o + i]--;
			unfenced[o + i] = 1;
		}
		cur->landed.push_back(o);
	}
}

template <class T>
inline T shfl(T v, int src)
{
	static_assert(sizeof(T) <= 8, "");
	uint64_t b = 0;
	memcpy(&b, &v, sizeof v);
	cur->slot[0] = b;
	warp_sync();
	b = peer(src & 31).slot[0];
	warp_sync();
	T r;
	memcpy(&r, &b, sizeof r);
	return r;
}

inline void ldsm(unsigned r[4], const void *p, bool trans)
{
	if ((uintptr_t)p % 16)
		fail("ldmatrix row address not 16-byte aligned");
	const size_t o = smem_off(p, 16);
	for (int i = 0; i < 16; i++)
		if (pending[o + i]) {
			fail("ldmatrix reads shared memory with a cp.async still in flight");
			break;
		}
	cur->slot[0] = (uint64_t)(uintptr_t)p;
	warp_sync();
	const int l = lane();
	if (l == 0) // bank conflicts: each matrix's 8 rows x 16 bytes should cover the 32 banks once
		for (int m = 0; m < 4; m++) {
			int use[32] = {0}, worst = 0;
			for (int r = 0; r < 8; r++)
				for (int w = 0; w < 4; w++) {
					const int bank = (int)(((peer(8 * m + r).slot[0] - (uintptr_t)smem) / 4 + w) % 32);
					worst = std::max(worst, ++use[bank]);
				}
			ldsm_phases++;
			ldsm_conflicted += worst > 1;
		}
	for (int m = 0; m < 4; m++) {
		uint16_t lo, hi;
		if (!trans) {
			const uint16_t *row = (const uint16_t *)(uintptr_t)peer(8 * m + l / 4).slot[0];
			lo = row[2 * (l % 4)];
			hi = row[2 * (l % 4) + 1];
		} else {
			const uint16_t *r0 = (const uint16_t *)(uintptr_t)peer(8 * m + 2 * (l % 4)).slot[0];
			const uint16_t *r1 = (const uint16_t *)(uintptr_t)peer(8 * m + 2 * (l % 4) + 1).slot[0];
			lo = r0[l / 4];
			hi = r1[l / 4];
		}
		r[m] = (unsigned)lo | ((unsigned)hi << 16);
	}
	warp_sync();
}

inline float half_of(uint64_t reg, int h)
{
	const uint16_t v = (uint16_t)(reg >> (16 * h));
	__nv_bfloat16 b;
	b.x = v;
	return __bfloat162float(b);
}

// The block is run with `n` threads (fibers); fn is the kernel call.
inline void launch(unsigned grid, int n, size_t smem_bytes, const std::function<void()> &fn)
{
	static const std::function<void()> *body;
	body = &fn;
	static std::vector<std::vector<char>> stacks;
	if ((int)stacks.size() < n)
		stacks.resize(n);
	for (auto &s : stacks)
		if (s.empty())
			s.resize(256 * 1024);
	std::vector<unsigned char> buf(smem_bytes + 2048);
	smem = (unsigned char *)(((uintptr_t)buf.data() + 1023) & ~(uintptr_t)1023); // as __align__(1024)
	smem_size = smem_bytes;
	if (n % 32)
		fail("block size not a multiple of 32");
	grid_dim = dim{grid, 1, 1};
	block_dim = dim{(unsigned)n, 1, 1};
	for (unsigned b = 0; b < grid; b++) {
		block = dim{b, 0, 0};
		memset(smem, 0xff, smem_bytes); // bf16 NaN / fp32 NaN everywhere until written
		pending.assign(smem_bytes, 0);
		unfenced.assign(smem_bytes, 0);
		wg_reading.assign(smem_bytes, 0);
		threads.assign(n, thread());
		cta_bar = barrier{n, 0, 0};
		warp_bar.assign(n / 32, barrier{32, 0, 0});
		for (int t = 0; t < n; t++) {
			thread &th = threads[t];
			th.tid = dim{(unsigned)t, 0, 0};
			th.done = false;
			getcontext(&th.ctx);
			th.ctx.uc_stack.ss_sp = stacks[t].data();
			th.ctx.uc_stack.ss_size = stacks[t].size();
			th.ctx.uc_link = &sched;
			makecontext(&th.ctx, (void (*)())+[] {
				(*body)();
				cur->done = true;
				progress++;
			}, 0);
		}
		// Schedule for maximum skew between warps: run one warp as far as it goes (until
		// every lane has exited or parked at __syncthreads) before the next, warps in
		// forward order in even blocks and reverse order in odd ones. A warp racing ahead
		// into the next pipeline stage (or the next tile) then exposes missing barriers.
		const int nw = n / 32;
		auto parked = [](const thread &th) { return th.done || (th.at_cta && th.cta_gen == cta_bar.gen); };
		for (;;) {
			const long long p_round = progress;
			for (int wi = 0; wi < nw; wi++) {
				const int w = (b & 1) ? nw - 1 - wi : wi;
				for (;;) {
					bool ran = false;
					const long long p0 = progress;
					for (int l = 0; l < 32; l++) {
						thread &th = threads[w * 32 + l];
						if (parked(th))
							continue;
						cur = &th;
						swapcontext(&sched, &th.ctx);
						ran = true;
					}
					if (!ran)
						break;
					if (progress == p0) {
						cur = &threads[w * 32];
						fail("deadlock: a warp waits at a barrier that can never complete");
						for (int q = 0; q < 32; q++) {
							const thread &t2 = threads[w * 32 + q];
							fprintf(stderr, "  lane %d: done %d at_cta %d (gen %u, barrier gen %u count %d)\n", q,
							        t2.done, t2.at_cta, t2.cta_gen, cta_bar.gen, cta_bar.count);
						}
						fprintf(stderr, "  warp barrier: count %d gen %u\n", warp_bar[w].count, warp_bar[w].gen);
						exit(1);
					}
				}
			}
			bool alive = false;
			for (auto &th : threads)
				alive |= !th.done;
			if (!alive)
				break;
			if (progress == p_round) {
				cur = &threads[0];
				fail("deadlock: threads wait at barriers that can never complete");
				exit(1);
			}
		}
		for (auto &th : threads) {
			cur = &th;
			if (!th.open.empty() || !th.groups.empty())
				fail("cp.async still in flight when the thread exited");
			if (!th.wg_open.empty() || !th.wg_groups.empty())
				fail("wgmma still in flight when the thread exited");
		}
	}
}
} // namespace emu

#define threadIdx (emu::cur->tid)
#define blockIdx (emu::block)
#define gridDim (emu::grid_dim)
#define blockDim (emu::block_dim)

inline void __syncthreads()
{
	emu::cur->at_cta = true;
	emu::cur->cta_gen = emu::cta_bar.gen;
	emu::wait(emu::cta_bar);
	emu::cur->at_cta = false;
}
template <class T>
inline T __shfl_sync(unsigned, T v, int src, int = 32) { return emu::shfl(v, src); }
template <class T>
inline T __shfl_xor_sync(unsigned, T v, int m, int = 32) { return emu::shfl(v, emu::lane() ^ m); }
template <class T>
inline T __shfl_up_sync(unsigned, T v, unsigned d, int = 32)
{
	const int s = emu::lane() - (int)d;
	T r = emu::shfl(v, s < 0 ? emu::lane() : s);
	return r;
}

inline void moe_cp_async16(void *dst, const void *src, bool ok)
{
	if ((uintptr_t)dst % 16 || (ok && (uintptr_t)src % 16))
		emu::fail("cp.async address not 16-byte aligned");
	const size_t o = emu::smem_off(dst, 16);
	if (ok && !emu::in_globals(src, 16))
		emu::fail("cp.async reads outside every input buffer");
	for (int i = 0; i < 16; i++) {
		if (emu::wg_reading[o + i]) {
			emu::fail("cp.async overwrites shared memory that a wgmma in flight reads");
			break;
		}
	}
	for (int i = 0; i < 16; i++)
		emu::pending[o + i]++;
	memset(dst, 0xff, 16); // poison: the bytes are undefined until the wait
	emu::cur->open.push_back(emu::copy{(unsigned char *)dst, ok ? (const unsigned char *)src : nullptr});
}
inline void moe_cp_async_commit(void)
{
	emu::cur->groups.push_back(std::move(emu::cur->open));
	emu::cur->open.clear();
}
template <int N>
inline void moe_cp_async_wait(void)
{
	while ((int)emu::cur->groups.size() > N) {
		emu::run_group(emu::cur->groups.front());
		emu::cur->groups.pop_front();
	}
}
inline void moe_ldsm_x4(unsigned r[4], const void *p) { emu::ldsm(r, p, false); }
inline void moe_ldsm_x4_t(unsigned r[4], const void *p) { emu::ldsm(r, p, true); }
inline void moe_mma_bf16(float d[4], const unsigned a[4], unsigned b0, unsigned b1)
{
	for (int i = 0; i < 4; i++)
		emu::cur->slot[i] = a[i];
	emu::cur->slot[4] = b0;
	emu::cur->slot[5] = b1;
	emu::warp_sync();
	const int l = emu::lane(), g = l / 4, t = l % 4;
	for (int q = 0; q < 4; q++) {
		const int row = g + 8 * (q / 2), col = 2 * t + (q % 2);
		float s = d[q];
		for (int k = 0; k < 16; k++) {
			const float av = emu::half_of(emu::peer((row % 8) * 4 + (k % 8) / 2).slot[(row >= 8) + 2 * (k >= 8)], k % 2);
			const float bv = emu::half_of(emu::peer(col * 4 + (k % 8) / 2).slot[4 + (k >= 8)], k % 2);
			s += av * bv;
		}
		d[q] = s;
	}
	emu::warp_sync();
}

// ---- the wgmma engine's primitives (moe_wgmma.cuh) ----

inline unsigned moe_smem_addr(const void *p) { return (unsigned)emu::smem_off(p, 1); }
inline void moe_trap(void)
{
	emu::fail("trap (moe_trap)");
	exit(1);
}
inline void moe_fence_proxy_async(void)
{
	for (size_t o : emu::cur->landed)
		for (int i = 0; i < 16; i++)
			emu::unfenced[o + i] = 0;
	emu::cur->landed.clear();
}
inline void moe_wgmma_fence(void) {}

namespace emu {
// Shared offset of element (r, k) (r: row of M or N, k < 16) of a wgmma operand, from its
// descriptor: PTX ISA "Matrix Descriptor Format" (start, LBO, SBO >> 4 in bits 0-13, 16-29,
// 32-45; base offset 49-51; swizzle 62-63) and the canonical 128-byte-swizzle layouts:
//   K-major : rows in groups of 8 (SBO apart), each row 128 bytes along K from the start;
//   MN-major: 64 rows contiguous (2 bytes each), groups of 64 rows LBO apart; k-rows 128
//             bytes apart in groups of 8, SBO apart;
// then the swizzle: bits [4,7) of the address XOR bits [7,10).
inline size_t wgmma_elem(uint64_t desc, int trans, int r, int k)
{
	const size_t start = (desc & 0x3fff) << 4, lbo = ((desc >> 16) & 0x3fff) << 4, sbo = ((desc >> 32) & 0x3fff) << 4;
	size_t a;
	if (!trans)
		a = start + (size_t)(r / 8) * sbo + (size_t)(r % 8) * 128 + (size_t)k * 2;
	else
		a = start + (size_t)(r / 64) * lbo + (size_t)(r % 64) * 2 + (size_t)(k / 8) * sbo + (size_t)(k % 8) * 128;
	return a ^ (((a >> 7) & 7) << 4);
}
inline bool wgmma_desc_ok(uint64_t desc)
{
	if (desc >> 62 != 1) {
		fail("wgmma descriptor: swizzle mode is not 128B (1)");
		return false;
	}
	if ((desc >> 49) & 7) {
		fail("wgmma descriptor: nonzero matrix base offset");
		return false;
	}
	return true;
}
// Calls fn(offset) for every shared byte pair one operand of a m64n256k16 reads (rows R).
template <class F>
inline void wgmma_each(uint64_t desc, int trans, int rows, F fn)
{
	for (int r = 0; r < rows; r++)
		for (int k = 0; k < 16; k++)
			fn(wgmma_elem(desc, trans, r, k));
}
inline float smem_bf16(size_t o)
{
	if (o + 2 > smem_size) {
		fail("wgmma reads outside the dynamic shared memory");
		return 0.f;
	}
	__nv_bfloat16 b;
	memcpy(&b.x, smem + o, 2);
	return __bfloat162float(b);
}
inline bool wg_leader() { return cur->tid.x % 128 == 0; }
inline void wgmma_run(const wgmma_op &op)
{
	const int w = (int)(cur->tid.x / 32) % 4, l = lane();
	for (int i = 0; i < 32; i++)
		for (int h = 0; h < 2; h++)
			for (int e = 0; e < 2; e++) {
				const int row = 16 * w + l / 4 + 8 * h, col = 8 * i + 2 * (l % 4) + e;
				float s = 0.f;
				for (int k = 0; k < 16; k++)
					s += smem_bf16(wgmma_elem(op.da, op.ta, row, k)) * smem_bf16(wgmma_elem(op.db, op.tb, col, k));
				op.d[4 * i + 2 * h + e] += s;
			}
	if (wg_leader()) { // release the bytes the leader marked at issue
		wgmma_each(op.da, op.ta, 64, [](size_t o) { wg_reading[o]--, wg_reading[o + 1]--; });
		wgmma_each(op.db, op.tb, 256, [](size_t o) { wg_reading[o]--, wg_reading[o + 1]--; });
	}
}
} // namespace emu

template <int TRANS_A, int TRANS_B>
inline void moe_wgmma_m64n256k16(float d[128], unsigned long long da, unsigned long long db)
{
	if (!emu::wgmma_desc_ok(da) || !emu::wgmma_desc_ok(db))
		return;
	bool bad = false;
	auto check = [&](size_t o) {
		if (o + 2 > emu::smem_size) {
			bad = true;
			return;
		}
		for (int i = 0; i < 2; i++)
			if (emu::pending[o + i] || emu::unfenced[o + i])
				bad = true;
	};
	emu::wgmma_each(da, TRANS_A, 64, check);
	emu::wgmma_each(db, TRANS_B, 256, check);
	if (bad)
		emu::fail("wgmma issued on shared memory not landed, not fenced (fence.proxy.async) or out of range");
	if (emu::wg_leader()) {
		emu::wgmma_each(da, TRANS_A, 64, [](size_t o) { emu::wg_reading[o]++, emu::wg_reading[o + 1]++; });
		emu::wgmma_each(db, TRANS_B, 256, [](size_t o) { emu::wg_reading[o]++, emu::wg_reading[o + 1]++; });
	}
	emu::cur->wg_open.push_back(emu::wgmma_op{d, da, db, TRANS_A, TRANS_B});
}
inline void moe_wgmma_commit(void)
{
	emu::cur->wg_groups.push_back(std::move(emu::cur->wg_open));
	emu::cur->wg_open.clear();
}
template <int N>
inline void moe_wgmma_wait(void)
{
	while ((int)emu::cur->wg_groups.size() > N) {
		for (auto &op : emu::cur->wg_groups.front())
			emu::wgmma_run(op);
		emu::cur->wg_groups.pop_front();
	}
}
