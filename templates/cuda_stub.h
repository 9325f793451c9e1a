// cuda_stub.h - moec's own minimal CUDA device header, for lint only (never compiled).
//
// Why it exists: moec's lint pass (compiler/lint.c) parses every instantiated kernel with
// libclang 14, which cannot read the CUDA 13 headers (too new for it), so lint parses with
// -nocudainc and moec_device.cuh includes this file instead of <cuda_bf16.h> when MOEC_LINT
// is defined. It declares, with the same names and parameter types as the real headers,
// the attributes, builtin variables, bf16 type and intrinsics the templates use, so that
// clang's semantic analysis (undeclared names, wrong argument types, host/device calls,
// signatures) sees what NVRTC sees. Nothing here has a body that matters: it is for
// parsing only; NVRTC compiles the templates against the real headers.
//
// Requires: clang in CUDA device mode (-x cuda --cuda-device-only -nocudainc).
// Establishes: what the kernel templates may use. When a template needs a new intrinsic,
// declare it here (same signature as the CUDA header) or lint reports it undeclared.
#pragma once

#if !defined(__clang__) || !defined(__CUDA__)
#error "cuda_stub.h is for moec lint (libclang, CUDA mode) only"
#endif

// NVRTC defines both; templates may test them, so lint follows the same path.
#define __CUDACC__ 1
#define __CUDACC_RTC__ 1

// ---- execution-space and storage attributes (clang spells them as attributes) ----
#define __host__ __attribute__((host))
#define __device__ __attribute__((device))
#define __global__ __attribute__((global))
#define __shared__ __attribute__((shared))
#define __constant__ __attribute__((constant))
#define __managed__ __attribute__((managed))
#define __forceinline__ __inline__ __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...) __attribute__((launch_bounds(__VA_ARGS__)))
#define __restrict__ __restrict
// clang 14 has no grid_constant attribute; it changes no type, so dropping it is safe here.
#define __grid_constant__
#define __CUDA_ALIGN__(n) __attribute__((aligned(n)))

#define MOEC_STUB_HD __host__ __device__ __forceinline__
// Declarations only: calls are type-checked, never emitted.
#define MOEC_STUB_D extern __device__

typedef __SIZE_TYPE__ size_t;

// ---- vector types ----
struct __align__(8) float2 { float x, y; };
struct __align__(16) float4 { float x, y, z, w; };
struct __align__(8) int2 { int x, y; };
struct __align__(16) int4 { int x, y, z, w; };
struct __align__(8) uint2 { unsigned int x, y; };
struct __align__(16) uint4 { unsigned int x, y, z, w; };
struct uint3 { unsigned int x, y, z; };
struct dim3 {
	unsigned int x, y, z;
	MOEC_STUB_HD constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
	MOEC_STUB_HD constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
MOEC_STUB_HD float2 make_float2(float x, float y) { return float2{x, y}; }
MOEC_STUB_HD float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
MOEC_STUB_HD int2 make_int2(int x, int y) { return int2{x, y}; }
MOEC_STUB_HD int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }
MOEC_STUB_HD uint2 make_uint2(unsigned int x, unsigned int y) { return uint2{x, y}; }
MOEC_STUB_HD uint4 make_uint4(unsigned int x, unsigned int y, unsigned int z, unsigned int w) { return uint4{x, y, z, w}; }

