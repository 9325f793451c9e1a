/* test_ep_regroup_f32.c - the ep_regroup twin with runtime/ep.c's tables, f32 rows
 * (ep_regroup_test.h). */
#define ACT_BF16 0
#include "ep_regroup_test.h"
