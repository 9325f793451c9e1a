// emu.cpp - the fiber scheduler behind cuda_bf16.h (see there).
#include "cuda_bf16.h"
#include <algorithm>
#include <random>

emu_fiber *emu_cur;
dim3e emu_blockIdx, emu_blockDim, emu_gridDim;
std::vector<emu_warp_state> emu_warps;
int emu_block_live, emu_block_arrived, emu_errors;
std::vector<std::pair<void *, size_t>> emu_shared_vars;
static ucontext_t emu_sched;
static const std::function<void()> *emu_fn;
static std::mt19937 emu_rng(12345);
static std::vector<emu_fiber *> runq;                 // runnable fibers
static std::vector<emu_fiber *> block_wait;           // waiting at __syncthreads
static std::vector<std::vector<emu_fiber *>> warp_wait; // waiting at a warp barrier

void emu_yield() { swapcontext(&emu_cur->ctx, &emu_sched); }

static void release(std::vector<emu_fiber *> &w)
{
	for (emu_fiber *f : w)
		runq.push_back(f);
	w.clear();
}

void emu_block_barrier()
{
	if (++emu_block_arrived == emu_block_live) {
		emu_block_arrived = 0;
		release(block_wait);
		runq.push_back(emu_cur); // everyone resumes in a random order
	} else {
		block_wait.push_back(emu_cur);
	}
	emu_yield();
}

void emu_warp_barrier_impl(int warp)
{
	emu_warp_state &w = emu_warps[warp];
	if (++w.arrived == w.live) {
		w.arrived = 0;
		release(warp_wait[warp]);
		runq.push_back(emu_cur);
	} else {
		warp_wait[warp].push_back(emu_cur);
	}
	emu_yield();
}

static void emu_trampoline()
{
	(*emu_fn)();
	emu_fiber *f = emu_cur;
	f->done = 1;
	emu_warp_state &w = emu_warps[f->warp];
	w.live--;
	if (w.live > 0 && w.arrived == w.live) {
		w.arrived = 0;
		release(warp_wait[f->warp]);
	}
	emu_block_live--;
	if (emu_block_live > 0 && emu_block_arrived == emu_block_live) {
		emu_block_arrived = 0;
		release(block_wait);
	}
	swapcontext(&f->ctx, &emu_sched);
}

void emu_launch(unsigned grid, unsigned block, const std::function<void()> &fn)
{
	const size_t stack = 128 * 1024;
	std::vector<emu_fiber> fib(block);
	for (auto &f : fib)
		f.stack = (char *)malloc(stack);
	std::vector<unsigned> order(grid);
	for (unsigned b = 0; b < grid; b++)
		order[b] = b;
	std::shuffle(order.begin(), order.end(), emu_rng);
	emu_fn = &fn;
	emu_gridDim = {grid, 1, 1};
	emu_blockDim = {block, 1, 1};
	for (unsigned b : order) {
		emu_blockIdx = {b, 0, 0};
		emu_warps.assign((block + 31) / 32, emu_warp_state{});
		warp_wait.assign((block + 31) / 32, {});
		block_wait.clear();
		runq.clear();
		for (unsigned i = 0; i < block; i++)
			emu_warps[i / 32].live++;
		emu_block_live = block;
		emu_block_arrived = 0;
		for (auto &v : emu_shared_vars)
			memset(v.first, 0xff, v.second);
		for (unsigned i = 0; i < block; i++) {
			emu_fiber &f = fib[i];
			f.tid = {i, 0, 0};
			f.lane = i & 31;
			f.warp = i >> 5;
			f.done = 0;
			getcontext(&f.ctx);
			f.ctx.uc_stack.ss_sp = f.stack;
			f.ctx.uc_stack.ss_size = stack;
			f.ctx.uc_link = nullptr;
			makecontext(&f.ctx, emu_trampoline, 0);
			runq.push_back(&f);
		}
		unsigned done = 0;
		while (!runq.empty()) {
			size_t k = emu_rng() % runq.size();
			emu_fiber *f = runq[k];
			runq[k] = runq.back();
			runq.pop_back();
			emu_cur = f;
			swapcontext(&emu_sched, &f->ctx);
			done += f->done;
		}
		if (done != block) {
			fprintf(stderr, "EMU ERROR: deadlock in block %u (%u of %u threads finished)\n", b, done, block);
			emu_errors++;
			break;
		}
	}
	for (auto &f : fib)
		free(f.stack);
}