// ---- builtin variables ----
// As clang's __clang_cuda_builtin_vars.h: each field is a __declspec(property) whose
// getter reads the PTX special register, so `threadIdx.x` is an unsigned int rvalue that
// cannot be assigned or have its address taken, exactly as under nvcc/NVRTC.
#define MOEC_STUB_BUILTIN(field, reg)                                                  \
	__declspec(property(get = __fetch_builtin_##field)) unsigned int field;        \
	static __device__ __forceinline__ unsigned int __fetch_builtin_##field(void) { \
		return reg;                                                            \
	}
#define MOEC_STUB_BUILTIN_TYPE(type, sx, sy, sz)                      \
	struct type {                                                 \
		MOEC_STUB_BUILTIN(x, sx)                              \
		MOEC_STUB_BUILTIN(y, sy)                              \
		MOEC_STUB_BUILTIN(z, sz)                              \
		__device__ operator dim3() const { return dim3(x, y, z); } \
		__device__ operator uint3() const { return uint3{x, y, z}; } \
	private:                                                      \
		__device__ type() = delete;                           \
		__device__ type(const type &) = delete;               \
		__device__ void operator=(const type &) const = delete; \
		__device__ type *operator&() const = delete;          \
	}
MOEC_STUB_BUILTIN_TYPE(__moec_threadIdx_t, __nvvm_read_ptx_sreg_tid_x(), __nvvm_read_ptx_sreg_tid_y(), __nvvm_read_ptx_sreg_tid_z());
MOEC_STUB_BUILTIN_TYPE(__moec_blockIdx_t, __nvvm_read_ptx_sreg_ctaid_x(), __nvvm_read_ptx_sreg_ctaid_y(), __nvvm_read_ptx_sreg_ctaid_z());
MOEC_STUB_BUILTIN_TYPE(__moec_blockDim_t, __nvvm_read_ptx_sreg_ntid_x(), __nvvm_read_ptx_sreg_ntid_y(), __nvvm_read_ptx_sreg_ntid_z());
MOEC_STUB_BUILTIN_TYPE(__moec_gridDim_t, __nvvm_read_ptx_sreg_nctaid_x(), __nvvm_read_ptx_sreg_nctaid_y(), __nvvm_read_ptx_sreg_nctaid_z());
extern const __device__ __attribute__((weak)) __moec_threadIdx_t threadIdx;
extern const __device__ __attribute__((weak)) __moec_blockIdx_t blockIdx;
extern const __device__ __attribute__((weak)) __moec_blockDim_t blockDim;
extern const __device__ __attribute__((weak)) __moec_gridDim_t gridDim;
__device__ const int warpSize = 32;
#undef MOEC_STUB_BUILTIN
#undef MOEC_STUB_BUILTIN_TYPE

// ---- bf16 (cuda_bf16.h): the real type's shape, conversions and operators ----
struct __nv_bfloat16_raw { unsigned short x; };
struct __nv_bfloat162_raw { unsigned short x, y; };
struct __CUDA_ALIGN__(2) __nv_bfloat16 {
protected:
	unsigned short __x;

public:
	__nv_bfloat16() = default;
	__host__ __device__ constexpr __nv_bfloat16(const __nv_bfloat16_raw &hr) : __x(hr.x) {}
	__host__ __device__ operator __nv_bfloat16_raw() const;
	__host__ __device__ __nv_bfloat16(float f);
	__host__ __device__ __nv_bfloat16(double f);
	__host__ __device__ operator float() const;
	__host__ __device__ __nv_bfloat16 &operator=(float f);
	__host__ __device__ __nv_bfloat16 &operator=(double f);
	// Integer conversions exist under __CUDACC__, as in the real header.
	__host__ __device__ __nv_bfloat16(short v);
	__host__ __device__ __nv_bfloat16(unsigned short v);
	__host__ __device__ __nv_bfloat16(int v);
	__host__ __device__ __nv_bfloat16(unsigned int v);
	__host__ __device__ __nv_bfloat16(long v);
	__host__ __device__ __nv_bfloat16(unsigned long v);
	__host__ __device__ __nv_bfloat16(long long v);
	__host__ __device__ __nv_bfloat16(unsigned long long v);
	__host__ __device__ operator signed char() const;
	__host__ __device__ operator unsigned char() const;
	__host__ __device__ operator char() const;
	__host__ __device__ operator short() const;
	__host__ __device__ operator unsigned short() const;
	__host__ __device__ operator int() const;
	__host__ __device__ operator unsigned int() const;
	__host__ __device__ operator long() const;
	__host__ __device__ operator unsigned long() const;
	__host__ __device__ operator long long() const;
	__host__ __device__ operator unsigned long long() const;
	__host__ __device__ __nv_bfloat16 &operator=(short v);
	__host__ __device__ __nv_bfloat16 &operator=(unsigned short v);
	__host__ __device__ __nv_bfloat16 &operator=(int v);
	__host__ __device__ __nv_bfloat16 &operator=(unsigned int v);
	__host__ __device__ __nv_bfloat16 &operator=(long long v);
	__host__ __device__ __nv_bfloat16 &operator=(unsigned long long v);
	__host__ __device__ constexpr operator bool() const { return (__x & 0x7fffu) != 0u; }
};
struct __CUDA_ALIGN__(4) __nv_bfloat162 {
	__nv_bfloat16 x, y;
	__nv_bfloat162() = default;
	__host__ __device__ constexpr __nv_bfloat162(const __nv_bfloat16 &a, const __nv_bfloat16 &b) : x(a), y(b) {}
	__host__ __device__ __nv_bfloat162(const __nv_bfloat162_raw &h2r);
	__host__ __device__ operator __nv_bfloat162_raw() const;
};
typedef __nv_bfloat16 nv_bfloat16;
typedef __nv_bfloat162 nv_bfloat162;

#define MOEC_STUB_BF16_BINOPS(T)                                          \
	__host__ __device__ T operator+(const T &a, const T &b);          \
	__host__ __device__ T operator-(const T &a, const T &b);          \
	__host__ __device__ T operator*(const T &a, const T &b);          \
	__host__ __device__ T operator/(const T &a, const T &b);          \
	__host__ __device__ T &operator+=(T &a, const T &b);              \
	__host__ __device__ T &operator-=(T &a, const T &b);              \
	__host__ __device__ T &operator*=(T &a, const T &b);              \
	__host__ __device__ T &operator/=(T &a, const T &b);              \
	__host__ __device__ T operator+(const T &a);                      \
	__host__ __device__ T operator-(const T &a);                      \
	__host__ __device__ bool operator==(const T &a, const T &b);      \
	__host__ __device__ bool operator!=(const T &a, const T &b);
MOEC_STUB_BF16_BINOPS(__nv_bfloat16)
MOEC_STUB_BF16_BINOPS(__nv_bfloat162)
#undef MOEC_STUB_BF16_BINOPS
__host__ __device__ bool operator<(const __nv_bfloat16 &a, const __nv_bfloat16 &b);
__host__ __device__ bool operator>(const __nv_bfloat16 &a, const __nv_bfloat16 &b);
__host__ __device__ bool operator<=(const __nv_bfloat16 &a, const __nv_bfloat16 &b);
__host__ __device__ bool operator>=(const __nv_bfloat16 &a, const __nv_bfloat16 &b);

__host__ __device__ float __bfloat162float(const __nv_bfloat16 a);
__host__ __device__ __nv_bfloat16 __float2bfloat16(const float a);
__host__ __device__ __nv_bfloat16 __float2bfloat16_rn(const float a);
__host__ __device__ __nv_bfloat16 __float2bfloat16_rz(const float a);
__host__ __device__ __nv_bfloat16 __double2bfloat16(const double a);
__host__ __device__ __nv_bfloat162 __float2bfloat162_rn(const float a);
__host__ __device__ __nv_bfloat162 __floats2bfloat162_rn(const float a, const float b);
__host__ __device__ __nv_bfloat162 __float22bfloat162_rn(const float2 a);
__host__ __device__ float2 __bfloat1622float2(const __nv_bfloat162 a);
__host__ __device__ __nv_bfloat162 __halves2bfloat162(const __nv_bfloat16 a, const __nv_bfloat16 b);
__host__ __device__ __nv_bfloat162 __bfloat162bfloat162(const __nv_bfloat16 a);
__host__ __device__ __nv_bfloat16 __low2bfloat16(const __nv_bfloat162 a);
__host__ __device__ __nv_bfloat16 __high2bfloat16(const __nv_bfloat162 a);
__host__ __device__ float __low2float(const __nv_bfloat162 a);
__host__ __device__ float __high2float(const __nv_bfloat162 a);
__host__ __device__ unsigned short __bfloat16_as_ushort(const __nv_bfloat16 h);
__host__ __device__ __nv_bfloat16 __ushort_as_bfloat16(const unsigned short i);
__host__ __device__ short __bfloat16_as_short(const __nv_bfloat16 h);
__host__ __device__ __nv_bfloat16 __short_as_bfloat16(const short i);
__host__ __device__ __nv_bfloat16 __int2bfloat16_rn(const int i);
__host__ __device__ int __bfloat162int_rn(const __nv_bfloat16 h);
MOEC_STUB_D __nv_bfloat16 __hadd(const __nv_bfloat16 a, const __nv_bfloat16 b);
MOEC_STUB_D __nv_bfloat16 __hsub(const __nv_bfloat16 a, const __nv_bfloat16 b);
MOEC_STUB_D __nv_bfloat16 __hmul(const __nv_bfloat16 a, const __nv_bfloat16 b);
MOEC_STUB_D __nv_bfloat16 __hfma(const __nv_bfloat16 a, const __nv_bfloat16 b, const __nv_bfloat16 c);
MOEC_STUB_D __nv_bfloat16 __hmax(const __nv_bfloat16 a, const __nv_bfloat16 b);
MOEC_STUB_D __nv_bfloat16 __hmin(const __nv_bfloat16 a, const __nv_bfloat16 b);
MOEC_STUB_D __nv_bfloat16 __hneg(const __nv_bfloat16 a);
MOEC_STUB_D __nv_bfloat162 __hadd2(const __nv_bfloat162 a, const __nv_bfloat162 b);
MOEC_STUB_D __nv_bfloat162 __hsub2(const __nv_bfloat162 a, const __nv_bfloat162 b);
MOEC_STUB_D __nv_bfloat162 __hmul2(const __nv_bfloat162 a, const __nv_bfloat162 b);
MOEC_STUB_D __nv_bfloat162 __hfma2(const __nv_bfloat162 a, const __nv_bfloat162 b, const __nv_bfloat162 c);
MOEC_STUB_D __nv_bfloat162 __hmax2(const __nv_bfloat162 a, const __nv_bfloat162 b);
MOEC_STUB_D __nv_bfloat162 __hmin2(const __nv_bfloat162 a, const __nv_bfloat162 b);
MOEC_STUB_D __nv_bfloat162 __hneg2(const __nv_bfloat162 a);
MOEC_STUB_D __nv_bfloat16 __ldg(const __nv_bfloat16 *p);
MOEC_STUB_D __nv_bfloat162 __ldg(const __nv_bfloat162 *p);
MOEC_STUB_D __nv_bfloat16 __shfl_sync(unsigned mask, __nv_bfloat16 var, int lane, int width = warpSize);
MOEC_STUB_D __nv_bfloat16 __shfl_xor_sync(unsigned mask, __nv_bfloat16 var, int lane_mask, int width = warpSize);
MOEC_STUB_D __nv_bfloat16 __shfl_down_sync(unsigned mask, __nv_bfloat16 var, unsigned delta, int width = warpSize);
MOEC_STUB_D __nv_bfloat16 __shfl_up_sync(unsigned mask, __nv_bfloat16 var, unsigned delta, int width = warpSize);
MOEC_STUB_D __nv_bfloat162 __shfl_sync(unsigned mask, __nv_bfloat162 var, int lane, int width = warpSize);
MOEC_STUB_D __nv_bfloat162 __shfl_xor_sync(unsigned mask, __nv_bfloat162 var, int lane_mask, int width = warpSize);
MOEC_STUB_D __nv_bfloat162 __shfl_down_sync(unsigned mask, __nv_bfloat162 var, unsigned delta, int width = warpSize);
MOEC_STUB_D __nv_bfloat16 atomicAdd(__nv_bfloat16 *address, __nv_bfloat16 val);
MOEC_STUB_D __nv_bfloat162 atomicAdd(__nv_bfloat162 *address, __nv_bfloat162 val);

// ---- synchronization and warp primitives ----
MOEC_STUB_D void __syncthreads(void);
MOEC_STUB_D int __syncthreads_count(int predicate);
MOEC_STUB_D int __syncthreads_and(int predicate);
MOEC_STUB_D int __syncthreads_or(int predicate);
MOEC_STUB_D void __syncwarp(unsigned mask = 0xffffffffu);
MOEC_STUB_D void __threadfence(void);
MOEC_STUB_D void __threadfence_block(void);
MOEC_STUB_D void __threadfence_system(void);
MOEC_STUB_D void __nanosleep(unsigned int ns);
MOEC_STUB_D unsigned int __activemask(void);
MOEC_STUB_D unsigned int __ballot_sync(unsigned int mask, int predicate);
MOEC_STUB_D int __all_sync(unsigned int mask, int predicate);
MOEC_STUB_D int __any_sync(unsigned int mask, int predicate);
MOEC_STUB_D long long clock64(void);
MOEC_STUB_D unsigned int __reduce_add_sync(unsigned int mask, unsigned int value);
MOEC_STUB_D int __reduce_add_sync(unsigned int mask, int value);
MOEC_STUB_D unsigned int __reduce_max_sync(unsigned int mask, unsigned int value);
MOEC_STUB_D int __reduce_max_sync(unsigned int mask, int value);
MOEC_STUB_D unsigned int __reduce_min_sync(unsigned int mask, unsigned int value);
MOEC_STUB_D int __reduce_min_sync(unsigned int mask, int value);

// Shuffles: every overload sm_30_intrinsics.h declares.
#define MOEC_STUB_SHFL(T)                                                                          \
	MOEC_STUB_D T __shfl_sync(unsigned mask, T var, int src_lane, int width = warpSize);       \
	MOEC_STUB_D T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = warpSize);  \
	MOEC_STUB_D T __shfl_down_sync(unsigned mask, T var, unsigned int delta, int width = warpSize); \
	MOEC_STUB_D T __shfl_up_sync(unsigned mask, T var, unsigned int delta, int width = warpSize);
