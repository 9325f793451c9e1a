// embedding_fwd.cu - token embedding lookup: out[t, :] = table[ids[t], :].
// moec: constants H ACT_BF16
// moec: launch grid=(max(1, min(tokens, 1024))) block=(256)
//
// Shapes (tokens, v0, vocab = runtime):
//   out   [tokens, H] act_t
//   table [vocab, H]  act_t   rows v0 .. v0+vocab-1 of embed_tokens.weight (compute copy):
//                             the whole table (v0 = 0, vocab = V), or a tensor-parallel
//                             rank's vocab shard
//   ids   [tokens]    int
// A token whose id is outside [v0, v0+vocab) gets a zero row (and no gradient in
// embedding_bwd): with a vocab-sharded table the TP ranks' outputs sum to the lookup, and a
// corrupt id can never read out of bounds (the data loader rejects ids >= V anyway).
//
// Geometry: a group of EMB_G threads copies one row in 16-byte slots (EMB_G = slots per row
// rounded up to a power of two, at most 256); EMB_ROWS = 256/EMB_G rows per block (H=128
// fp32: 8; H=2048 bf16: 1); at most 1024 blocks stride over the tokens (any grid >= 1 is
// correct). Rows whose pointers are not 16-byte aligned (H not a multiple of the slot, or
// an unaligned table) copy element by element.
#include "moec_device.cuh"

#if ACT_BF16
#define EMB_VEC 8
#else
#define EMB_VEC 4
#endif
#define EMB_NV ((H + EMB_VEC - 1) / EMB_VEC)
#define EMB_G (EMB_NV <= 1 ? 1 : EMB_NV <= 2 ? 2 : EMB_NV <= 4 ? 4 : EMB_NV <= 8 ? 8 : EMB_NV <= 16 ? 16 \
               : EMB_NV <= 32 ? 32 : EMB_NV <= 64 ? 64 : EMB_NV <= 128 ? 128 : 256)
#define EMB_ROWS (256 / EMB_G)

extern "C" __global__ void __launch_bounds__(256)
MOEC_KERNEL(act_t *out, const act_t *table, const int *ids, int tokens, int v0, int vocab)
{
	const int g = threadIdx.x / EMB_G, lane = threadIdx.x % EMB_G;
	const bool vec = H % EMB_VEC == 0 && (((unsigned long long)out | (unsigned long long)table) & 15) == 0;
	for (long t = (long)blockIdx.x * EMB_ROWS + g; t < tokens; t += (long)gridDim.x * EMB_ROWS) {
		const long id = (long)ids[t] - v0;
		const bool ok = id >= 0 && id < vocab;
		act_t *dst = out + t * H;
		const act_t *src = table + (ok ? id : 0) * H;
		if (vec) {
			uint4 *d = reinterpret_cast<uint4 *>(dst);
			const uint4 *s = reinterpret_cast<const uint4 *>(src);
			for (int v = lane; v < EMB_NV; v += EMB_G)
				d[v] = ok ? __ldg(s + v) : make_uint4(0, 0, 0, 0);
		} else {
			for (int c = lane; c < H; c += EMB_G)
				act_store(dst + c, ok ? act_load(src + c) : 0.0f);
		}
	}
}
