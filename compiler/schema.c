/* schema.c - every spec key in one table. See schema.h. */
#include "schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const family_names[] = {"qwen3_moe", "mixtral", "deepseek_v3", "gpt_oss", NULL};
const char *const attention_names[] = {"gqa", "mla", NULL};
const char *const activation_names[] = {"swiglu|silu", "swiglu_clamped", NULL};
const char *const router_names[] = {"softmax_topk|softmax", "sigmoid_topk|sigmoid", NULL};
const char *const aux_scope_names[] = {"all_layers|global", "per_layer", NULL};
const char *const drop_names[] = {"none", "low_prob|probs", "late_tokens|position", NULL};
const char *const dtype_names[] = {"fp32|float32", "bf16|bfloat16", "fp16|float16", "fp8|float8_e4m3", "nf4", NULL};
const char *const gpu_names[] = {"h100", "h200", "b200", "a100", "custom", NULL};
const char *const mode_names[] = {"full", "lora", NULL};
const char *const schedule_names[] = {"cosine", "linear", "constant", NULL};
const char *const recompute_names[] = {"none", "selective", "full", NULL};
const char *const format_names[] = {"auto", "megatron", "llmc", "raw_u32", NULL};

#define OFF(m) offsetof(struct spec, m)
#define BIG 1e18