MOEC_STUB_SHFL(int)
MOEC_STUB_SHFL(unsigned int)
MOEC_STUB_SHFL(long)
MOEC_STUB_SHFL(unsigned long)
MOEC_STUB_SHFL(long long)
MOEC_STUB_SHFL(unsigned long long)
MOEC_STUB_SHFL(float)
MOEC_STUB_SHFL(double)
#undef MOEC_STUB_SHFL

// ---- atomics ----
#define MOEC_STUB_ATOMIC_INT(T)                                     \
	MOEC_STUB_D T atomicAdd(T *address, T val);                 \
	MOEC_STUB_D T atomicSub(T *address, T val);                 \
	MOEC_STUB_D T atomicMax(T *address, T val);                 \
	MOEC_STUB_D T atomicMin(T *address, T val);                 \
	MOEC_STUB_D T atomicExch(T *address, T val);                \
	MOEC_STUB_D T atomicCAS(T *address, T compare, T val);      \
	MOEC_STUB_D T atomicAnd(T *address, T val);                 \
	MOEC_STUB_D T atomicOr(T *address, T val);                  \
	MOEC_STUB_D T atomicXor(T *address, T val);
MOEC_STUB_ATOMIC_INT(int)
MOEC_STUB_ATOMIC_INT(unsigned int)
MOEC_STUB_ATOMIC_INT(unsigned long long)
#undef MOEC_STUB_ATOMIC_INT
MOEC_STUB_D long long atomicMax(long long *address, long long val);
MOEC_STUB_D long long atomicMin(long long *address, long long val);
MOEC_STUB_D float atomicAdd(float *address, float val);
MOEC_STUB_D double atomicAdd(double *address, double val);
MOEC_STUB_D float atomicExch(float *address, float val);
MOEC_STUB_D float2 atomicAdd(float2 *address, float2 val);
MOEC_STUB_D float4 atomicAdd(float4 *address, float4 val);
MOEC_STUB_D unsigned int atomicInc(unsigned int *address, unsigned int val);

