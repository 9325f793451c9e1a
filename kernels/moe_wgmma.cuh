// moe_wgmma.cuh - engine 3 of moe_gemm.cuh: bf16 warpgroup MMA (wgmma.mma_async, sm_90a),
// the only path to Hopper's tensor-core peak. Same interface as moe_mma (THREADS, NFRAG,
// SMEM_BYTES, run(), frag()), same operands, same zero-filled tails. Included by moe_gemm.cuh
// after the cp.async primitives and moe_loader_bf16; MOE_GEMM picks it for bf16 instances
// compiled for sm_90a (MOE_WGMMA, moe_gemm.cuh).
//
// Work split: one warpgroup (4 warps, 128 threads) per 64 rows of the tile; each computes its
// 64 x BN slab with one wgmma.mma_async.m64n256k16 per 16-wide K step, both operands read
// straight from shared memory through matrix descriptors (no ldmatrix, no A fragments in
// registers). 128x256x64: 2 warpgroups = 256 threads = BM*BN/128, as moe_mma; 128 fp32
// accumulators per thread.
//
// Pipeline. Tile kt (BM x 64 of A, 256 x 64 of B) lives in stage kt % NSTAGE. The point is
// that the tensor cores never run dry between K tiles: each warpgroup keeps one wgmma group
// (one tile's BK/16 wgmmas) in flight while it waits for, and issues, the next one. The
// rules that place every wait, barrier and fence (PTX ISA: cp.async, "Async proxy",
// wgmma.fence, wgmma.wait_group):
//   R1 cp.async copies are this thread's, tracked per thread (cp.async.wait_group); other
//      threads see them only after a barrier.
//   R2 wgmma reads shared memory through the async proxy; cp.async writes through the
//      generic proxy: the writer's fence.proxy.async.shared::cta, then a barrier, must come
//      between the landed copies and the wgmma that reads them.
//   R3 a wgmma group's shared-memory reads are done, and its accumulators readable, only
//      after wgmma.wait_group N retires it, and only for the warpgroup that waited: another
//      warpgroup's wait says nothing about ours. So a stage, shared by all warpgroups (B
//      is), may be refilled only after a barrier that follows every warpgroup's wait for
//      the last group that read it.
//   R4 wgmmas of the same shape accumulating into the same registers are ordered by the
//      hardware (no wait between them); any other access to the accumulators needs the
//      groups retired (wait_group 0) and wgmma.fence before the next wgmma. So nothing may
//      touch acc[] while a group is in flight: run() (and compute()) zeroes them before its
//      first wgmma.fence and returns only after wait_group 0, and the loop between reads no
//      accumulator.
// With one group in flight (wait_group 1 after issuing tile kt: tile kt-1 retired, kt
// running), tile kt-1's stage stays busy until every warpgroup has waited past it, so the
// refill target is either tile kt-2's stage, free at the one barrier at the top of the
// loop, or tile kt-1's, free only behind a second barrier after the wait. Two schedules
// follow, chosen by NSTAGE:
//
//  NSTAGE >= 4 ("one barrier"; e.g. 128x256x64 x 4 = 192 KB): prefetch distance NSTAGE-2.
//   prologue: load tiles 0 .. NSTAGE-3, one cp.async group each
//   per kt:  cp.async.wait_group NSTAGE-3   tile kt landed (R1)
//            fence.proxy.async              ... visible to the async proxy (R2)
//            __syncthreads (A)              tile kt landed everywhere (R1, R2); and every
//                                           warpgroup passed its wait_group 1 of kt-1, so
//                                           tile kt-2 retired everywhere (R3)
//            wgmma.fence, BK/16 wgmma, commit   issue tile kt; kt-1 may still run (R4)
//            cp.async tile kt+NSTAGE-2      into tile kt-2's stage, free since (A) (R3)
//            wgmma.wait_group 1             tile kt-1 retired for this warpgroup; (A) of
//                                           kt+1 publishes that to the others
//  NSTAGE 2 or 3 (the default 128x256x64 x 3 = 144 KB, and 256x256 x 2): prefetch
//   distance NSTAGE-1, at the price of a second barrier per tile; with one barrier, 3
//   stages would prefetch only one tile ahead (the stage of kt-2 is the only one free at
//   (A), and with 3 stages it is kt+1's).
//   prologue: load tiles 0 .. NSTAGE-2
//   per kt:  cp.async.wait_group NSTAGE-2, fence.proxy.async, __syncthreads (A)   as above
//            wgmma.fence, BK/16 wgmma, commit   issue tile kt (R4)
//            wgmma.wait_group 1             tile kt-1 retired for this warpgroup
//            __syncthreads (B)              ... and for every warpgroup (R3)
//            cp.async tile kt+NSTAGE-1      into tile kt-1's stage, free since (B)
//   Both barriers are passed with a group in flight ((A) with kt-1, (B) with kt), so they
//   cost issue time, not tensor-core time, as long as a tile's wgmmas (~1k cycles per CTA
//   at 128x256x64 on an H100 SM) outlast the waits, the barrier and the refill's issue.
// After the loop: wgmma.wait_group 0 (the epilogue reads acc[], R4), cp.async.wait_group 0
// (the empty groups past the end). No fence is needed between a retired wgmma's reads and
// the cp.async that overwrites its stage: wgmma.wait_group orders them. The fence sits
// right after cp.async.wait_group, before (A): it must cover tile kt's landed copies, and
// needs nothing from the copies still in flight (tile kt+1's: fenced at (A) of kt+1) nor
// from the refill, which is issued after it and fenced at (A) of the iteration that reads
// it; so no wait of the refill is ordered behind a fence. (The PTX ISA does not order
// in-flight cp.async by a fence; whether the fence's MEMBAR.ALL.CTA in SASS stalls on them
// is for a GPU profile to show.)
// Persistent schedule (PERSIST > 0, moe_gemm.cuh's moe_gemm_tile): run() splits into
// prefetch() (barrier (P), then the prologue) and compute() (the loop above, then the waits),
// and a CTA calls prefetch() of its next tile between compute() and the epilogue. The epilogue
// reads acc[] (retired by wait_group 0) and global memory only; the prologue writes stages
// 0 .. DIST-1, which the tile's last wgmma groups read: (P) comes after every warpgroup's
// wait_group 0 (R3) and every thread's cp.async.wait_group 0 (R1), so no wgmma still reads a
// stage when the first copy is issued. The next compute() starts at cp.async.wait_group and
// (A), as after run()'s own prologue: the prefetched copies are fenced there (R2). The
// emulator configuration wgmma_persist fails with "cp.async overwrites shared memory that a
// wgmma in flight reads" when (P) is dropped (30 of its 40 checks fail).
// Checked on the CPU emulator (tests/kernels/moe_gemm_emu: wgmma_default, wgmma_256x256,
// wgmma_4stage, wgmma_persist), which runs each wgmma when its group retires and fails a
// cp.async into bytes a wgmma of any warpgroup still has in flight ("cp.async overwrites
// shared memory that a wgmma in flight reads"). It flags each broken variant tried: the 3-stage schedule
// without (B); the previous one-barrier, distance NSTAGE-1 schedule with wait_group 1 in
// place of 0; the 4-stage one-barrier schedule refilling kt-1's stage instead of kt-2's.
// In SASS (sm_90a, NVRTC 13) the loop is DEPBAR.LE SB0 (cp.async), MEMBAR.ALL.CTA +
// FENCE.VIEW.ASYNC.S (the proxy fence), BAR.SYNC, WARPGROUP.ARRIVE, 4 HGMMA (the last
// with gsb0), WARPGROUP.DEPBAR.LE gsb0 0x1, BAR.SYNC, LDGSTS, and WARPGROUP.DEPBAR.LE
// gsb0 0x0 only after the loop: tile kt+1's HGMMAs issue before the wait retiring kt.
//
// Shared layouts (PTX ISA, "Shared Memory Matrix Layout", 128-byte swizzle): a "swizzle
// atom" is 8 rows of 128 bytes (1024 bytes, 1024-aligned); in row j of an atom the 16-byte
// chunk i is stored at chunk position i ^ j. The hardware applies this XOR to address bits
// [4,7) with bits [7,10), so atoms must start 1024-aligned: run() traps if the dynamic shared
// memory is not (the templates declare it __align__(1024)).
//   K-major tile [R][64] (moe_loader_bf16, WGL): tile row r is one 128-byte row; rows
//     8a..8a+7 form atom a. Descriptor: start = row 0 of the slab + 32 bytes per k16 step
//     (k16 = 2 chunks of the 8), SBO = 1024 (atom to atom along M/N), LBO unused with
//     swizzling (encoded 1), mode 128B.
//   MN-major tile [R/64][BK][64]: block b holds columns 64b..64b+63 of every k-row; k-rows
//     8a..8a+7 of a block form atom a. Descriptor: start = block of the slab + 2048 bytes per
//     k16 step (two atoms), LBO = BK*128 (block to block along M/N: the next 64 columns),
//     SBO = 1024 (atom to atom along K). This is CUTLASS's canonical MN-major SW128 layout
//     ((T,8,m),(8,k)):((1,T,LBO),(8T,SBO)), T = 8 bf16.
#pragma once

