/* ce_finish.c - CPU twin of ce_finish.cu: per-row loss = log(sum) - (target - max) (0 for
 * ignored rows), lse = max + log(sum), totals = {sum of losses, counted rows, mean}.
 * moec: constants V
 *
 * Shapes (rows = runtime): loss [rows] float (may be NULL), lse [rows] float, totals [3]
 * float, row_max/row_sum/target [rows] float, labels [rows] int (counted iff 0 <= label < V). */
#include "moec_host.h"

void MOEC_KERNEL_CPU(float *loss, float *lse, float *totals, const float *row_max, const float *row_sum,
                     const float *target, const int *labels, int rows)
{
	double sum = 0.0, cnt = 0.0;
	for (long r = 0; r < rows; r++) {
		const int label = labels[r];
		const int counted = label >= 0 && label < V;
		const float ls = logf(row_sum[r]);
		const float l = counted ? ls - (target[r] - row_max[r]) : 0.0f;
		lse[r] = row_max[r] + ls;
		if (loss)
			loss[r] = l;
		sum += l;
		cnt += counted;
	}
	totals[0] = (float)sum;
	totals[1] = (float)cnt;
	totals[2] = cnt > 0.0 ? (float)(sum / cnt) : 0.0f;
}
