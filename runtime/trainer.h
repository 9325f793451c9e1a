/* trainer.h - the contract between a generated gen/model.c and the runtime's training loop.
 *
 * `moec build` writes gen/model.c: the model's tensor table, its arenas' sizes and the step
 * itself (forward, backward, optimizer) as straight-line calls of the kernel twins. It ends
 * with `int main(argc, argv) { return moert_train_main(&moec_model, argc, argv); }`, so
 * everything that does not depend on the model — flags, data, schedule, checkpoints, signals,
 * logging — lives once, here in the runtime (trainer.c), and the generated file stays
 * readable.
 *
 * Memory: one parameter arena of fp32 masters (`param_floats`), the same size for
 * gradients, one for each AdamW moment (as large, or under parallel.shard_optimizer this
 * rank's part of it: zero.h), and one activation arena (`act_floats`). The step
 * code addresses them by offsets the compiler computed; nothing is allocated inside the
 * step loop.
 */
#ifndef MOERT_TRAINER_H
#define MOERT_TRAINER_H
#include <stdint.h>

#include "comm.h"
#include "ep.h"
#include "zero.h"

/* How a tensor is initialized when training starts from scratch (HF's _init_weights). */
enum moert_init {
	MOERT_INIT_NORMAL, /* normal(0, init_std): linear weights, embeddings */
	MOERT_INIT_ONES,   /* RMSNorm weights */
	MOERT_INIT_ZEROS,
};

/* One checkpoint tensor: its Hugging Face name and where it lives in the parameter arena
 * (every HF tensor is one contiguous range, also when experts are stacked in storage). */
struct moert_tensor {
	const char *name;
	long long offset;              /* floats from the start of the parameter arena */
	int ndim;
	unsigned long long shape[4];
	int layer;                     /* -1: not in a decoder layer */
	unsigned char decay;           /* AdamW weight decay applies (not norms, biases) */
	unsigned char init;            /* enum moert_init */
	int expert;                    /* routed expert index (held by EP rank expert / experts_per_rank), or -1 */
	int tp_dim;                    /* split over tp ranks along this dimension (a rank holds slice tp_index), or -1 */
};

/* Elements of the whole (unsplit) tensor. */
long long moert_tensor_numel(const struct moert_tensor *t);

/* What one micro-step measured (filled by the generated step). */
struct moert_stats {
	double ce_loss;                /* mean cross-entropy over counted targets */
	double counted;                /* targets counted (labels != -100) */
	double aux_loss;               /* balance loss before its coefficient */
	double z_loss;                 /* z-loss before its coefficient */
	double loss;                   /* ce + aux_coef * aux + z_coef * z */
	long long dropped;             /* (token, expert) pairs over capacity */
	int *expert_count;             /* [moe_layers][experts] tokens routed, this micro-step */
};

/* One rank's micro-batch, [micro_batch * seq_len] row-major (data.h's batcher layout). */
struct moert_batch {
	const int32_t *input_ids, *labels, *positions, *doc_ids;
};

/* The arenas a step runs on: host memory on the CPU backend; on the CUDA backend device
 * addresses (never dereferenced on the host) plus what the CUDA step needs. */
struct moert_run {
	float *params;                                  /* [fp32_floats] fp32 weights (zero.h) */
	float *grads;                                   /* [param_floats] */
	float *exp_avg, *exp_avg_sq;                    /* [zero.floats] each: this rank's part (zero.h) */
	float *master;                                  /* [zero.floats] a sharded bf16 step's fp32 masters of its
	                                                 * ranges (params then holds the norms only), else NULL */
	struct moert_zero zero;                         /* which part of AdamW's state this rank keeps */
	void *params16;                                  /* bf16 steps: bf16 copies of params (AdamW writes them) */
	float *acts;                                     /* [act_floats] */
	float *logits_out;                               /* optional, host [tokens, vocab]: the forward's logits */
	const float *router_bias;                        /* NULL, or a selection bias [experts] (test hook) */
	/* CUDA backend only */
	struct moert_cuda *cuda;                         /* device_cuda.h */
	void **cuda_fn;                                  /* CUfunction per kernel, model order */
	void *cuda_stream;                               /* CUstream */
	float *host_buf;                                 /* [stats_floats + 1]: what GET copies back */
	/* several ranks (NULL / unused with one) */
	struct moert_comm *comm;
	struct moert_ep_route *ep;                       /* [moe_layers] when the layout's ep > 1 */
	struct moert_profile *prof;                      /* --profile (profile.h), else NULL */
};