// ---------------------------------------------------------------------------------------
// PTX primitives (sm_90a). With MOEC_EMU, tests/kernels/moe_gemm_emu supplies CPU versions.
// ---------------------------------------------------------------------------------------
#ifndef MOEC_EMU
// Ends the kernel with an error (a launch then fails with an illegal-instruction error).
__device__ __forceinline__ void moe_trap(void)
{
	asm volatile("trap;\n");
}

// Makes this thread's generic-proxy writes to shared memory (its landed cp.async copies)
// visible to the async proxy, which wgmma reads through (PTX ISA, membar/fence: proxy kinds).
__device__ __forceinline__ void moe_fence_proxy_async(void)
{
	asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// Orders this warpgroup's earlier register accesses (the accumulators zeroed or read) before
// the wgmma.mma_async that follow; required before the first wgmma and after any such access
// (PTX ISA, wgmma.fence).
__device__ __forceinline__ void moe_wgmma_fence(void)
{
	asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}

// Closes the batch of wgmma.mma_async issued since the last commit into one wgmma-group.
__device__ __forceinline__ void moe_wgmma_commit(void)
{
	asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

// Waits until at most N wgmma-groups of this warpgroup are pending: their shared-memory reads
// are done and their accumulators may be read (PTX ISA, wgmma.wait_group).
template <int N>
__device__ __forceinline__ void moe_wgmma_wait(void)
{
	asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

// d[128] += A[64 x 16] * B[256 x 16]^T, bf16 inputs from shared memory (descriptors da, db),
// fp32 accumulate. scale-d = 1 (accumulate: the caller zeroes d), imm-scale-a/b = 1;
// imm-trans-a/b = 1 when that operand is MN-major (PTX ISA: transpose is supported for
// .f16/.bf16 with descriptors only; 0 = K-major, the untransposed "row" A and "col" B).
// Register d[4i + 2h + e] holds D(16 * (warp % 4) + lane / 4 + 8h, 8i + 2 * (lane % 4) + e)
// (PTX ISA, "Matrix fragments for wgmma .m64nNk16": the accumulator D layout).
template <int TRANS_A, int TRANS_B>
__device__ __forceinline__ void moe_wgmma_m64n256k16(float d[128], unsigned long long da, unsigned long long db)
{
	asm volatile("{\n"
	             ".reg .pred p;\n"
	             "setp.ne.b32 p, 1, 0;\n" // scale-d: accumulate into d
	             "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
	             "{"
	             "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
	             "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
	             "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
	             "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
	             "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
	             "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
	             "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "
	             "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
	             "}, %128, %129, p, 1, 1, %130, %131;\n"
	             "}\n"
	             : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
	               "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
	               "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
	               "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
	               "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
	               "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
	               "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
	               "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
	               "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
	               "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
	               "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
	               "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
	               "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]),
	               "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]),
	               "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]),
	               "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]),
	               "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
	             : "l"(da), "l"(db), "n"(TRANS_A), "n"(TRANS_B)
	             : "memory");
}
#endif

// A wgmma shared-memory matrix descriptor (PTX ISA, "Matrix Descriptor Format"): bits 0-13
// start address >> 4 (of the 18-bit shared address), bits 16-29 leading dimension byte offset
// >> 4, bits 32-45 stride dimension byte offset >> 4, bits 49-51 matrix base offset (0: every
// swizzle atom here starts 1024-aligned), bits 62-63 swizzle mode (1 = 128-byte swizzle).
__device__ __forceinline__ unsigned long long moe_wgmma_desc(unsigned saddr, unsigned lbo, unsigned sbo)
{
	return (unsigned long long)((saddr & 0x3ffffu) >> 4) | (unsigned long long)((lbo >> 4) & 0x3fffu) << 16 |
	       (unsigned long long)((sbo >> 4) & 0x3fffu) << 32 | 1ull << 62;
}

template <int BM, int BN, int BK, int NSTAGE, bool A_KMAJOR, bool B_KMAJOR>
struct moe_wgmma {
	static constexpr int WG_M = 64;          // rows per warpgroup (wgmma's M)
	static constexpr int WGS = BM / WG_M;    // warpgroups
	static constexpr int THREADS = WGS * 128;
	static constexpr int A_ELEMS = BM * BK, B_ELEMS = BN * BK;
	static constexpr int SMEM_BYTES = NSTAGE * (A_ELEMS + B_ELEMS) * 2;
	static constexpr int NACC = BN / 2;      // accumulators per thread: 64 x BN / 128
	static constexpr int NFRAG = NACC / 4;   // (n8 block of the first half) x (row g, g+8)
	static constexpr int SLAB_BYTES = WG_M * BK * 2; // a warpgroup's 64 rows of A, either major
	static constexpr unsigned SW_ATOM = 1024;        // 8 rows of 128 bytes
	static_assert(BN == 256, "the wgmma engine issues m64n256k16: TILE_N must be 256");
	static_assert(BK == 64, "the wgmma engine's 128-byte swizzle needs TILE_K == 64 (one 128-byte row of K)");
	static_assert(BM % WG_M == 0 && THREADS <= 1024, "TILE_M must be a multiple of 64, at most 512");
	static_assert(THREADS == BM * BN / 128, "the launch lines' block = TILE_M*TILE_N/128 must hold");
	static_assert(NSTAGE >= 2, "NSTAGE >= 2 (2-3: two barriers per tile; 4+: one, see the header)");
	static_assert((A_ELEMS * 2) % SW_ATOM == 0 && (B_ELEMS * 2) % SW_ATOM == 0, "stages must keep atoms 1024-aligned");

	float acc[NACC];

	// The descriptor of one k16 step of one operand. Base: the operand's slab in this stage
	// (K-major: its first row; MN-major: its first 64-column block). PTX ISA canonical
	// layouts, 128-byte swizzle (see the file header):
	//   K-major : the k16 step is 32 bytes along the 128-byte row, inside every atom;
	//             SBO 1024 = the next 8 rows; LBO is not used when swizzled (encoded as 1).
	//   MN-major: the k16 step is 16 k-rows of 128 bytes = 2 atoms further;
	//             SBO 1024 = the next 8 k-rows; LBO BK*128 = the next block of 64 rows.
	template <bool KMAJOR>
	__device__ __forceinline__ static unsigned long long desc(unsigned base, int kk)
	{
		if (KMAJOR)
			return moe_wgmma_desc(base + kk * 32, 16, SW_ATOM);
		return moe_wgmma_desc(base + kk * 16 * 128, BK * 128, SW_ATOM);
	}

	// The multiply of one stage: this warpgroup's 64 x BN slab, BK/16 wgmmas, one group.
	// sa: shared address of the stage's A tile, sb: of its B tile.
	__device__ __forceinline__ void mma_stage(unsigned sa, unsigned sb, int wg)
	{
		const unsigned a = sa + wg * SLAB_BYTES; // K-major: row 64wg; MN-major: block wg
		moe_wgmma_fence();
#pragma unroll
		for (int kk = 0; kk < BK / 16; kk++)
			moe_wgmma_m64n256k16<A_KMAJOR ? 0 : 1, B_KMAJOR ? 0 : 1>(acc, desc<A_KMAJOR>(a, kk), desc<B_KMAJOR>(sb, kk));
		moe_wgmma_commit();
	}

	// Accumulates over the whole K range of a (b has the same length). smem: SMEM_BYTES,
	// 1024-aligned. prefetch() then compute(), the loaders kept in locals here as they were
	// before the split (the default, one-tile-per-CTA path).
	__device__ __forceinline__ void run(void *smem, const moe_operand &a, const moe_operand &b)
	{
		bf16 *sA = (bf16 *)smem;
		if (moe_smem_addr(sA) % SW_ATOM) // the swizzle would not match the hardware's: fail loudly, not wrongly
			moe_trap();
		zero();
		const int klen = a.kend - a.k0;
		const int kt = klen > 0 ? (klen + BK - 1) / BK : 0;
		__syncthreads(); // a CTA's previous tile may still be reading the stages refilled below
		moe_loader_bf16<BM, BK, THREADS, A_KMAJOR, true> ra;
		moe_loader_bf16<BN, BK, THREADS, B_KMAJOR, true> rb;
		prologue(smem, a, b, kt, ra, rb);
		kloop(smem, kt, ra, rb);
	}

	// The pipeline state prefetch() leaves for compute(): the loaders, DIST tiles along K,
	// and the tile count.
	moe_loader_bf16<BM, BK, THREADS, A_KMAJOR, true> la;
	moe_loader_bf16<BN, BK, THREADS, B_KMAJOR, true> lb;
	int ktiles;

	// The prologue of a tile for a persistent kernel (PERSIST, moe_gemm.cuh): issues tiles
	// 0 .. DIST-1 of a and b (one cp.async group each) into stages 0 .. DIST-1 and keeps the
	// loaders for compute(). Reads and writes no accumulator, so the kernel calls it for its
	// next tile between compute() and the epilogue that reads acc[]: the copies fly while the
	// epilogue stores. Every thread of the CTA must call it (a barrier).
	__device__ __forceinline__ void prefetch(void *smem, const moe_operand &a, const moe_operand &b)
	{
		if (moe_smem_addr(smem) % SW_ATOM)
			moe_trap();
		const int klen = a.kend - a.k0;
		ktiles = klen > 0 ? (klen + BK - 1) / BK : 0;
		// (P) The previous tile's last wgmma groups read the stages refilled below: compute()
		// returned after this warpgroup's wgmma.wait_group 0, and this barrier waits for every
		// warpgroup's (R3), so no wgmma of any warpgroup still reads a stage when the first
		// cp.async below is issued.
		__syncthreads();
		prologue(smem, a, b, ktiles, la, lb);
	}

	// The K loop over the tiles prefetch() issued (landed or not): acc[] = the tile's
	// product. Returns after wgmma.wait_group 0 and cp.async.wait_group 0: acc[] is readable
	// and no copy of this thread is in flight.
	__device__ __forceinline__ void compute(void *smem)
	{
		zero();
		kloop(smem, ktiles, la, lb);
	}

	__device__ __forceinline__ void zero(void)
	{
#pragma unroll
		for (int i = 0; i < NACC; i++)
			acc[i] = 0.f;
	}

	// Tiles 0 .. DIST-1 into stages 0 .. DIST-1 (DIST as in kloop()), after the barrier
	// that frees the stages.
	template <class LA, class LB>
	__device__ __forceinline__ static void prologue(void *smem, const moe_operand &a, const moe_operand &b, int nk,
	                                                LA &ra, LB &rb)
	{
		bf16 *sA = (bf16 *)smem;
		moe_prologue<NSTAGE >= 4 ? NSTAGE - 2 : NSTAGE - 1, A_ELEMS, B_ELEMS>(sA, sA + NSTAGE * A_ELEMS, a, b, nk, ra, rb);
	}

	// The K loop over nk tiles, the first DIST issued by prologue(); acc[] zeroed before
	// (R4: before the first wgmma.fence).
	template <class LA, class LB>
	__device__ __forceinline__ void kloop(void *smem, const int nk, LA &ra, LB &rb)
	{
		bf16 *sA = (bf16 *)smem, *sB = sA + NSTAGE * A_ELEMS;
		const int wg = threadIdx.x / 128;
		const unsigned sa0 = moe_smem_addr(sA), sb0 = moe_smem_addr(sB);
		// Two schedules (see the file header): NSTAGE >= 4 refills tile kt-2's stage behind
		// the one barrier per tile, prefetch distance NSTAGE-2; NSTAGE 2 and 3 refill tile
		// kt-1's stage behind a second barrier, prefetch distance NSTAGE-1. One cp.async group
		// per tile in both (empty past the end), so wait_group<DIST-1> means "tile kt landed".
		constexpr bool ONE_BAR = NSTAGE >= 4;
		constexpr int DIST = ONE_BAR ? NSTAGE - 2 : NSTAGE - 1; // tiles loaded ahead of kt
		int ld_stage = DIST, rd_stage = 0; // the stages of tiles kt+DIST and kt
#pragma unroll 1
		for (int kt = 0; kt < nk; kt++) {
			moe_cp_async_wait<DIST - 1>(); // this thread's copies of tile kt landed ...
			moe_fence_proxy_async();       // ... and are visible to the async proxy (wgmma)
			// (A) tile kt landed and fenced by every thread. Also: every warpgroup has passed
			// its wgmma.wait_group<1> of iteration kt-1, so tile kt-2 has retired everywhere.
			__syncthreads();
			// Issue tile kt. This warpgroup's tile kt-1 may still be running: wgmmas of one
			// shape accumulating into the same registers are ordered by the hardware (PTX ISA,
			// wgmma.fence), so kt queues behind kt-1 and the tensor cores do not drain.
			mma_stage(sa0 + rd_stage * (A_ELEMS * 2), sb0 + rd_stage * (B_ELEMS * 2), wg);
			rd_stage = rd_stage == NSTAGE - 1 ? 0 : rd_stage + 1;
			if (!ONE_BAR) {
				moe_wgmma_wait<1>(); // this warpgroup's tile kt-1 retired (kt stays in flight)
				// (B) tile kt-1 retired in every warpgroup: its stage, the refill target
				// below, is free. Without this barrier another warpgroup's wgmma of kt-1
				// could still be reading the bytes the cp.async below overwrites.
				__syncthreads();
			}
			// Refill: ONE_BAR: tile kt+NSTAGE-2 into the stage of tile kt-2 (free since (A));
			// else tile kt+NSTAGE-1 into the stage of tile kt-1 (free since (B)). The copies
			// run while the tensor cores work on kt (and kt-1). Nothing here needs a proxy
			// fence: wgmma.wait_group already ordered the async-proxy reads of that stage
			// before this point, and these generic-proxy writes are fenced at (A) of the
			// iteration that reads them.
			if (kt + DIST < nk) {
				ra.load(sA + ld_stage * A_ELEMS);
				rb.load(sB + ld_stage * B_ELEMS);
			}
			moe_cp_async_commit();
			ld_stage = ld_stage == NSTAGE - 1 ? 0 : ld_stage + 1;
			if (ONE_BAR)
				moe_wgmma_wait<1>(); // tile kt-1 retired here: (A) of kt+1 publishes it
		}
		// The last group: the accumulators are ours again (the epilogue reads them).
		moe_wgmma_wait<0>();
		moe_cp_async_wait<0>();
	}

	// Fragment f (0 <= f < NFRAG, a compile-time index after unrolling): see moe_gemm.cuh's
	// header. Accumulator 4i + 2h + e is (row 16 * (warp % 4) + lane / 4 + 8h, column 8i +
	// 2 * (lane % 4) + e) of the warpgroup's 64 x BN slab; n8 blocks 0..BN/16-1 are the first
	// column half, BN/16.. the same columns of the second.
	__device__ __forceinline__ void frag(int f, int &r, int &c, float v[4]) const
	{
		const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
		const int i = f >> 1, h = f & 1, j = i + BN / 16;
		r = (warp >> 2) * WG_M + (warp & 3) * 16 + (lane >> 2) + h * 8;
		c = i * 8 + (lane & 3) * 2;
		v[0] = acc[4 * i + 2 * h];
		v[1] = acc[4 * i + 2 * h + 1];
		v[2] = acc[4 * j + 2 * h];
		v[3] = acc[4 * j + 2 * h + 1];
	}
};