// ---- integer and bit intrinsics ----
MOEC_STUB_D int __popc(unsigned int x);
MOEC_STUB_D int __popcll(unsigned long long x);
MOEC_STUB_D int __clz(int x);
MOEC_STUB_D int __clzll(long long x);
MOEC_STUB_D int __ffs(int x);
MOEC_STUB_D int __ffsll(long long x);
MOEC_STUB_D unsigned int __brev(unsigned int x);
MOEC_STUB_D int __mul24(int x, int y);
MOEC_STUB_D int __mulhi(int x, int y);
MOEC_STUB_D unsigned int __umulhi(unsigned int x, unsigned int y);
MOEC_STUB_D float __int_as_float(int x);
MOEC_STUB_D int __float_as_int(float x);
MOEC_STUB_D float __uint_as_float(unsigned int x);
MOEC_STUB_D unsigned int __float_as_uint(float x);
MOEC_STUB_D double __longlong_as_double(long long x);
MOEC_STUB_D long long __double_as_longlong(double x);
MOEC_STUB_D int __float2int_rn(float x);
MOEC_STUB_D int __float2int_rz(float x);
MOEC_STUB_D int __float2int_rd(float x);
MOEC_STUB_D int __float2int_ru(float x);
MOEC_STUB_D unsigned int __float2uint_rn(float x);
MOEC_STUB_D float __int2float_rn(int x);
MOEC_STUB_D float __uint2float_rn(unsigned int x);

