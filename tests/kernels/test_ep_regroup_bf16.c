/* test_ep_regroup_bf16.c - the ep_regroup twin with runtime/ep.c's tables, bf16 rows
 * (ep_regroup_test.h). */
#define ACT_BF16 1
#include "ep_regroup_test.h"
