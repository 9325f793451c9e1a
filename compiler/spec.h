/* spec.h - the resolved training-job spec: model, moe, parallel, train, data, checkpoint.
 *
 * One struct per YAML section. Every field is described once in schema.c (its key, HF
 * aliases, type, range, default and help); parse.c fills this struct from that table, and
 * records in `origin` where each value came from (default, preset, HF config.json, the
 * user's file, a --set override, or derived by check.c).
 *
 * Shape legend used across the compiler:
 *   H = hidden size, L = layers, E = routed experts, K = top-k, I = expert intermediate,
 *   D = dense intermediate, V = vocab, NH = query heads, NKV = kv heads, HD = head dim,
 *   T = tokens (micro_batch * seq_len).
 */
#ifndef MOEC_SPEC_H
#define MOEC_SPEC_H

#include <stdbool.h>
#include <stdint.h>

/* ---- enums (names in schema.c, index = value) ---- */
enum model_family { FAMILY_QWEN3_MOE, FAMILY_MIXTRAL, FAMILY_DEEPSEEK_V3, FAMILY_GPT_OSS };
enum attention_kind { ATTENTION_GQA, ATTENTION_MLA };
enum activation_kind { ACTIVATION_SWIGLU, ACTIVATION_SWIGLU_CLAMPED };
enum router_kind { ROUTER_SOFTMAX_TOPK, ROUTER_SIGMOID_TOPK };
enum aux_scope { AUX_SCOPE_ALL_LAYERS, AUX_SCOPE_PER_LAYER };
enum drop_policy { DROP_NONE, DROP_LOW_PROB, DROP_LATE_TOKENS };
enum dtype { DTYPE_FP32, DTYPE_BF16, DTYPE_FP16, DTYPE_FP8, DTYPE_NF4, DTYPE_COUNT };
enum gpu_type { GPU_H100, GPU_H200, GPU_B200, GPU_A100, GPU_CUSTOM };
enum train_mode { TRAIN_FULL, TRAIN_LORA };
enum lr_schedule { SCHEDULE_COSINE, SCHEDULE_LINEAR, SCHEDULE_CONSTANT };
enum recompute_policy { RECOMPUTE_NONE, RECOMPUTE_SELECTIVE, RECOMPUTE_FULL };
enum data_format { DATA_AUTO, DATA_MEGATRON, DATA_LLMC, DATA_RAW_U32 };

/* A list value (mlp_only_layers, lora target modules, data paths). */
struct int_list {
	int n;
	int64_t *v;
};
struct str_list {
	int n;
	char **v;
};

struct model_spec {
	char *name;
	int family;                  /* enum model_family */
	int attention;               /* enum attention_kind */
	int64_t hidden_size;         /* H */
	int64_t num_layers;          /* L */
	int64_t num_heads;           /* NH */
	int64_t num_kv_heads;        /* NKV; 0 = NH (derived) */
	int64_t head_dim;            /* HD; 0 = H / NH (derived) */
	int64_t vocab_size;          /* V */
	int64_t max_seq_len;
	double rope_theta;
	double norm_eps;
	bool qk_norm;                /* per-head RMSNorm on q and k before RoPE (Qwen3) */
	bool tie_embeddings;
	bool attention_bias;         /* q/k/v/o biases (GPT-OSS) */
	bool attention_sinks;        /* learned per-head sink logit (GPT-OSS) */
	int64_t sliding_window;      /* 0 = none; applied on alternate layers (GPT-OSS) */
	int64_t first_k_dense;       /* layers [0, first_k_dense) use a dense MLP */
	int64_t dense_intermediate_size; /* D */
	int64_t decoder_sparse_step; /* Qwen: layer i is MoE iff (i+1) % step == 0 */
	struct int_list mlp_only_layers; /* Qwen: these layers are dense */
	/* Multi-head latent attention (DeepSeek-V3); used when attention == mla. */
	int64_t q_lora_rank;
	int64_t kv_lora_rank;
	int64_t qk_nope_head_dim;
	int64_t qk_rope_head_dim;
	int64_t v_head_dim;
	char *hf_config;             /* path of an imported HF config.json, if any */
};