// min/max: the overloads crt/math_functions.h declares (mixed signedness included).
#define MOEC_STUB_MINMAX(R, A, B) \
	__host__ __device__ R min(A a, B b); \
	__host__ __device__ R max(A a, B b);
MOEC_STUB_MINMAX(int, int, int)
MOEC_STUB_MINMAX(unsigned int, unsigned int, unsigned int)
MOEC_STUB_MINMAX(unsigned int, int, unsigned int)
MOEC_STUB_MINMAX(unsigned int, unsigned int, int)
MOEC_STUB_MINMAX(long, long, long)
MOEC_STUB_MINMAX(unsigned long, unsigned long, unsigned long)
MOEC_STUB_MINMAX(unsigned long, long, unsigned long)
MOEC_STUB_MINMAX(unsigned long, unsigned long, long)
MOEC_STUB_MINMAX(long long, long long, long long)
MOEC_STUB_MINMAX(unsigned long long, unsigned long long, unsigned long long)
MOEC_STUB_MINMAX(unsigned long long, long long, unsigned long long)
MOEC_STUB_MINMAX(unsigned long long, unsigned long long, long long)
MOEC_STUB_MINMAX(float, float, float)
MOEC_STUB_MINMAX(double, double, double)
MOEC_STUB_MINMAX(double, float, double)
MOEC_STUB_MINMAX(double, double, float)
#undef MOEC_STUB_MINMAX