/* One kernel's cubin, embedded in the trainer (gen/cubins.S), and its dynamic shared memory. */
struct moert_kernel_image {
	const char *name;
	const unsigned char *begin, *end;
	unsigned dyn_smem;
};

struct moert_model {
	const char *name;                /* spec name */
	const char *generated_by;        /* "generated by moec from SPEC@HASH" */
	uint64_t spec_hash;
	uint64_t model_hash;             /* hash of the tensor table: names and shapes */
	/* sizes */
	int seq_len, micro_batch, grad_accum;
	int vocab, hidden, layers, moe_layers, experts, top_k;
	int expert_inter;                /* I */
	long long tokens;                /* micro_batch * seq_len */
	long long param_floats, act_floats, n_params;
	double flops_per_token;          /* forward + backward, for MFU and TFLOP/s */
	int n_tensors;
	const struct moert_tensor *tensors;
	/* training defaults from the spec (flags override) */
	long long steps;
	double lr, min_lr, beta1, beta2, eps, weight_decay, max_grad_norm, init_std;
	double aux_coef, z_coef;
	int warmup_steps;
	const char *schedule;            /* cosine | linear | constant */
	uint64_t seed;
	int n_data_paths;
	const char *const *data_paths;   /* resolved against the spec's directory */
	const char *data_format;
	long long eod_token;
	int shuffle;
	const char *ckpt_dir;            /* relative to the working directory */
	int ckpt_every, ckpt_keep, ckpt_resume;
	const char *init_from;           /* HF model dir or NULL */
	long long stats_floats;          /* the block of statistics the host reads after a forward */
	int act_bf16;                    /* activations and GEMM weights in bf16 (fp32 masters) */
	struct moert_layout layout;      /* ranks: world = dp x tp = ep x edp */
	int experts_per_rank;            /* E / ep: this rank's share of each MoE layer */
	long long experts_begin;         /* parameter offset where the expert blocks start */
	long long split_begin;           /* parameter offset where the tp-split blocks start (to experts_begin) */
	int shard_optimizer;             /* parallel.shard_optimizer: AdamW's moments split over dp / edp (zero.h) */
	long long fp32_floats;           /* the fp32 weights kept whole: param_floats, or a sharded bf16 step's norms */
	/* gradient ranges {offset, floats} the trainer zeroes before an optimizer step's first
	 * micro-batch: the blocks whose producers only add; every other gradient is overwritten
	 * by its first write, in the micro-step called with first = 1 (compiler/step.c) */
	int n_zero_ranges;
	const long long (*zero_ranges)[2];
	/* the step, per backend; first: the optimizer step's first micro-batch */
	void (*micro_step)(const struct moert_run *r, const struct moert_batch *b, float dloss, int first,
	                   struct moert_stats *st);
	/* Global gradient norm (before clipping), then clip + AdamW with this lr at step (1-based). */
	double (*optimizer_step)(const struct moert_run *r, double lr, int step);
	void (*micro_step_cuda)(const struct moert_run *r, const struct moert_batch *b, float dloss, int first,
	                        struct moert_stats *st);
	double (*optimizer_step_cuda)(const struct moert_run *r, double lr, int step);
	void (*setup_cuda)(const struct moert_run *r); /* once, after the arenas are on the device */
	int n_kernels;
	const struct moert_kernel_image *kernels;
};

/* The whole trainer: flags, data, init or resume, the loop, checkpoints, logs, signals. */
int moert_train_main(const struct moert_model *m, int argc, char **argv);

#endif
