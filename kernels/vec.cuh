// vec.cuh - 16-byte "slot" access to act_t rows, shared by rmsnorm_fwd.cu, rmsnorm_bwd.cu,
// embedding_bwd.cu and add.cu: a slot is SLOT_ACT elements (8 bf16 / 4 fp32) as raw bits in
// a uint4, so a row moves with one 16-byte access per slot when it is 16-byte aligned.
// Included after moec_device.cuh; reads ACT_BF16. The helpers are static: their bodies
// depend on ACT_BF16 under one signature, and the emulators (tests/kernels/core_emu) link
// bf16 and fp32 instances into one program, where same-named inline functions would merge.
#ifndef MOEC_VEC_CUH
#define MOEC_VEC_CUH

#define SLOT_ACT (ACT_BF16 ? 8 : 4) // act_t per 16-byte slot

static __device__ __forceinline__ void slot_unpack(uint4 u, float *f)
{
#if ACT_BF16
	const unsigned int w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
	for (int i = 0; i < 4; i++) {
		f[2 * i] = __uint_as_float(w[i] << 16);
		f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
	}
#else
	f[0] = __uint_as_float(u.x);
	f[1] = __uint_as_float(u.y);
	f[2] = __uint_as_float(u.z);
	f[3] = __uint_as_float(u.w);
#endif
}

static __device__ __forceinline__ uint4 slot_pack(const float *f)
{
#if ACT_BF16
	unsigned int w[4];
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__nv_bfloat162 h = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
		w[i] = *reinterpret_cast<unsigned int *>(&h);
	}
	return make_uint4(w[0], w[1], w[2], w[3]);
#else
	return make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]),
	                  __float_as_uint(f[3]));
#endif
}

// Slot s of a row of n elements: one 16-byte load when the row is aligned (vec), else
// element loads of the n - s*SLOT_ACT valid elements with zeros after them.
static __device__ __forceinline__ uint4 slot_load(const act_t *row, int s, bool vec, int n)
{
	if (vec)
		return *reinterpret_cast<const uint4 *>(row + s * SLOT_ACT);
	float f[SLOT_ACT];
#pragma unroll
	for (int e = 0; e < SLOT_ACT; e++)
		f[e] = s * SLOT_ACT + e < n ? act_load(row + s * SLOT_ACT + e) : 0.0f;
	return slot_pack(f); // exact: the values are already representable in act_t
}

static __device__ __forceinline__ void slot_store(act_t *row, int s, const float *f, bool vec, int n)
{
	if (vec) {
		*reinterpret_cast<uint4 *>(row + s * SLOT_ACT) = slot_pack(f);
		return;
	}
#pragma unroll
	for (int e = 0; e < SLOT_ACT; e++)
		if (s * SLOT_ACT + e < n)
			act_store(row + s * SLOT_ACT + e, f[e]);
}

// The SLOT_ACT fp32 values of a read-only fp32 row (a weight) that line up with act_t slot s,
// through the read-only cache; zeros past n.
static __device__ __forceinline__ void slot_ldg_f32(const float *w, int s, bool vec, int n, float *f)
{
	if (vec) {
#pragma unroll
		for (int q = 0; q < SLOT_ACT / 4; q++) {
			float4 t = __ldg(reinterpret_cast<const float4 *>(w + s * SLOT_ACT) + q);
			f[4 * q] = t.x, f[4 * q + 1] = t.y, f[4 * q + 2] = t.z, f[4 * q + 3] = t.w;
		}
		return;
	}
#pragma unroll
	for (int e = 0; e < SLOT_ACT; e++)
		f[e] = s * SLOT_ACT + e < n ? __ldg(w + s * SLOT_ACT + e) : 0.0f;
}

#endif