// ---- loads, address spaces ----
#define MOEC_STUB_LDG(T) \
	MOEC_STUB_D T __ldg(const T *p); \
	MOEC_STUB_D T __ldcs(const T *p); \
	MOEC_STUB_D T __ldcg(const T *p); \
	MOEC_STUB_D T __ldlu(const T *p); \
	MOEC_STUB_D void __stcs(T *p, T v); \
	MOEC_STUB_D void __stcg(T *p, T v);
MOEC_STUB_LDG(char)
MOEC_STUB_LDG(signed char)
MOEC_STUB_LDG(unsigned char)
MOEC_STUB_LDG(short)
MOEC_STUB_LDG(unsigned short)
MOEC_STUB_LDG(int)
MOEC_STUB_LDG(unsigned int)
MOEC_STUB_LDG(long)
MOEC_STUB_LDG(unsigned long)
MOEC_STUB_LDG(long long)
MOEC_STUB_LDG(unsigned long long)
MOEC_STUB_LDG(float)
MOEC_STUB_LDG(double)
MOEC_STUB_LDG(float2)
MOEC_STUB_LDG(float4)
MOEC_STUB_LDG(int2)
MOEC_STUB_LDG(int4)
MOEC_STUB_LDG(uint2)
MOEC_STUB_LDG(uint4)
#undef MOEC_STUB_LDG
MOEC_STUB_D size_t __cvta_generic_to_shared(const void *p);
MOEC_STUB_D size_t __cvta_generic_to_global(const void *p);
MOEC_STUB_D void *__cvta_shared_to_generic(size_t a);
MOEC_STUB_D unsigned int __isShared(const void *p);
MOEC_STUB_D unsigned int __isGlobal(const void *p);

