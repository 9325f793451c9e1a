/* rope_bwd.c - CPU twin of rope_bwd.cu: the gradient of rope_fwd, a rotation by -angle.
 * moec: constants HD ROPE_THETA ACT_BF16
 *
 * Shapes (tokens, heads = runtime): y [tokens, heads, HD] act_t = dL/d(rope input) (may alias x),
 * x [tokens, heads, HD] act_t = dL/d(rope output), pos [tokens] int.
 *   inv_freq[i] = 1 / ROPE_THETA^((2i)/HD) (fp32 exponent, power rounded to fp32, fp32 divide)
 *   a = pos * inv_freq[i];  y[i] = x[i] c + x[i+HD/2] s;  y[i+HD/2] = x[i+HD/2] c - x[i] s
 * sin/cos come from the same double-precision reduction and polynomials as the kernel. */
#include "moec_host.h"
#include "rope_host.h"

_Static_assert(HD % 2 == 0 && HD <= ROPE_HOST_MAX_HD, "rope: HD must be even and at most 1024");

void MOEC_KERNEL_CPU(act_t *y, const act_t *x, const int *pos, int tokens, int heads)
{
	rope_host(y, x, pos, tokens, heads, HD, ROPE_THETA, -1.0f);
}
