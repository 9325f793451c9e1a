// emu_rt.cpp - the attention emulator's runtime: a block at a time, one ucontext fiber per
// thread; __syncthreads and warp collectives are barriers the scheduler releases; cp.async
// copies run at the wait that must complete them; dynamic smem starts NaN-filled.
#include "emu.h"
#include <ucontext.h>
#include <vector>

struct Pending { void *dst; const void *src; int bytes, src_bytes; };
struct Fiber {
	ucontext_t ctx;
	emu_dim tid;
	int state; // 0 runnable, 1 block barrier, 2 warp barrier, 3 done
	std::vector<std::vector<Pending>> groups;
	std::vector<Pending> open;
	std::vector<char> stack;
};
static std::vector<Fiber> F;
static int cur;
static ucontext_t sched_ctx;
static std::function<void()> body_fn;
static std::vector<emu_slot> slots;
static std::vector<unsigned char> dyn;
emu_dim emu_blockIdx_v, emu_gridDim_v, emu_blockDim_v;
unsigned char *emu_dyn_smem;
unsigned emu_dyn_smem_size;

emu_dim *emu_threadIdx_p(void) { return &F[cur].tid; }
int emu_lane(void) { return cur & 31; }
int emu_warp(void) { return cur >> 5; }
emu_slot *emu_warp_slots(void) { return &slots[(size_t)(cur >> 5) * 32]; }
static void yield_(void) { swapcontext(&F[cur].ctx, &sched_ctx); }
void emu_syncthreads(void) { F[cur].state = 1; yield_(); }
void emu_warp_barrier(void) { F[cur].state = 2; yield_(); }
void emu_trap(void) { fprintf(stderr, "emu: trap\n"); abort(); }

static void run_copy(const Pending &p)
{
	memcpy(p.dst, p.src, p.src_bytes);
	memset((char *)p.dst + p.src_bytes, 0, p.bytes - p.src_bytes);
}
void emu_cp_async(void *dst, const void *src, int bytes, int src_bytes)
{
	if (((uintptr_t)dst | (uintptr_t)src) % bytes) { fprintf(stderr, "emu: misaligned cp.async\n"); abort(); }
	F[cur].open.push_back({dst, src, bytes, src_bytes});
}
void emu_cp_commit(void) { F[cur].groups.push_back(F[cur].open); F[cur].open.clear(); }
void emu_cp_wait(int n)
{
	// deferred to the last legal moment: anything read before its wait sees stale data
	auto &g = F[cur].groups;
	while ((int)g.size() > n) {
		for (auto &p : g.front()) run_copy(p);
		g.erase(g.begin());
	}
}

static void entry(void) { body_fn(); F[cur].state = 3; }

void emu_launch(emu_dim grid, emu_dim block, unsigned dyn_smem, std::function<void()> body)
{
	const int n = (int)block.x;
	if (n % 32) { fprintf(stderr, "emu: block not a multiple of 32\n"); abort(); }
	body_fn = body;
	emu_gridDim_v = grid;
	emu_blockDim_v = block;
	slots.assign((size_t)n, emu_slot());
	for (unsigned bz = 0; bz < grid.z; bz++)
	for (unsigned by = 0; by < grid.y; by++)
	for (unsigned bx = 0; bx < grid.x; bx++) {
		emu_blockIdx_v = {bx, by, bz};
		dyn.assign(dyn_smem + 16, 0xff); // NaN-filled: unwritten smem shows up
		emu_dyn_smem = (unsigned char *)(((uintptr_t)dyn.data() + 15) & ~(uintptr_t)15);
		emu_dyn_smem_size = dyn_smem;
		F.clear();
		F.resize(n);
		for (int i = 0; i < n; i++) {
			Fiber &f = F[i];
			f.tid = {(unsigned)i, 0, 0};
			f.state = 0;
			f.stack.resize(256 * 1024);
			getcontext(&f.ctx);
			f.ctx.uc_stack.ss_sp = f.stack.data();
			f.ctx.uc_stack.ss_size = f.stack.size();
			f.ctx.uc_link = &sched_ctx;
			makecontext(&f.ctx, entry, 0);
		}
		for (;;) {
			for (int i = 0; i < n; i++)
				if (F[i].state == 0) {
					cur = i;
					swapcontext(&sched_ctx, &F[i].ctx);
				}
			bool released = false, all_done = true, any_warp = false;
			for (int w = 0; w < n / 32; w++) {
				int at2 = 0;
				for (int l = 0; l < 32; l++) at2 += F[w * 32 + l].state == 2;
				if (at2 == 32) {
					for (int l = 0; l < 32; l++) F[w * 32 + l].state = 0;
					released = true;
				} else if (at2) {
					any_warp = true;
				}
			}
			for (int i = 0; i < n; i++) all_done &= F[i].state == 3;
			if (all_done) break;
			if (released) continue;
			if (any_warp) { fprintf(stderr, "emu: warp collective with lanes missing (block %u,%u)\n", bx, by); abort(); }
			for (int i = 0; i < n; i++) if (F[i].state == 1) F[i].state = 0; // every live thread is at __syncthreads
		}
	}
}
