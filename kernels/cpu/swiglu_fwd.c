/* swiglu_fwd.c - CPU twin of swiglu_fwd.cu: h = silu(gate) * up from the saved gu, as moe_gate_up_fwd's epilogue.
 * moec: constants E_LOCAL I ACT_BF16
 *
 * E = E_LOCAL experts (1: the dense MLP), rows = rows of the permuted buffer.
 * Shapes: gu [rows, 2I] act_t (gate | up), offsets [E+1] int, h [rows, I] act_t.
 * Rows offsets[0]..offsets[E] (clamped to rows) are written. swiglu_host.h's swiglu_host,
 * the function moe_gate_up_fwd.c's epilogue calls on the same rounded values, so h is
 * bit-identical to the one the gate_up GEMM wrote. */
#include "moec_host.h"
#include "swiglu_host.h"

_Static_assert(E_LOCAL > 0 && I > 0, "swiglu_fwd: bad constants (is I still the size?)");

void MOEC_KERNEL_CPU(const act_t *gu, const int *offsets, act_t *h, int rows)
{
	int r0 = offsets[0], r1 = offsets[E_LOCAL];
	r0 = r0 < 0 ? 0 : (r0 > rows ? rows : r0);
	r1 = r1 < r0 ? r0 : (r1 > rows ? rows : r1);
	for (int r = r0; r < r1; r++) {
		const act_t *g = gu + (size_t)r * 2 * I;
		act_t *hr = h + (size_t)r * I;
		for (int j = 0; j < I; j++)
			act_store(hr + j, swiglu_host(act_load(g + j), act_load(g + I + j)));
	}
}
