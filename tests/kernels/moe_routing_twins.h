/* moe_routing_twins.h - instantiates MoE routing CPU twins for the constants the includer
 * has #defined, as functions named <INST>_<template>, plus a descriptor <INST>_desc that the
 * tests loop over. Include once per instance; the constants are #undef'd at the end.
 *
 *   ROUTER_INST defined: E K ROUTER_SIGMOID NORM_TOPK ROUTED_SCALE N_GROUP TOPK_GROUP
 *       -> router_fwd, router_bwd; descriptor struct router_inst.
 *   MOE_INST defined:    E K H CAPACITY DROP_POLICY
 *       -> moe_count, moe_scan, moe_route, moe_capacity (CAPACITY > 0, DROP_POLICY 1 only),
 *          moe_permute, moe_permute_bwd, moe_combine, moe_combine_bwd; struct moe_inst.
 * The includer defines struct router_inst / struct moe_inst first (see the test files). */
#define MRT_CAT2(a, b) a##_##b
#define MRT_CAT(a, b) MRT_CAT2(a, b)
#define MRT_STR2(x) #x
#define MRT_STR(x) MRT_STR2(x)

#ifdef ROUTER_INST
#define MOEC_KERNEL_CPU MRT_CAT(ROUTER_INST, router_fwd)
#include "router_fwd.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU MRT_CAT(ROUTER_INST, router_bwd)
#include "router_bwd.c"
#undef MOEC_KERNEL_CPU
static const struct router_inst MRT_CAT(ROUTER_INST, desc) = {
	MRT_STR(ROUTER_INST), E, K, ROUTER_SIGMOID, NORM_TOPK, ROUTED_SCALE, N_GROUP, TOPK_GROUP,
	MRT_CAT(ROUTER_INST, router_fwd), MRT_CAT(ROUTER_INST, router_bwd),
};
#undef E
#undef K
#undef ROUTER_SIGMOID
#undef NORM_TOPK
#undef ROUTED_SCALE
#undef N_GROUP
#undef TOPK_GROUP
#undef ROUTER_INST
#endif

#ifdef MOE_INST
#define MOEC_KERNEL_CPU MRT_CAT(MOE_INST, moe_count)
#include "moe_count.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU MRT_CAT(MOE_INST, moe_scan)
#include "moe_scan.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU MRT_CAT(MOE_INST, moe_route)
#include "moe_route.c"
#undef MOEC_KERNEL_CPU
#if CAPACITY > 0 && DROP_POLICY == 1
#define MOEC_KERNEL_CPU MRT_CAT(MOE_INST, moe_capacity)
#include "moe_capacity.c"
#undef MOEC_KERNEL_CPU
#define MRT_CAPACITY_FN MRT_CAT(MOE_INST, moe_capacity)
#else
#define MRT_CAPACITY_FN NULL
#endif
#define MOEC_KERNEL_CPU MRT_CAT(MOE_INST, moe_permute)
#include "moe_permute.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU MRT_CAT(MOE_INST, moe_permute_bwd)
#include "moe_permute_bwd.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU MRT_CAT(MOE_INST, moe_combine)
#include "moe_combine.c"
#undef MOEC_KERNEL_CPU
#define MOEC_KERNEL_CPU MRT_CAT(MOE_INST, moe_combine_bwd)
#include "moe_combine_bwd.c"
#undef MOEC_KERNEL_CPU
static const struct moe_inst MRT_CAT(MOE_INST, desc) = {
	MRT_STR(MOE_INST), E, K, H, CAPACITY, DROP_POLICY,
	MRT_CAT(MOE_INST, moe_count), MRT_CAT(MOE_INST, moe_scan), MRT_CAT(MOE_INST, moe_route), MRT_CAPACITY_FN,
	MRT_CAT(MOE_INST, moe_permute), MRT_CAT(MOE_INST, moe_permute_bwd), MRT_CAT(MOE_INST, moe_combine),
	MRT_CAT(MOE_INST, moe_combine_bwd),
};
#undef MRT_CAPACITY_FN
#undef E
#undef K
#undef H
#undef CAPACITY
#undef DROP_POLICY
#undef MOE_INST
#endif