// ---- float math (single precision, the fast intrinsics, and the double forms) ----
#define MOEC_STUB_F1(name)                           \
	MOEC_STUB_D float name##f(float x);          \
	MOEC_STUB_D double name(double x);           \
	MOEC_STUB_D float name(float x);
#define MOEC_STUB_F2(name)                           \
	MOEC_STUB_D float name##f(float x, float y); \
	MOEC_STUB_D double name(double x, double y); \
	MOEC_STUB_D float name(float x, float y);
MOEC_STUB_F1(exp)
MOEC_STUB_F1(exp2)
MOEC_STUB_F1(expm1)
MOEC_STUB_F1(log)
MOEC_STUB_F1(log2)
MOEC_STUB_F1(log10)
MOEC_STUB_F1(log1p)
MOEC_STUB_F1(sqrt)
MOEC_STUB_F1(rsqrt)
MOEC_STUB_F1(cbrt)
MOEC_STUB_F1(sin)
MOEC_STUB_F1(cos)
MOEC_STUB_F1(tan)
MOEC_STUB_F1(tanh)
MOEC_STUB_F1(sinh)
MOEC_STUB_F1(cosh)
MOEC_STUB_F1(asin)
MOEC_STUB_F1(acos)
MOEC_STUB_F1(atan)
MOEC_STUB_F1(erf)
MOEC_STUB_F1(erfc)
MOEC_STUB_F1(fabs)
MOEC_STUB_F1(floor)
MOEC_STUB_F1(ceil)
MOEC_STUB_F1(trunc)
MOEC_STUB_F1(round)
MOEC_STUB_F1(rint)
MOEC_STUB_F1(nearbyint)
MOEC_STUB_F2(pow)
MOEC_STUB_F2(fmax)
MOEC_STUB_F2(fmin)
MOEC_STUB_F2(fmod)
MOEC_STUB_F2(atan2)
MOEC_STUB_F2(hypot)
MOEC_STUB_F2(copysign)
MOEC_STUB_F2(fdim)
#undef MOEC_STUB_F1
#undef MOEC_STUB_F2
MOEC_STUB_D float fmaf(float x, float y, float z);
MOEC_STUB_D double fma(double x, double y, double z);
MOEC_STUB_D void sincosf(float x, float *s, float *c);
MOEC_STUB_D void __sincosf(float x, float *s, float *c);
MOEC_STUB_D float ldexpf(float x, int e);
MOEC_STUB_D float frexpf(float x, int *e);
MOEC_STUB_D int isnan(float x);
MOEC_STUB_D int isnan(double x);
MOEC_STUB_D int isinf(float x);
MOEC_STUB_D int isinf(double x);
MOEC_STUB_D int isfinite(float x);
MOEC_STUB_D int isfinite(double x);
MOEC_STUB_D int signbit(float x);
MOEC_STUB_D int abs(int x);
MOEC_STUB_D long long llabs(long long x);
MOEC_STUB_D float __expf(float x);
MOEC_STUB_D float __exp10f(float x);
MOEC_STUB_D float __logf(float x);
MOEC_STUB_D float __log2f(float x);
MOEC_STUB_D float __log10f(float x);
MOEC_STUB_D float __powf(float x, float y);
MOEC_STUB_D float __sinf(float x);
MOEC_STUB_D float __cosf(float x);
MOEC_STUB_D float __tanf(float x);
MOEC_STUB_D float __tanhf(float x);
MOEC_STUB_D float __saturatef(float x);
MOEC_STUB_D float __fdividef(float x, float y);
MOEC_STUB_D float __frcp_rn(float x);
MOEC_STUB_D float __fsqrt_rn(float x);
MOEC_STUB_D float __frsqrt_rn(float x);
MOEC_STUB_D float __fmaf_rn(float x, float y, float z);
MOEC_STUB_D float __fadd_rn(float x, float y);
MOEC_STUB_D float __fsub_rn(float x, float y);
MOEC_STUB_D float __fmul_rn(float x, float y);
MOEC_STUB_D float __fdiv_rn(float x, float y);
// Other rounding modes, and the double-precision forms (no contraction into fma).
#define MOEC_STUB_ROUNDED(r)                                          \
	MOEC_STUB_D float __fadd_##r(float x, float y);               \
	MOEC_STUB_D float __fsub_##r(float x, float y);               \
	MOEC_STUB_D float __fmul_##r(float x, float y);               \
	MOEC_STUB_D float __fdiv_##r(float x, float y);               \
	MOEC_STUB_D float __fmaf_##r(float x, float y, float z);      \
	MOEC_STUB_D double __dadd_##r(double x, double y);            \
	MOEC_STUB_D double __dsub_##r(double x, double y);            \
	MOEC_STUB_D double __dmul_##r(double x, double y);            \
	MOEC_STUB_D double __ddiv_##r(double x, double y);            \
	MOEC_STUB_D double __fma_##r(double x, double y, double z);   \
	MOEC_STUB_D double __drcp_##r(double x);                      \
	MOEC_STUB_D double __dsqrt_##r(double x);                     \
	MOEC_STUB_D float __double2float_##r(double x);               \
	MOEC_STUB_D int __double2int_##r(double x);                   \
	MOEC_STUB_D long long __double2ll_##r(double x);              \
	MOEC_STUB_D long long __float2ll_##r(float x);                \
	MOEC_STUB_D float __ll2float_##r(long long x);                \
	MOEC_STUB_D double __ll2double_##r(long long x);