/* clang-format off */
const struct field schema_fields[] = {
	{"name", FIELD_STRING, OFF(name), NULL, NULL, 0, 0, NULL, NULL, "job name, used for build and log names"},

	/* ---- model ---- */
	{"model.name", FIELD_STRING, OFF(model.name), NULL, "_name_or_path", 0, 0, NULL, NULL, "model name (e.g. Qwen3-30B-A3B)"},
	{"model.family", FIELD_ENUM, OFF(model.family), "model.model_type", "model_type", 0, 0, family_names, "qwen3_moe", "architecture family: tensor names, attention and MLP variants"},
	{"model.attention", FIELD_ENUM, OFF(model.attention), NULL, NULL, 0, 0, attention_names, "gqa", "gqa (grouped-query) or mla (multi-head latent, DeepSeek-V3)"},
	{"model.hidden_size", FIELD_INT, OFF(model.hidden_size), "model.hidden,model.d_model", "hidden_size", 1, 1 << 20, NULL, NULL, "H, the residual stream width"},
	{"model.num_layers", FIELD_INT, OFF(model.num_layers), "model.num_hidden_layers", "num_hidden_layers", 1, 4096, NULL, NULL, "L, decoder layers"},
	{"model.num_heads", FIELD_INT, OFF(model.num_heads), "model.num_attention_heads", "num_attention_heads", 1, 4096, NULL, NULL, "query heads"},
	{"model.num_kv_heads", FIELD_INT, OFF(model.num_kv_heads), "model.num_key_value_heads", "num_key_value_heads", 0, 4096, NULL, "0", "key/value heads (GQA); 0 = num_heads"},
	{"model.head_dim", FIELD_INT, OFF(model.head_dim), NULL, "head_dim", 0, 4096, NULL, "0", "per-head width; 0 = hidden_size / num_heads"},
	{"model.vocab_size", FIELD_INT, OFF(model.vocab_size), NULL, "vocab_size", 1, 1 << 24, NULL, NULL, "V, vocabulary size"},
	{"model.max_seq_len", FIELD_INT, OFF(model.max_seq_len), "model.max_position_embeddings", "max_position_embeddings", 1, 1 << 24, NULL, "4096", "longest sequence the position encoding supports"},
	{"model.rope_theta", FIELD_FLOAT, OFF(model.rope_theta), NULL, "rope_theta", 1, BIG, NULL, "10000", "RoPE base"},
	{"model.norm_eps", FIELD_FLOAT, OFF(model.norm_eps), "model.rms_norm_eps", "rms_norm_eps", 0, 1, NULL, "1e-6", "RMSNorm epsilon"},
	{"model.qk_norm", FIELD_BOOL, OFF(model.qk_norm), NULL, NULL, 0, 0, NULL, "false", "per-head RMSNorm of q and k before RoPE (Qwen3)"},
	{"model.tie_embeddings", FIELD_BOOL, OFF(model.tie_embeddings), "model.tie_word_embeddings", "tie_word_embeddings", 0, 0, NULL, "false", "LM head shares the embedding matrix"},
	{"model.attention_bias", FIELD_BOOL, OFF(model.attention_bias), NULL, "attention_bias", 0, 0, NULL, "false", "biases on q/k/v/o projections"},
	{"model.attention_sinks", FIELD_BOOL, OFF(model.attention_sinks), NULL, NULL, 0, 0, NULL, "false", "learned per-head sink logits (GPT-OSS)"},
	{"model.sliding_window", FIELD_INT, OFF(model.sliding_window), NULL, "sliding_window", 0, 1 << 24, NULL, "0", "window of the alternating sliding-window layers; 0 = none"},
	{"model.first_k_dense", FIELD_INT, OFF(model.first_k_dense), "model.first_k_dense_replace", "first_k_dense_replace", 0, 4096, NULL, "0", "the first k layers use a dense MLP"},
	{"model.dense_intermediate_size", FIELD_INT, OFF(model.dense_intermediate_size), "model.intermediate_size", "intermediate_size", 0, 1 << 24, NULL, "0", "D, width of dense MLP layers"},
	{"model.decoder_sparse_step", FIELD_INT, OFF(model.decoder_sparse_step), NULL, "decoder_sparse_step", 1, 4096, NULL, "1", "layer i is MoE iff (i+1) % step == 0 (Qwen)"},
	{"model.mlp_only_layers", FIELD_INT_LIST, OFF(model.mlp_only_layers), NULL, "mlp_only_layers", 0, 4095, NULL, "[]", "layer indices forced dense (Qwen)"},
	{"model.q_lora_rank", FIELD_INT, OFF(model.q_lora_rank), NULL, "q_lora_rank", 0, 1 << 20, NULL, "0", "MLA: query compression rank; 0 = uncompressed q"},
	{"model.kv_lora_rank", FIELD_INT, OFF(model.kv_lora_rank), NULL, "kv_lora_rank", 0, 1 << 20, NULL, "0", "MLA: key/value compression rank"},
	{"model.qk_nope_head_dim", FIELD_INT, OFF(model.qk_nope_head_dim), NULL, "qk_nope_head_dim", 0, 4096, NULL, "0", "MLA: per-head q/k width without RoPE"},
	{"model.qk_rope_head_dim", FIELD_INT, OFF(model.qk_rope_head_dim), NULL, "qk_rope_head_dim", 0, 4096, NULL, "0", "MLA: per-head q/k width with RoPE"},
	{"model.v_head_dim", FIELD_INT, OFF(model.v_head_dim), NULL, "v_head_dim", 0, 4096, NULL, "0", "MLA: per-head value width"},
	{"model.hf_config", FIELD_STRING, OFF(model.hf_config), NULL, NULL, 0, 0, NULL, NULL, "import a Hugging Face config.json (path relative to this file)"},

	/* ---- moe ---- */
	{"moe.num_experts", FIELD_INT, OFF(moe.num_experts), "moe.n_routed_experts,moe.num_local_experts,model.num_experts,model.n_routed_experts,model.num_local_experts", "num_experts,num_local_experts,n_routed_experts", 1, 1 << 16, NULL, NULL, "E, routed experts per MoE layer"},
	{"moe.top_k", FIELD_INT, OFF(moe.top_k), "moe.num_experts_per_tok,moe.experts_per_token,model.num_experts_per_tok,model.experts_per_token", "num_experts_per_tok,experts_per_token", 1, 1 << 16, NULL, NULL, "K, experts each token is routed to"},
	{"moe.moe_intermediate_size", FIELD_INT, OFF(moe.moe_intermediate_size), "moe.intermediate_size,model.moe_intermediate_size", "moe_intermediate_size", 1, 1 << 24, NULL, NULL, "I, width of one expert's MLP"},
	{"moe.num_shared_experts", FIELD_INT, OFF(moe.num_shared_experts), "moe.n_shared_experts,model.n_shared_experts", "n_shared_experts", 0, 64, NULL, "0", "always-active shared experts"},
	{"moe.shared_expert_intermediate_size", FIELD_INT, OFF(moe.shared_expert_intermediate_size), "model.shared_expert_intermediate_size", "shared_expert_intermediate_size", 0, 1 << 24, NULL, "0", "width of one shared expert; 0 = moe_intermediate_size"},
	{"moe.shared_expert_gate", FIELD_BOOL, OFF(moe.shared_expert_gate), NULL, NULL, 0, 0, NULL, "false", "sigmoid gate on the shared expert output (Qwen2-MoE style)"},
	{"moe.activation", FIELD_ENUM, OFF(moe.activation), NULL, NULL, 0, 0, activation_names, "swiglu", "expert activation: swiglu, or GPT-OSS's clamped swiglu"},
	{"moe.expert_bias", FIELD_BOOL, OFF(moe.expert_bias), NULL, NULL, 0, 0, NULL, "false", "biases in expert projections (GPT-OSS)"},
	{"moe.router", FIELD_ENUM, OFF(moe.router), "moe.scoring_func,model.scoring_func", "scoring_func", 0, 0, router_names, "softmax_topk", "softmax_topk (Qwen, Mixtral, GPT-OSS) or sigmoid_topk (DeepSeek-V3)"},
	{"moe.router_bias", FIELD_BOOL, OFF(moe.router_bias), NULL, NULL, 0, 0, NULL, "false", "bias in the router linear (GPT-OSS)"},
	{"moe.norm_topk_prob", FIELD_BOOL, OFF(moe.norm_topk_prob), "model.norm_topk_prob", "norm_topk_prob", 0, 0, NULL, "true", "renormalize the k chosen weights to sum to 1"},
	{"moe.routed_scaling_factor", FIELD_FLOAT, OFF(moe.routed_scaling_factor), "model.routed_scaling_factor", "routed_scaling_factor", 0, 1e6, NULL, "1.0", "multiplies the routed experts' output"},
	{"moe.n_group", FIELD_INT, OFF(moe.n_group), "model.n_group", "n_group", 1, 1 << 16, NULL, "1", "expert groups for group-limited routing; 1 = off"},
	{"moe.topk_group", FIELD_INT, OFF(moe.topk_group), "model.topk_group", "topk_group", 1, 1 << 16, NULL, "1", "groups each token may route into"},
	{"moe.router_aux_loss_coef", FIELD_FLOAT, OFF(moe.router_aux_loss_coef), "moe.aux_loss_coef,model.router_aux_loss_coef", "router_aux_loss_coef", 0, 1e3, NULL, "0.001", "load-balancing loss weight"},
	{"moe.aux_loss_scope", FIELD_ENUM, OFF(moe.aux_loss_scope), NULL, NULL, 0, 0, aux_scope_names, "all_layers", "all_layers: one loss over every MoE layer's router (HF); per_layer: averaged per layer (Megatron)"},
	{"moe.seq_aux_loss_coef", FIELD_FLOAT, OFF(moe.seq_aux_loss_coef), NULL, "aux_loss_alpha", 0, 1e3, NULL, "0", "per-sequence balance loss weight (DeepSeek-V3)"},
	{"moe.router_z_loss_coef", FIELD_FLOAT, OFF(moe.router_z_loss_coef), "moe.z_loss_coef,model.router_z_loss_coef", "router_z_loss_coef", 0, 1e3, NULL, "0", "ST-MoE z-loss weight: coef * mean(logsumexp(logits)^2)"},
	{"moe.bias_update_rate", FIELD_FLOAT, OFF(moe.bias_update_rate), NULL, NULL, 0, 1, NULL, "0", "aux-loss-free balancing: per-expert bias step (sigmoid routers)"},
	{"moe.capacity_factor", FIELD_FLOAT, OFF(moe.capacity_factor), "moe.expert_capacity_factor", NULL, 0, 64, NULL, "0", "expert capacity = factor * T * K / E tokens; 0 = dropless"},
	{"moe.drop_policy", FIELD_ENUM, OFF(moe.drop_policy), NULL, NULL, 0, 0, drop_names, "none", "which tokens overflow an expert's capacity: none, low_prob or late_tokens"},
	{"moe.router_dtype", FIELD_ENUM, OFF(moe.router_dtype), NULL, NULL, 0, 0, dtype_names, "fp32", "router logits / softmax precision"},

	/* ---- parallel ---- */
	{"parallel.nodes", FIELD_INT, OFF(parallel.nodes), "parallel.num_nodes,cluster.nodes", NULL, 1, 65536, NULL, "1", "machines"},
	{"parallel.gpus_per_node", FIELD_INT, OFF(parallel.gpus_per_node), "cluster.gpus_per_node,parallel.gpus", NULL, 1, 64, NULL, "1", "GPUs on each machine"},
	{"parallel.gpu", FIELD_ENUM, OFF(parallel.gpu), "cluster.gpu", NULL, 0, 0, gpu_names, "h100", "GPU type (sets memory and bandwidth)"},
	{"parallel.gpu_memory_gib", FIELD_FLOAT, OFF(parallel.gpu_memory_gib), "cluster.gpu_memory_gib", NULL, 0, 1e6, NULL, "0", "usable memory per GPU; 0 = the GPU type's"},
	{"parallel.dp", FIELD_INT, OFF(parallel.dp), "parallel.data_parallel_size", NULL, 0, 1 << 20, NULL, "0", "data-parallel replicas of attention/dense weights; 0 = world / tp"},
	{"parallel.tp", FIELD_INT, OFF(parallel.tp), "parallel.tensor_parallel_size,parallel.tp_size", NULL, 1, 1024, NULL, "1", "tensor-parallel ranks for attention and dense layers"},
	{"parallel.ep", FIELD_INT, OFF(parallel.ep), "parallel.expert_parallel_size,parallel.ep_size", NULL, 1, 1 << 16, NULL, "1", "expert-parallel ranks: each holds num_experts / ep experts"},
	{"parallel.pp", FIELD_INT, OFF(parallel.pp), "parallel.pipeline_parallel_size,parallel.pp_size", NULL, 1, 1024, NULL, "1", "pipeline parallelism: not supported for MoE, must be 1"},
	{"parallel.shard_optimizer", FIELD_BOOL, OFF(parallel.shard_optimizer), "parallel.zero1,parallel.distributed_optimizer", NULL, 0, 0, NULL, "false", "shard master weights and AdamW state over data-parallel ranks (ZeRO-1)"},
	{"parallel.cluster", FIELD_STRING, OFF(parallel.cluster), NULL, NULL, 0, 0, NULL, NULL, "cluster file (NVLink domain, bandwidths); --cluster overrides"},

	/* ---- cluster (a cluster file's keys, or an inline cluster: section) ---- */
	{"cluster.name", FIELD_STRING, OFF(cluster.name), NULL, NULL, 0, 0, NULL, NULL, "cluster name"},
	{"cluster.nvlink_domain", FIELD_INT, OFF(cluster.nvlink_domain), NULL, NULL, 0, 1 << 16, NULL, "0", "GPUs sharing one NVLink domain; 0 = gpus_per_node"},
	{"cluster.intra_node_gbps", FIELD_FLOAT, OFF(cluster.intra_node_gbps), "cluster.nvlink_gbps", NULL, 0, 1e6, NULL, "0", "GB/s per GPU per direction inside the NVLink domain; 0 = the GPU type's"},
	{"cluster.inter_node_gbps", FIELD_FLOAT, OFF(cluster.inter_node_gbps), "cluster.network_gbps", NULL, 0, 1e6, NULL, "0", "GB/s per GPU per direction across nodes; 0 = 50 (400 Gb/s NIC per GPU)"},

	/* ---- train ---- */
	{"train.mode", FIELD_ENUM, OFF(train.mode), NULL, NULL, 0, 0, mode_names, "full", "full fine-tuning / pre-training, or lora"},
	{"train.lora.rank", FIELD_INT, OFF(train.lora.rank), "train.lora.r,train.lora_r,train.lora_rank", NULL, 1, 65536, NULL, "16", "LoRA rank r"},
	{"train.lora.alpha", FIELD_FLOAT, OFF(train.lora.alpha), "train.lora_alpha", NULL, 0, 1e6, NULL, "32", "LoRA alpha (scale = alpha / r)"},
	{"train.lora.dropout", FIELD_FLOAT, OFF(train.lora.dropout), "train.lora_dropout", NULL, 0, 1, NULL, "0", "dropout on the LoRA input"},
	{"train.lora.target_modules", FIELD_STR_LIST, OFF(train.lora.target_modules), "train.lora_target_modules", NULL, 0, 0, NULL, "[q_proj, k_proj, v_proj, o_proj]", "modules that get adapters (names of the family's projections)"},
	{"train.train_router", FIELD_BOOL, OFF(train.train_router), NULL, NULL, 0, 0, NULL, NULL, "train the router weights; default: true for full, false for lora"},
	{"train.precision", FIELD_ENUM, OFF(train.precision), NULL, NULL, 0, 0, dtype_names, "bf16", "compute precision (fp32 master weights and optimizer state)"},
	{"train.base_dtype", FIELD_ENUM, OFF(train.base_dtype), "train.frozen_dtype", NULL, 0, 0, dtype_names, "bf16", "storage of frozen base weights under LoRA: bf16, fp8 or nf4 (QLoRA)"},
	{"train.seq_len", FIELD_INT, OFF(train.seq_len), "train.sequence_len,train.max_seq_length", NULL, 1, 1 << 24, NULL, "4096", "tokens per sequence"},
	{"train.micro_batch", FIELD_INT, OFF(train.micro_batch), "train.micro_batch_size,train.per_device_train_batch_size", NULL, 1, 1 << 20, NULL, "1", "sequences per data-parallel rank per micro-step"},
	{"train.grad_accum", FIELD_INT, OFF(train.grad_accum), "train.gradient_accumulation_steps", NULL, 1, 1 << 20, NULL, "1", "micro-steps per optimizer step"},
	{"train.steps", FIELD_INT, OFF(train.steps), "train.max_steps", NULL, 1, 1LL << 40, NULL, "1000", "optimizer steps"},
	{"train.lr", FIELD_FLOAT, OFF(train.lr), "train.learning_rate", NULL, 0, 10, NULL, "3e-4", "peak learning rate"},
	{"train.min_lr", FIELD_FLOAT, OFF(train.min_lr), "train.min_learning_rate", NULL, 0, 10, NULL, "0", "learning rate at the end of the decay"},
	{"train.adam_beta1", FIELD_FLOAT, OFF(train.adam_beta1), NULL, NULL, 0, 0.999999, NULL, "0.9", "AdamW beta1"},
	{"train.adam_beta2", FIELD_FLOAT, OFF(train.adam_beta2), NULL, NULL, 0, 0.999999, NULL, "0.95", "AdamW beta2"},
	{"train.adam_eps", FIELD_FLOAT, OFF(train.adam_eps), "train.adam_epsilon", NULL, 0, 1, NULL, "1e-8", "AdamW epsilon"},
	{"train.weight_decay", FIELD_FLOAT, OFF(train.weight_decay), NULL, NULL, 0, 10, NULL, "0.1", "decoupled weight decay (not on norms, biases or router bias)"},
	{"train.schedule", FIELD_ENUM, OFF(train.schedule), "train.lr_scheduler,train.lr_scheduler_type", NULL, 0, 0, schedule_names, "cosine", "learning-rate decay after warmup"},
	{"train.warmup_steps", FIELD_INT, OFF(train.warmup_steps), NULL, NULL, 0, 1LL << 40, NULL, "0", "linear warmup steps"},
	{"train.max_grad_norm", FIELD_FLOAT, OFF(train.max_grad_norm), "train.grad_clip", NULL, 0, 1e9, NULL, "1.0", "clip the global gradient norm; 0 = off"},
	{"train.recompute", FIELD_ENUM, OFF(train.recompute), "train.activation_checkpointing", NULL, 0, 0, recompute_names, "selective", "activation recompute: none, selective (norm outputs, rotated q/k and the SwiGLU output from the kept gate/up) or full (each layer from its input)"},
	{"train.seed", FIELD_INT, OFF(train.seed), NULL, NULL, 0, 1LL << 62, NULL, "1234", "seed for init, dropout and data order"},
	{"train.allow_spills", FIELD_BOOL, OFF(train.allow_spills), NULL, NULL, 0, 0, NULL, "false", "accept register spills in generated kernels"},

	/* ---- data ---- */
	{"data.paths", FIELD_STR_LIST, OFF(data.paths), "data.path,data.datasets", NULL, 0, 0, NULL, "[]", "token shards (paths relative to this file)"},
	{"data.format", FIELD_ENUM, OFF(data.format), NULL, NULL, 0, 0, format_names, "auto", "megatron (.bin/.idx), llmc (headered uint16/uint32), raw_u32, or auto"},
	{"data.packing", FIELD_BOOL, OFF(data.packing), "data.sample_packing", NULL, 0, 0, NULL, "true", "pack documents to seq_len (positions restart, attention masked per document)"},
	{"data.shuffle", FIELD_BOOL, OFF(data.shuffle), NULL, NULL, 0, 0, NULL, "true", "deterministic shuffle of documents by seed"},
	{"data.eod_token", FIELD_INT, OFF(data.eod_token), "data.eos_token_id", NULL, -1, 1 << 24, NULL, "-1", "end-of-document token id; -1 = none"},

	/* ---- checkpoint ---- */
	{"checkpoint.dir", FIELD_STRING, OFF(checkpoint.dir), "checkpoint.output_dir", NULL, 0, 0, NULL, "checkpoints", "where checkpoints are written"},
	{"checkpoint.every", FIELD_INT, OFF(checkpoint.every), "checkpoint.save_steps", NULL, 0, 1LL << 40, NULL, "500", "save every N steps; 0 = only at the end and on signals"},
	{"checkpoint.keep", FIELD_INT, OFF(checkpoint.keep), "checkpoint.save_total_limit", NULL, 1, 100000, NULL, "3", "checkpoints kept (oldest removed)"},
	{"checkpoint.init_from", FIELD_STRING, OFF(checkpoint.init_from), "checkpoint.model_name_or_path,checkpoint.base_model", NULL, 0, 0, NULL, NULL, "Hugging Face model directory to initialize from"},
	{"checkpoint.resume", FIELD_BOOL, OFF(checkpoint.resume), NULL, NULL, 0, 0, NULL, "true", "resume from the newest checkpoint in dir when one exists"},
};
/* clang-format on */

