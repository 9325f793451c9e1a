// swiglu_fwd.cu - SwiGLU of saved gate/up pre-activations: h = silu(gate) * up, bit-identical to moe_gate_up_fwd's h.
// moec: constants E_LOCAL I ACT_BF16
// moec: launch grid=(max(1, min(ceil(rows * I / 2048), 8192))) block=(256)
//
// Selective recompute keeps gu and rebuilds h with this kernel before a layer's backward
// instead of rerunning the gate_up GEMM (Megatron's moe_act recompute). Both use swiglu()
// of swiglu.cuh on gate and up rounded to act_t, so h matches the GEMM epilogue's bits.
// E = E_LOCAL experts (1 for the dense MLP, which reuses the grouped GEMMs),
// rows = rows of the permuted buffer (>= offsets[E]).
// Shapes: gu [rows, 2I] act_t (gate | up, from moe_gate_up_fwd),
//         offsets [E+1] int (exclusive prefix sums of rows per expert; device memory),
//         h [rows, I] act_t.
// Only rows offsets[0]..offsets[E] (clamped to rows) are written, the rows moe_gate_up_fwd
// writes: the rest of gu was never written.
// Geometry: grid-stride over the elements of h; any grid >= 1 is correct, the launch line's
// gives each thread 8 elements (capped: larger inputs loop).
#include "moec_device.cuh"
#include "swiglu.cuh"

extern "C" __global__ void __launch_bounds__(256)
MOEC_KERNEL(const act_t *gu, const int *offsets, act_t *h, int rows)
{
	const int r0 = max(0, min(rows, offsets[0]));
	const int r1 = max(r0, min(rows, offsets[E_LOCAL]));
	const long long n = (long long)(r1 - r0) * I;
	for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
		const long long r = r0 + i / I;
		const int j = (int)(i % I);
		const act_t *g = gu + r * (2 * I);
		act_store(h + r * I + j, swiglu(act_load(g + j), act_load(g + I + j)));
	}
}