MOEC_STUB_ROUNDED(rz)
MOEC_STUB_ROUNDED(ru)
MOEC_STUB_ROUNDED(rd)
#undef MOEC_STUB_ROUNDED
MOEC_STUB_D double __dadd_rn(double x, double y);
MOEC_STUB_D double __dsub_rn(double x, double y);
MOEC_STUB_D double __dmul_rn(double x, double y);
MOEC_STUB_D double __ddiv_rn(double x, double y);
MOEC_STUB_D double __fma_rn(double x, double y, double z);
MOEC_STUB_D double __drcp_rn(double x);
MOEC_STUB_D double __dsqrt_rn(double x);
MOEC_STUB_D float __double2float_rn(double x);
MOEC_STUB_D int __double2int_rn(double x);
MOEC_STUB_D long long __double2ll_rn(double x);
MOEC_STUB_D long long __float2ll_rn(float x);
MOEC_STUB_D float __ll2float_rn(long long x);
MOEC_STUB_D double __ll2double_rn(long long x);
MOEC_STUB_D double __int2double_rn(int x);
MOEC_STUB_D double __uint2double_rn(unsigned int x);

// printf is a device builtin under CUDA (debugging a template).
extern "C" __device__ int printf(const char *fmt, ...);

#undef MOEC_STUB_HD
#undef MOEC_STUB_D