const int schema_nfields = (int)(sizeof schema_fields / sizeof schema_fields[0]);

/* Does the comma-separated list `list` contain `name` exactly? */
static int list_has(const char *list, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = list; p && *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len == n && memcmp(p, name, n) == 0)
			return 1;
		p = end ? end + 1 : NULL;
	}
	return 0;
}

const struct field *schema_find(const char *path)
{
	for (int i = 0; i < schema_nfields; i++)
		if (strcmp(schema_fields[i].path, path) == 0)
			return &schema_fields[i];
	for (int i = 0; i < schema_nfields; i++)
		if (list_has(schema_fields[i].aliases, path))
			return &schema_fields[i];
	return NULL;
}

static int has_prefix(const char *s, const char *prefix, size_t n)
{
	return strncmp(s, prefix, n) == 0 && s[n] == '.';
}

int schema_is_mapping(const char *prefix)
{
	size_t n = strlen(prefix);
	for (int i = 0; i < schema_nfields; i++) {
		const struct field *f = &schema_fields[i];
		if (has_prefix(f->path, prefix, n))
			return 1;
		for (const char *p = f->aliases; p && *p;) {
			if (has_prefix(p, prefix, n))
				return 1;
			p = strchr(p, ',');
			p = p ? p + 1 : NULL;
		}
	}
	return 0;
}