struct moe_spec {
	int64_t num_experts;         /* E */
	int64_t top_k;               /* K */
	int64_t moe_intermediate_size; /* I */
	int64_t num_shared_experts;
	int64_t shared_expert_intermediate_size; /* 0 = I (derived) */
	bool shared_expert_gate;     /* sigmoid gate on the shared expert output */
	int activation;              /* enum activation_kind */
	bool expert_bias;            /* biases in expert projections (GPT-OSS) */
	int router;                  /* enum router_kind */
	bool router_bias;            /* bias in the router linear (GPT-OSS) */
	bool norm_topk_prob;
	double routed_scaling_factor;
	int64_t n_group;             /* group-limited routing (DeepSeek-V3); 1 = off */
	int64_t topk_group;
	double router_aux_loss_coef;
	int aux_loss_scope;          /* enum aux_scope */
	double seq_aux_loss_coef;
	double router_z_loss_coef;
	double bias_update_rate;     /* aux-loss-free balancing; sigmoid routers only */
	double capacity_factor;      /* 0 = dropless */
	int drop_policy;             /* enum drop_policy */
	int router_dtype;            /* enum dtype */
};

struct parallel_spec {
	int64_t nodes;
	int64_t gpus_per_node;
	int gpu;                     /* enum gpu_type */
	double gpu_memory_gib;       /* 0 = the GPU type's (derived) */
	int64_t dp;                  /* attention data parallel; 0 = world / tp (derived) */
	int64_t tp;                  /* attention tensor parallel */
	int64_t ep;                  /* expert parallel */
	int64_t pp;                  /* pipeline parallel: must stay 1 (rejected for MoE) */
	bool shard_optimizer;        /* optimizer state + master weights sharded over dp/edp */
	char *cluster;               /* cluster file path */
};

struct lora_spec {
	int64_t rank;
	double alpha;
	double dropout;
	struct str_list target_modules;
};

struct train_spec {
	int mode;                    /* enum train_mode */
	struct lora_spec lora;
	bool train_router;
	int precision;               /* enum dtype: compute precision */
	int base_dtype;              /* enum dtype: frozen base weights under LoRA */
	int64_t seq_len;
	int64_t micro_batch;
	int64_t grad_accum;
	int64_t steps;
	double lr;
	double min_lr;
	double adam_beta1;
	double adam_beta2;
	double adam_eps;
	double weight_decay;
	int schedule;                /* enum lr_schedule */
	int64_t warmup_steps;
	double max_grad_norm;        /* 0 = no clipping */
	int recompute;               /* enum recompute_policy */
	int64_t seed;
	bool allow_spills;
};

struct data_spec {
	struct str_list paths;
	int format;                  /* enum data_format */
	bool packing;
	bool shuffle;
	int64_t eod_token;           /* -1 = none */
};

struct checkpoint_spec {
	char *dir;
	int64_t every;
	int64_t keep;
	char *init_from;             /* HF model directory */
	bool resume;
};

struct cluster_spec {
	char *name;
	int64_t nvlink_domain;       /* GPUs sharing one NVLink domain */
	double intra_node_gbps;      /* GB/s per GPU inside the NVLink domain */
	double inter_node_gbps;      /* GB/s per GPU across nodes */
};

/* In rising priority: a source sets a value only when its kind is >= the kind that set it
 * before, so the order sources are read in does not matter across kinds. */
enum origin_kind {
	ORIGIN_UNSET,
	ORIGIN_DEFAULT,
	ORIGIN_DERIVED,   /* computed by check.c from other values ("0 = auto" keys) */
	ORIGIN_PRESET,    /* a file pulled in by include: */
	ORIGIN_HF_CONFIG, /* model.hf_config */
	ORIGIN_CLUSTER,   /* the cluster file */
	ORIGIN_FILE,      /* the user's spec */
	ORIGIN_OVERRIDE,  /* --set */
};

struct source;

/* Where one value came from; loc points into a loaded source (NULL for defaults). */
struct origin {
	enum origin_kind kind;
	const struct source *src;
	int line, col;
};

#define SPEC_MAX_FIELDS 160

struct spec {
	char *name;
	struct model_spec model;
	struct moe_spec moe;
	struct parallel_spec parallel;
	struct train_spec train;
	struct data_spec data;
	struct checkpoint_spec checkpoint;
	struct cluster_spec cluster;
	struct origin origin[SPEC_MAX_FIELDS]; /* indexed like schema_fields[] */
	struct origin sections[8];             /* where the user's file opened each section (parse.c) */
	const struct source *main_source;      /* the user's spec file */
	uint64_t hash;                         /* of the resolved values */
};

void spec_free(struct spec *s);

#endif
