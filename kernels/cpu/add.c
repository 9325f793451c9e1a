/* add.c - CPU twin of add.cu: y = a + b elementwise, fp32 sum rounded once.
 * moec: constants ACT_BF16
 *
 * Shapes (n = runtime): y [n] act_t (may alias a or b), a [n] act_t, b [n] act_t. */
#include "moec_host.h"

void MOEC_KERNEL_CPU(act_t *y, const act_t *a, const act_t *b, long n)
{
	for (long i = 0; i < n; i++)
		act_store(y + i, act_load(a + i) + act_load(b + i));
}
