/* test_moe_gemm_bf16.c - the expert-GEMM twins (kernels/cpu/moe_*.c), bf16 path: each against
 * a double reference computed from the same bf16 inputs, on ragged and empty experts, with
 * bf16-level tolerance (one rounding of each act_t output). See moe_gemm_test.h. */
#define ACT_BF16 1
#include "moec_host.h"
#include "testing.h"
#include "moe_gemm_test.h"

#include "moe_gemm_instances.h"

static const struct moe_case cases[] = {
	{"e4 h24 i16, empty middle, one-row tail", &twins_a, {5, 0, 13, 1}, 3, 1},
	{"e6 h40 i8, empty head/middle", &twins_b, {0, 7, 0, 0, 9, 2}, 1, 1},
	{"e1 h16 i24 (dense mlp)", &twins_c, {9}, 0, 1},
	{"e8 h128 i128 (tiny example)", &twins_d, {37, 0, 64, 129, 1, 0, 20, 5}, 2, 0},
	{"e16 h16 i8, only the last expert", &twins_e, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3}, 4, 1},
};

int main(void)
{
	/* No finite differences in bf16: the fp32 file checks the same twins' math that way. */
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		run_case(&cases[i]);
	run_empty(&twins_a);
	run_empty(&twins_e);
	return testing_report();
}