/* Levenshtein distance, capped: enough for typo suggestions. */
int schema_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 63 || lb > 63)
		return 99;
	int d[64][64];
	for (size_t i = 0; i <= la; i++)
		d[i][0] = (int)i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = (int)j;
	for (size_t i = 1; i <= la; i++)
		for (size_t j = 1; j <= lb; j++) {
			int sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
			int del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
			d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
		}
	return d[la][lb];
}

static const char *last_key(const char *path)
{
	const char *dot = strrchr(path, '.');
	return dot ? dot + 1 : path;
}

/* Suggest the known path closest to `path`: first a same-named key in another section
 * (a key put under the wrong section), then the nearest spelling in the same section. */
const char *schema_suggest(const char *path)
{
	const char *key = last_key(path);
	size_t sec_len = (size_t)(key - path);
	const char *best = NULL;
	int best_d = 1 << 30;
	for (int i = 0; i < schema_nfields; i++) {
		const struct field *f = &schema_fields[i];
		if (strcmp(last_key(f->path), key) == 0)
			return f->path;
	}
	for (int i = 0; i < schema_nfields; i++) {
		const struct field *f = &schema_fields[i];
		const char *fk = last_key(f->path);
		if ((size_t)(fk - f->path) != sec_len || strncmp(f->path, path, sec_len) != 0)
			continue;
		int d = schema_distance(key, fk);
		if (d < best_d) {
			best_d = d;
			best = f->path;
		}
	}
	/* Only suggest plausible typos: at most a third of the key's letters changed. */
	if (best && best_d <= (int)(strlen(key) + 2) / 3)
		return best;
	return NULL;
}

/* Length of the first spelling of name entry e ("a|b" -> 1). */
static size_t first_len(const char *e)
{
	const char *bar = strchr(e, '|');
	return bar ? (size_t)(bar - e) : strlen(e);
}

const char *schema_enum_name(const char *const *names, int v)
{
	static char buf[8][32];
	static int slot;
	int n = 0;
	while (names[n])
		n++;
	if (v < 0 || v >= n)
		return "?";
	char *b = buf[slot++ % 8];
	snprintf(b, sizeof buf[0], "%.*s", (int)first_len(names[v]), names[v]);
	return b;
}

int schema_enum_value(const char *const *names, const char *text)
{
	size_t n = strlen(text);
	for (int v = 0; names[v]; v++)
		for (const char *p = names[v]; p;) {
			const char *bar = strchr(p, '|');
			size_t len = bar ? (size_t)(bar - p) : strlen(p);
			if (len == n && strncmp(p, text, n) == 0)
				return v;
			p = bar ? bar + 1 : NULL;
		}
	return -1;
}

void schema_enum_list(const char *const *names, char *buf, size_t n)
{
	int count = 0;
	while (names[count])
		count++;
	size_t used = 0;
	buf[0] = 0;
	for (int v = 0; v < count && used < n; v++) {
		const char *sep = v == 0 ? "" : (v == count - 1 ? " or " : ", ");
		used += (size_t)snprintf(buf + used, n - used, "%s%s", sep, schema_enum_name(names, v));
	}
}
