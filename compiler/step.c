/* step.c - pass 5c: gen/model.c, the training step as straight-line calls. See step.h.
 *
 * The file is written in four parts, each from one function here:
 *   1. layout    the parameter arena (W_* offsets) and the tensor table by HF name;
 *   2. arena     the activation arena (A_* offsets), every buffer the step touches: per
 *                layer what train.recompute keeps for the backward (step_saved), and one
 *                set all layers share for the rest;
 *   3. step      moec_micro_step: forward layer by layer, the loss, backward in reverse,
 *                each layer's backward after rebuilding what was not kept (step_recompute);
 *   4. optimizer moec_optimizer_step and the struct moert_model handed to the trainer.
 * Shapes in the generated code use the enum at its top (T tokens, H hidden, QD = NH*HD,
 * KD = NKV*HD, E experts, K top-k, TK = TS*K rows a rank routes (TS = T/tp tokens), I expert width,
 * D dense width).
 */
#include "step.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "files.h"
#include "schema.h"

/* Activation buffers start on 64-byte boundaries. */
#define STEP_ALIGN 16
/* Vocabulary columns of the LM head computed at once: at most this many floats of logits. */
#define STEP_LOGIT_FLOATS (1 << 24)

const char *step_unsupported(const struct spec *s, const struct ir *ir, const struct plan *p)
{
	if (p->layout.tp > 1 && (s->train.micro_batch * s->train.seq_len) % p->layout.tp)
		return "tensor parallelism splits the MoE tokens: micro_batch x seq_len must be a multiple of tp";
	if (p->layout.tp > ir->dims.kv_heads && ir->dims.kv_heads > 1)
		return "tensor parallelism over more ranks than kv heads: the step splits k/v heads over tp, or replicates "
		       "a single kv head; with several kv heads each shared by some tp ranks, choose tp <= num_kv_heads";
	if (p->layout.tp > 1 && ir->dims.vocab % p->layout.tp)
		return "the vocab-parallel embedding and LM head split the vocabulary evenly: vocab must be a multiple of tp";
	if (p->layout.ep > 64)
		return "the CPU backend's expert parallelism handles up to 64 ranks";
	if (s->train.mode != TRAIN_FULL)
		return "the step code covers full training so far, not LoRA";
	if (s->train.precision != DTYPE_FP32 && s->train.precision != DTYPE_BF16)
		return "the step code computes in fp32 or bf16 so far";
	if (s->model.attention != ATTENTION_GQA || s->model.attention_bias || s->model.attention_sinks ||
	    s->model.sliding_window)
		return "the step code covers plain GQA attention so far (no MLA, biases, sinks or sliding windows)";
	if (s->moe.num_shared_experts || s->moe.expert_bias || s->moe.router_bias || s->moe.activation != ACTIVATION_SWIGLU)
		return "the step code covers routed SwiGLU experts without biases or shared experts so far";
	if (s->moe.router != ROUTER_SOFTMAX_TOPK || s->moe.seq_aux_loss_coef != 0 || s->moe.bias_update_rate != 0)
		return "the step code covers the softmax top-k router so far";
	if (s->moe.capacity_factor > 0)
		return "the step code covers dropless routing so far (moe.capacity_factor: 0)";
	for (int i = 0; i < ir->ntensors; i++)
		if (!ir_tensor_trainable(&ir->tensors[i]))
			return "the step code trains every tensor so far (no frozen tensors)";
	return NULL;
}

/* ---- part 1: the parameter arena and the tensor table ---- */

struct step_param {
	char macro[48];      /* W_L3_Q */
	int64_t off, numel;
	bool decay;
};

struct step_writer {
	FILE *f;
	const struct emit_context *c;
	const struct spec *s;
	const struct ir *ir;
	const struct kernel_set *ks;
	int64_t T, H, V, NH, NKV, HD, QD, KD, E, K, I, D, TK, chunk, nblk;
	int64_t EP, E_LOCAL, RT;   /* expert parallel ranks, experts per rank, rows a rank's experts may get */
	int64_t TP, TS;            /* tensor parallel ranks; tokens each routes (sequence-parallel MoE) */
	bool kv_split;             /* k/v heads split over tp (else replicated on every tp rank) */
	bool bf16;                 /* train.precision bf16: act_t activations and GEMM weights */
	struct step_param *blocks; /* storage blocks in arena order: AdamW's tensor list */
	int nblocks;
	int ndense;                /* blocks [0, ndense) are dense (dp-replicated), the rest experts */
	int nsplit;                /* blocks [nsplit, ndense) are split over tp */
	int64_t partial_begin;     /* replicated over tp, each tp rank's gradient a part of the sum */
	int64_t split_begin;       /* split over tp (heads): a slice per tp rank */
	int64_t experts_begin;     /* parameter offset of the first expert block */
	int64_t fp32_end;          /* the norm blocks end here: [0, fp32_end) is norms only */
	int64_t param_floats, act_floats;
	uint64_t model_hash;
	const char *err;           /* a kernel the step needs is missing from the set */
	bool recomputing;          /* emitting a layer's forward again, before its backward */
};

static const char *step_role_macro(enum ir_role r)
{
	switch (r) {
	case IR_ROLE_EMBED: return "EMBED";
	case IR_ROLE_LM_HEAD: return "LM_HEAD";
	case IR_ROLE_FINAL_NORM: return "FINAL_NORM";
	case IR_ROLE_INPUT_NORM: return "INPUT_NORM";
	case IR_ROLE_POST_ATTN_NORM: return "POST_ATTN_NORM";
	case IR_ROLE_Q: return "Q";
	case IR_ROLE_K: return "K";
	case IR_ROLE_V: return "V";
	case IR_ROLE_O: return "O";
	case IR_ROLE_Q_NORM: return "Q_NORM";
	case IR_ROLE_K_NORM: return "K_NORM";
	case IR_ROLE_ROUTER: return "ROUTER";
	case IR_ROLE_EXPERT_GATE:
	case IR_ROLE_EXPERT_UP: return "EXPERTS_GATE_UP";
	case IR_ROLE_EXPERT_DOWN: return "EXPERTS_DOWN";
	case IR_ROLE_MLP_GATE:
	case IR_ROLE_MLP_UP: return "MLP_GATE_UP";
	case IR_ROLE_MLP_DOWN: return "MLP_DOWN";
	default: return NULL;
	}
}

static void step_param_macro(const struct ir_tensor *t, char *buf, size_t n)
{
	if (t->layer < 0)
		snprintf(buf, n, "W_%s", step_role_macro(t->role));
	else
		snprintf(buf, n, "W_L%d_%s", t->layer, step_role_macro(t->role));
}

static uint64_t step_fnv(uint64_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return h;
}

/* An RMSNorm weight: what a bf16 step still reads in fp32 (step_type_buffers). */
static bool step_is_norm(const struct ir_tensor *t)
{
	return t->role == IR_ROLE_INPUT_NORM || t->role == IR_ROLE_POST_ATTN_NORM || t->role == IR_ROLE_FINAL_NORM ||
	       t->role == IR_ROLE_Q_NORM || t->role == IR_ROLE_K_NORM;
}

/* One tensor table row: an HF tensor of ndim dims at macro + delta. */
static void step_table_row(struct step_writer *w, FILE *tab, const struct ir_tensor *t, const char *name,
			   const char *macro, int64_t delta, int ndim, const int64_t *shape, int expert, int tp_dim)
{
	char shape_text[96] = "", hash_text[256];
	int n = 0;
	for (int d = 0; d < ndim; d++)
		n += snprintf(shape_text + n, sizeof shape_text - (size_t)n, "%s%lld", d ? ", " : "", (long long)shape[d]);
	bool norm = step_is_norm(t);
	/* LL: a block below 2^31 floats is an int literal, and its last experts lie past 2^31 */
	fprintf(tab, "\t{\"%s\", %s + %lldLL, %d, {%s}, %d, %d, %s, %d, %d},\n", name, macro, (long long)delta, ndim,
		shape_text, t->layer, ndim >= 2, norm ? "MOERT_INIT_ONES" : "MOERT_INIT_NORMAL", expert, tp_dim);
	snprintf(hash_text, sizeof hash_text, "%s[%s];", name, shape_text);
	w->model_hash = step_fnv(w->model_hash, hash_text);
}

/* Storage blocks: one per IR tensor, except that an expert's (or the dense MLP's) gate and
 * up projections share one [.., 2I, H] block, gate rows first, as the grouped GEMMs read it. */
static bool step_is_expert(const struct ir_tensor *t)
{
	return t->role == IR_ROLE_EXPERT_GATE || t->role == IR_ROLE_EXPERT_UP || t->role == IR_ROLE_EXPERT_DOWN;
}

/* How tensor parallelism treats a weight decides where it is stored and how its gradient
 * is summed: lower.h's IR_GRAD_* groups (the rule moec plan counts by), in this order. The
 * grouped GEMMs' experts (gate, up, down) are the EXPERT class. */
enum step_class { STEP_SAME = IR_GRAD_SAME, STEP_PARTIAL = IR_GRAD_PARTIAL, STEP_SPLIT = IR_GRAD_SPLIT,
		  STEP_EXPERT = IR_GRAD_EXPERT };

static enum step_class step_class_of(const struct step_writer *w, const struct ir_tensor *t)
{
	if (step_is_expert(t))
		return STEP_EXPERT;
	return (enum step_class)ir_grad_group_of(w->ir, t, w->TP, w->kv_split);
}

/* Place IR tensor t: its storage block (made on first use), and its table rows. A rank
 * stores E_LOCAL experts; the table lists all E, each with its global index, at the offset
 * it has on the rank that holds it. */
static void step_place(struct step_writer *w, FILE *defs, FILE *tab, const struct ir_tensor *t)
{
	char macro[48];
	step_param_macro(t, macro, sizeof macro);
	bool pair = t->role == IR_ROLE_EXPERT_GATE || t->role == IR_ROLE_EXPERT_UP || t->role == IR_ROLE_MLP_GATE ||
		    t->role == IR_ROLE_MLP_UP;
	bool up = t->role == IR_ROLE_EXPERT_UP || t->role == IR_ROLE_MLP_UP;
	bool split = step_class_of(w, t) == STEP_SPLIT;
	int64_t local = t->stacked ? w->E_LOCAL : 1, per = t->stacked ? t->shape[1] * t->shape[2] : ir_tensor_numel(t);
	if (split) /* this tp rank's rows (q/k/v) or columns (o) */
		per /= w->TP;
	struct step_param *b = NULL;
	for (int j = 0; j < w->nblocks; j++)
		if (!strcmp(w->blocks[j].macro, macro))
			b = &w->blocks[j];
	if (!b) {
		b = &w->blocks[w->nblocks++];
		snprintf(b->macro, sizeof b->macro, "%s", macro);
		b->off = w->param_floats;
		b->numel = local * per * (pair ? 2 : 1);
		b->decay = t->ndim >= 2;
		w->param_floats += b->numel;
		/* the block's shape: the tensor's (E_LOCAL experts), a gate/up pair's rows doubled */
		char shape[96] = "";
		int n = 0, rows = t->stacked ? 1 : 0;
		int split_dim = t->role == IR_ROLE_O || t->role == IR_ROLE_MLP_DOWN ? 1 : 0;
		for (int d = 0; d < t->ndim; d++)
			n += snprintf(shape + n, sizeof shape - (size_t)n, "%s%lld", d ? ", " : "",
				      (long long)(t->stacked && d == 0 ? local
						  : t->shape[d] * (pair && d == rows ? 2 : 1) / (split && d == split_dim ? w->TP : 1)));
		fprintf(defs, "#define %-28s %lld /* [%s] */\n", macro, (long long)b->off, shape);
	}
	if (!t->stacked) {
		step_table_row(w, tab, t, t->name, macro, up ? per : 0, t->ndim, t->shape, -1,
			       split ? (t->role == IR_ROLE_O || t->role == IR_ROLE_MLP_DOWN ? 1 : 0) : -1);
		return;
	}
	for (int64_t e = 0; e < t->shape[0]; e++) {
		char name[IR_NAME_MAX];
		ir_expert_name(t, e, name, sizeof name);
		int64_t l = e % w->E_LOCAL, delta = pair ? l * 2 * per + (up ? per : 0) : l * per;
		step_table_row(w, tab, t, name, macro, delta, t->ndim - 1, t->shape + 1, (int)e, -1);
	}
}

/* Storage blocks: one per IR tensor, except that an expert's (or the dense MLP's) gate and
 * up projections share one [.., 2I, H] block, gate rows first, as the grouped GEMMs read it.
 * Dense blocks come first and expert blocks after, so each is one range for its all-reduce
 * (dense gradients over dp, expert gradients over edp). */
/* Storage blocks: one per IR tensor, except that an expert's (or the dense MLP's) gate and
 * up projections share one [.., 2I, H] block, gate rows first, as the grouped GEMMs read it.
 * Blocks are ordered by class (step_class), so each class is one range of the arena for its
 * gradient all-reduce: SAME, PARTIAL, SPLIT, then EXPERT. Inside a class the norms come
 * first, so every weight a bf16 step reads in fp32 lies in [0, W_FP32_END) (with tp > 1 the
 * SAME class is norms only): a bf16 step with sharded masters keeps only that prefix of the
 * fp32 weights on every rank (runtime/zero.h). */
static int step_layout_params(struct step_writer *w, FILE *defs, FILE *tab)
{
	static const char *begin_macro[] = {NULL, "W_TP_PARTIAL_BEGIN", "W_TP_SPLIT_BEGIN", "W_EXPERTS_BEGIN"};
	const struct ir *ir = w->ir;
	w->blocks = calloc((size_t)ir->ntensors, sizeof *w->blocks);
	if (!w->blocks)
		return -1;
	w->model_hash = 0xcbf29ce484222325ull;
	for (int cls = STEP_SAME; cls <= STEP_EXPERT; cls++) {
		if (cls > STEP_SAME)
			fprintf(defs, "#define %-28s %lld\n", begin_macro[cls], (long long)w->param_floats);
		if (cls == STEP_PARTIAL)
			w->partial_begin = w->param_floats;
		if (cls == STEP_SPLIT) {
			w->split_begin = w->param_floats;
			w->nsplit = w->nblocks;
		}
		if (cls == STEP_EXPERT) {
			w->ndense = w->nblocks;
			w->experts_begin = w->param_floats;
		}
		for (int norms = 1; norms >= 0; norms--)
			for (int i = 0; i < ir->ntensors; i++)
				if ((int)step_class_of(w, &ir->tensors[i]) == cls && step_is_norm(&ir->tensors[i]) == norms)
					step_place(w, defs, tab, &ir->tensors[i]);
	}
	/* the end of the last norm block, and no other block below it */
	for (int j = 0; j < w->nblocks; j++)
		if (strstr(w->blocks[j].macro, "NORM") && w->blocks[j].off + w->blocks[j].numel > w->fp32_end)
			w->fp32_end = w->blocks[j].off + w->blocks[j].numel;
	for (int j = 0; j < w->nblocks; j++)
		if (!strstr(w->blocks[j].macro, "NORM") && w->blocks[j].off < w->fp32_end && w->blocks[j].numel) {
			fprintf(stderr, "moec: internal error: %s lies among the norms (compiler/step.c step_layout_params)\n",
				w->blocks[j].macro);
			return -1;
		}
	fprintf(defs, "#define %-28s %lld /* the norms: a bf16 step reads them in fp32 */\n", "W_FP32_END",
		(long long)w->fp32_end);
	return 0;
}

/* ---- part 2: the activation arena ---- */

/* Activation buffers of type act_t (bf16 in a bf16 step); the rest are fp32 (norm and
 * softmax statistics, router and LM-head logits, routing weights) or ints. */
static bool step_is_act(const char *macro)
{
	static const char *layer[] = {"XN1", "Q", "K", "V", "QR", "KR", "ATT", "XMID", "XN2", "XPERM", "XE", "GU", "HID",
				      "YPERM", NULL};
	static const char *scratch[] = {"Y", "DX", "DXN", "DATT", "DQ", "DK", "DV", "DQ_RAW", "DK_RAW", "DY_PERM", "DX_PERM",
					"DGU", "YE", "DYE", "DXE", "EP_TMP", "CAST", NULL};
	const char *p = macro;
	if (!strcmp(p, "A_XF"))
		return true;
	if (!strncmp(p, "A_X", 3) && p[3] >= '0' && p[3] <= '9')
		return true;
	const char **list = NULL;
	if (!strncmp(p, "A_S_", 4)) {
		list = scratch;
		p += 4;
	} else if (!strncmp(p, "A_R_", 4)) { /* the layers' shared set (step_layout_layers) */
		list = layer;
		p += 4;
	} else if (!strncmp(p, "A_L", 3)) {
		p += 3;
		while (*p >= '0' && *p <= '9')
			p++;
		if (*p++ != '_')
			return false;
		list = layer;
	}
	for (int i = 0; list && list[i]; i++)
		if (!strcmp(p, list[i]))
			return true;
	return false;
}

/* The step text uses A(...) for every activation and P(...) for every weight; here the
 * act_t buffers become AB(...) and the weights the kernels and GEMMs read as act_t PW(...)
 * (the bf16 copies in a bf16 step). Norm weights stay fp32. */
static void step_type_buffers(char **text)
{
	size_t len = strlen(*text), cap = len + len / 4 + 64, o = 0;
	char *out = malloc(cap);
	if (!out)
		return;
	for (const char *p = *text; *p;) {
		int arena = !strncmp(p, "A(A_", 4) ? 1 : !strncmp(p, "P(W_", 4) ? 2 : 0;
		if (arena && (p == *text || !(isalnum((unsigned char)p[-1]) || p[-1] == '_'))) {
			char id[64];
			size_t n = strspn(p + 2, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
			snprintf(id, sizeof id, "%.*s", (int)n, p + 2);
			bool norm = strstr(id, "NORM") != NULL;
			const char *rep = arena == 1 ? (step_is_act(id) ? "AB(" : "A(") : (norm ? "P(" : "PW(");
			if (o + strlen(rep) + 1 >= cap)
				break;
			o += (size_t)sprintf(out + o, "%s", rep);
			p += 2;
			continue;
		}
		if (o + 2 >= cap)
			break;
		out[o++] = *p++;
	}
	out[o] = 0;
	free(*text);
	*text = out;
}



static void step_act(struct step_writer *w, FILE *defs, int64_t floats, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Arena floats buffer name of floats elements takes (act_t is bf16 in a bf16 step: two per
 * float of the arena), rounded up to STEP_ALIGN. */
static int64_t step_act_floats(const struct step_writer *w, const char *name, int64_t floats)
{
	if (w->bf16 && step_is_act(name))
		floats = (floats + 1) / 2;
	return (floats + STEP_ALIGN - 1) / STEP_ALIGN * STEP_ALIGN;
}

static void step_act(struct step_writer *w, FILE *defs, int64_t floats, const char *fmt, ...)
{
	char name[64];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(name, sizeof name, fmt, ap);
	va_end(ap);
	fprintf(defs, "#define %-24s %lld\n", name, (long long)w->act_floats);
	w->act_floats += step_act_floats(w, name, floats);
}

/* One of a layer's activation buffers: A_L<l>_<name>, of floats floats (int buffers: one
 * int per float). */
struct step_buf {
	const char *name;
	int64_t floats;
};
#define STEP_MAX_BUFS 32

/* Layer l's buffers, in arena order: what its forward writes and its backward reads. */
static int step_layer_bufs(const struct step_writer *w, int l, struct step_buf *b)
{
	const int64_t T = w->T, H = w->H, E = w->E, TK = w->TK;
	int n = 0;
#define BUF(name, floats) (b[n++] = (struct step_buf){name, floats})
	BUF("XN1", T * H);
	BUF("RSTD1", T);
	BUF("Q", T * w->QD);
	BUF("K", T * w->KD);
	BUF("V", T * w->KD);
	if (w->s->model.qk_norm) {
		BUF("RSTD_Q", T * w->NH);
		BUF("RSTD_K", T * w->NKV);
	}
	BUF("QR", T * w->QD);
	BUF("KR", T * w->KD);
	BUF("ATT", T * w->QD);
	BUF("LSE", w->NH * T);
	BUF("XMID", T * H);
	BUF("XN2", T * H);
	BUF("RSTD2", T);
	if (w->ir->layers[l].moe) {
		BUF("LOGITS", T * E);
		BUF("TOPK_IDS", TK);
		BUF("TOPK_W", TK);
		BUF("BLK", w->nblk * E);
		BUF("COUNTS", E);
		BUF("OFFSETS", E + 1);
		BUF("DEST", TK);
		BUF("ROW_SRC", TK);
		BUF("XPERM", TK * H);
		if (w->EP > 1) /* the rows this rank's experts received, expert after expert */
			BUF("XE", w->RT * H);
		BUF("GU", w->RT * 2 * w->I);
		BUF("HID", w->RT * w->I);
		BUF("YPERM", TK * H);
	} else {
		BUF("GU", T * 2 * w->D);
		BUF("HID", T * w->D);
	}
#undef BUF
	return n;
}

/* Whether a layer keeps buffer name for its backward (A_L<l>_<name>, one per layer) or
 * holds it in the one set every layer shares (A_R_<name>), rebuilt before each layer's
 * backward (step_recompute):
 *   every policy  forward temporaries: q and k before RoPE unless qk_norm (whose backward
 *                 reads them), the routing's block histograms, counts and row sources;
 *   none          keeps the rest;
 *   selective     rebuilds the norm outputs xn1, xn2 (rmsnorm_fwd from the saved residual
 *                 stream), with qk_norm the post-RoPE q and k (the head norm and RoPE from
 *                 the saved q, k), and the SwiGLU output (swiglu_fwd from the saved gate/up:
 *                 moe_gate_up_fwd computes it from the rounded gate/up it stores, so it
 *                 comes out bit for bit without rerunning the GEMM): lower.c's selective set;
 *   full          keeps nothing: the layer's forward reruns from its input A_X<l>. */
static bool step_saved(const struct step_writer *w, const char *name)
{
	bool qk = w->s->model.qk_norm;
	bool temporary = (!qk && (!strcmp(name, "Q") || !strcmp(name, "K"))) || !strcmp(name, "BLK") ||
			 !strcmp(name, "COUNTS") || !strcmp(name, "ROW_SRC");
	if (w->s->train.recompute == RECOMPUTE_FULL || temporary)
		return false;
	if (w->s->train.recompute == RECOMPUTE_NONE)
		return true;
	return strcmp(name, "XN1") && strcmp(name, "XN2") && !(qk && (!strcmp(name, "QR") || !strcmp(name, "KR"))) &&
	       strcmp(name, "HID");
}

/* The layers' buffers: the saved ones per layer, then the shared set (each buffer as large
 * as the largest layer's: an MoE layer's gate/up rows differ from a dense one's), and
 * every layer's name for a shared buffer defined as the shared one. */
static void step_layout_layers(struct step_writer *w, FILE *defs)
{
	struct step_buf b[STEP_MAX_BUFS], shared[STEP_MAX_BUFS];
	int nshared = 0;
	for (int l = 0; l < w->ir->nlayers; l++) {
		int n = step_layer_bufs(w, l, b);
		for (int i = 0; i < n; i++) {
			if (step_saved(w, b[i].name)) {
				step_act(w, defs, b[i].floats, "A_L%d_%s", l, b[i].name);
				continue;
			}
			int j = 0;
			while (j < nshared && strcmp(shared[j].name, b[i].name))
				j++;
			if (j == nshared)
				shared[nshared++] = b[i];
			else if (b[i].floats > shared[j].floats)
				shared[j].floats = b[i].floats;
		}
	}
	if (!nshared)
		return;
	fprintf(defs, "/* One set for every layer: a layer's forward temporaries and what it rebuilds before its\n"
		      " * backward (train.recompute: %s). */\n", recompute_names[w->s->train.recompute]);
	for (int j = 0; j < nshared; j++)
		step_act(w, defs, shared[j].floats, "A_R_%s", shared[j].name);
	for (int l = 0; l < w->ir->nlayers; l++) {
		int n = step_layer_bufs(w, l, b);
		for (int i = 0; i < n; i++)
			if (!step_saved(w, b[i].name))
				fprintf(defs, "#define A_L%d_%-*s A_R_%s\n", l, 20 - (l > 9) - (l > 99), b[i].name, b[i].name);
	}
}

/* Scratch that shares memory: the buffers of one slot are never live at the same time, so
 * they take one place in the arena, as large as the largest. Program order is the order of
 * execution (one stream; an EP call's all-to-all and regroup finish before the next kernel).
 * Within a MoE layer (step_fwd_moe, step_bwd_moe; EP: expert parallelism):
 *   forward, and full recompute:
 *     permute -> XPERM; EP_DISPATCH(XPERM -> EP_TMP -> XE); gate_up(XE) -> GU, HID;
 *     down(HID) -> YE; EP_COMBINE(YE -> EP_TMP -> YPERM); combine(YPERM) -> y
 *   backward:
 *     combine_bwd -> DY_PERM; EP_DISPATCH(DY_PERM -> EP_TMP -> DYE);
 *     down_bwd_data(DYE, GU) -> DGU; down_bwd_weight(DYE, HID);
 *     gate_up_bwd_data(DGU) -> DXE; gate_up_bwd_weight(DGU, XE);
 *     EP_COMBINE(DXE -> EP_TMP -> DX_PERM); permute_bwd(DX_PERM) -> dxn
 * XE, GU, HID (saved or A_R_*) and XPERM, YPERM are the layers' (step_layer_bufs), not here.
 * A dense layer's backward uses DGU alone, no EP call. Nothing here feeds the host. */
struct step_slot {
	const char *why;
	int n;
	struct step_buf member[4];
};

/* One slot: every member's offset is the slot's. */
static void step_act_slot(struct step_writer *w, FILE *defs, const struct step_slot *s)
{
	int64_t size = 0;
	fprintf(defs, "/* one slot: %s */\n", s->why);
	for (int i = 0; i < s->n; i++) {
		int64_t f = step_act_floats(w, s->member[i].name, s->member[i].floats);
		fprintf(defs, "#define %-24s %lld\n", s->member[i].name, (long long)w->act_floats);
		size = f > size ? f : size;
	}
	w->act_floats += size;
}

static void step_layout_slots(struct step_writer *w, FILE *defs)
{
	const int64_t T = w->T, H = w->H, TK = w->TK, RT = w->RT;
	/* d(gate|up): the routed rows' [RT, 2I] in an MoE layer, [T, 2D] in a dense one (D is
	 * the config's intermediate size even where no layer is dense: counted only if one is) */
	int64_t dgu_moe = w->ir->n_moe_layers ? RT * 2 * w->I : 0, dgu_dense = w->ir->n_dense_layers ? T * 2 * w->D : 0;
	int64_t dgu = dgu_moe > dgu_dense ? dgu_moe : dgu_dense;
	bool ep = w->EP > 1;
	const struct step_slot slots[] = {
		{"the permuted rows' gradients, TK of them: DY_PERM's last reader (EP_DISPATCH, or "
		 "down_bwd_weight on one rank) runs before DX_PERM's writer (EP_COMBINE, or gate_up_bwd_data)",
		 2, {{"A_S_DY_PERM", TK * H}, {"A_S_DX_PERM", TK * H}}},
		{"d(gate|up) and the all-to-all's rows in transit: EP_TMP lives inside one EP call, DGU "
		 "from down_bwd_data to gate_up_bwd_weight, with no EP call between",
		 ep ? 2 : 1, {{"A_S_DGU", dgu}, {"A_S_EP_TMP", RT * H}}},
	};
	for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++)
		step_act_slot(w, defs, &slots[i]);
	if (!ep)
		return;
	const struct step_slot experts = {
		"the experts' side rows: YE from down to EP_COMBINE in a forward or recompute, DYE from "
		"EP_DISPATCH to down_bwd_weight, DXE from gate_up_bwd_data (after it) to EP_COMBINE",
		3, {{"A_S_YE", RT * H}, {"A_S_DYE", RT * H}, {"A_S_DXE", RT * H}}};
	step_act_slot(w, defs, &experts);
}

static void step_layout_acts(struct step_writer *w, FILE *defs)
{
	const int64_t T = w->T, H = w->H, E = w->E, TK = w->TK;
	fprintf(defs, "\n/* Activation arena offsets (floats; int buffers are 4-byte ints at the same offsets).\n"
		      " * Saved for backward: the residual stream A_X<l> and each layer's A_L<l>_* buffers\n"
		      " * that train.recompute keeps (step_saved). Reused by every layer: the A_R_* set\n"
		      " * (what a layer rebuilds) and the A_S_* scratch. */\n");
	for (int l = 0; l <= w->ir->nlayers; l++)
		step_act(w, defs, T * H, "A_X%d", l);
	step_layout_layers(w, defs);
	step_act(w, defs, T * H, "A_XF");
	step_act(w, defs, T, "A_RSTDF");
	step_act(w, defs, T * w->chunk, "A_LOGITS");
	step_act(w, defs, T, "A_ROW_MAX");
	step_act(w, defs, T, "A_ROW_SUM");
	step_act(w, defs, T, "A_TARGET");
	step_act(w, defs, T, "A_CE_LSE");
	if (w->TP > 1) /* [tp][3][T]: every tp rank's (max, sum, target) of its vocabulary slice */
		step_act(w, defs, 3 * w->TP * T, "A_CE_TP");
	/* What the host reads after the forward, in one block: one copy on a GPU. */
	fprintf(defs, "#define A_STATS                  %lld\n", (long long)w->act_floats);
	for (int l = 0; l < w->ir->nlayers; l++) {
		if (!w->ir->layers[l].moe)
			continue;
		step_act(w, defs, E, "A_L%d_PROB_SUM", l);
		step_act(w, defs, w->K * E, "A_L%d_SEL_COUNT", l);
		step_act(w, defs, E, "A_L%d_EXPERT_COUNT", l);
		step_act(w, defs, 1, "A_L%d_Z_SUM", l);
		step_act(w, defs, 1, "A_L%d_DROPPED", l);
	}
	step_act(w, defs, 4, "A_CE_TOTALS");
	fprintf(defs, "#define A_STATS_END              %lld\n", (long long)w->act_floats);
	step_act(w, defs, T * H, "A_S_Y");
	step_act(w, defs, T * H, "A_S_DX");
	step_act(w, defs, T * H, "A_S_DXN");
	step_act(w, defs, T * w->QD, "A_S_DATT");
	step_act(w, defs, w->NH * T, "A_S_DELTA");
	step_act(w, defs, T * w->QD, "A_S_DQ");
	step_act(w, defs, T * w->KD, "A_S_DK");
	step_act(w, defs, T * w->KD, "A_S_DV");
	step_act(w, defs, T * w->QD, "A_S_DQ_RAW");
	step_act(w, defs, T * w->KD, "A_S_DK_RAW");
	step_layout_slots(w, defs);
	step_act(w, defs, TK, "A_S_DTOPK_W");
	step_act(w, defs, T * E, "A_S_DLOGITS");
	if (w->bf16) /* fp32 logit gradients cast to bf16 for the GEMMs with bf16 weights */
		step_act(w, defs, T * (E > w->chunk ? E : w->chunk), "A_S_CAST");
	step_act(w, defs, E * (w->ir->n_moe_layers > 0 ? w->ir->n_moe_layers : 1), "A_S_DPROB_SUM");
	step_act(w, defs, 2, "A_S_DENSE_OFFSETS");
	if (w->s->train.recompute == RECOMPUTE_FULL && w->ir->n_moe_layers) {
		/* a recomputed router's statistics: the forward's stay as the host read them */
		step_act(w, defs, E, "A_S_RC_PROB_SUM");
		step_act(w, defs, w->K * E, "A_S_RC_SEL_COUNT");
		step_act(w, defs, E, "A_S_RC_EXPERT_COUNT");
		step_act(w, defs, 1, "A_S_RC_Z_SUM");
		step_act(w, defs, 1, "A_S_RC_DROPPED");
	}
	/* The batch on the device, and the GPU kernels' scratch (kernels/<t>.cu headers say
	 * how big; zero-filled once with the arena, each launch leaves them zero). */
	step_act(w, defs, 4 * T, "A_S_BATCH");
	int64_t nblk64 = (T + 63) / 64, router_bytes = 8 * E + 4 * w->K * E + 4 + 4 * (nblk64 > 0 ? nblk64 : 1);
	step_act(w, defs, (router_bytes + 3) / 4, "A_S_ROUTER_WS");
	step_act(w, defs, (256 + 16) * (H > w->HD ? H : w->HD), "A_S_RMS_WS");
	step_act(w, defs, 1 + 16, "A_S_RMS_COUNT");
	step_act(w, defs, 3, "A_S_SUMSQ"); /* dense, tp-split, experts */
	step_act(w, defs, 2 * 1024, "A_S_SUMSQ_WS"); /* a double per block: grad_sumsq.cu's grid cap */
	step_act(w, defs, 1, "A_S_SUMSQ_COUNT");
	/* AdamW's tensor tables on the device: 4 pointer arrays, the offsets, the decay flags */
	step_act(w, defs, 2 * 4 * (int64_t)w->nblocks, "A_S_OPT_PTRS");
	step_act(w, defs, 2 * ((int64_t)w->nblocks + 1), "A_S_OPT_OFFSETS");
	step_act(w, defs, 2 * ((int64_t)w->nblocks + 1), "A_S_OPT_EXPERT_OFFSETS");
	step_act(w, defs, 2 * ((int64_t)w->nblocks + 1), "A_S_OPT_SPLIT_OFFSETS");
	step_act(w, defs, w->nblocks, "A_S_OPT_DECAY");
	step_act(w, defs, 2 * (int64_t)w->nblocks, "A_S_OPT_BF16");
	/* the gradient pieces AdamW updates and their offsets (runtime/zero.h) */
	step_act(w, defs, 2 * (int64_t)w->nblocks, "A_S_ZERO_PTRS");
	step_act(w, defs, 2 * ((int64_t)w->nblocks + 1), "A_S_ZERO_OFFSETS");
	fprintf(defs, "#define MOEC_ACT_FLOATS %lld\n", (long long)w->act_floats);
}

/* ---- part 3: the step ---- */

/* The instance of tmpl (with constant name == value when name is given). */
static bool step_const_is(const struct kernel_inst *k, const char *name, int64_t value)
{
	char v[32];
	snprintf(v, sizeof v, "%lld", (long long)value);
	const char *cv = name ? kernels_dict_get(&k->consts, name) : NULL;
	return !name || (cv && !strcmp(cv, v));
}

/* The instance of tmpl whose constant name is value (and name2 is value2, when given). */
static const char *step_kernel2(struct step_writer *w, const char *tmpl, const char *name, int64_t value,
				const char *name2, int64_t value2)
{
	for (int i = 0; i < w->ks->n; i++) {
		const struct kernel_inst *k = &w->ks->v[i];
		if (!strcmp(k->tmpl, tmpl) && step_const_is(k, name, value) && step_const_is(k, name2, value2))
			return k->name;
	}
	w->err = tmpl;
	return "missing_kernel";
}

static const char *step_kernel(struct step_writer *w, const char *tmpl, const char *name, int64_t value)
{
	return step_kernel2(w, tmpl, name, value, NULL, 0);
}

/* The grouped GEMMs: the experts' (E_LOCAL, I) or the dense MLP's (1 group, D). */
static const char *step_gemm(struct step_writer *w, const char *tmpl, bool moe)
{
	return moe ? step_kernel2(w, tmpl, "E_LOCAL", w->E_LOCAL, "I", w->I)
		   : step_kernel2(w, tmpl, "E_LOCAL", 1, "I", w->D / w->TP);
}

#define OUT(...) fprintf(w->f, __VA_ARGS__)

/* Gradients: first writes overwrite. The trainer no longer zeroes the whole gradient arena
 * before an optimizer step (12 GB written per step at 30B shapes, then read back by every
 * += producer); instead each gradient's first write in the step overwrites it. The generated
 * micro-step takes `first` (1 on the optimizer step's first micro-batch) and sets
 * acc = !first; the rule, per storage block:
 *   - a block written whole by one producer per micro-batch (the dense GEMMs' MM_TN weight
 *     gradients, the grouped weight-gradient kernels of the experts and the dense MLP, which
 *     write zeros for an expert with no rows when overwriting; the LM head's, chunk by chunk
 *     over disjoint rows) passes acc as its beta / accumulate: it overwrites on the first
 *     micro-batch and adds on later ones. 0 + v == v in fp32, so the gradients are the ones
 *     the memset-then-add step made, bit for bit.
 *   - a block whose producers only add is zeroed by the trainer before the first micro-batch
 *     (moec_zero_ranges, from step_grad_zeroed; the list is coalesced into ranges): the norm
 *     weights (rmsnorm_bwd folds its partial rows into dw with +=; all of them lie in
 *     [0, W_FP32_END)), and the embedding unless tied (embedding_bwd scatter-adds the rows of
 *     the batch's ids only). A tied embedding is written whole by the LM head's GEMM first,
 *     which overwrites, and embedding_bwd then adds to it.
 * A producer of a zeroed block that takes a beta passes 1 (step_acc). Full recompute and
 * expert or tensor parallelism do not add producers: each gradient is still written once per
 * micro-batch on a rank (recompute repeats forwards only; the EP ranks' rows of an expert
 * arrive in one grouped call; tp ranks write their own slices or partial sums, reduced in the
 * optimizer step). */
static bool step_grad_zeroed(const struct step_writer *w, const char *block)
{
	if (strstr(block, "NORM"))
		return true;
	return !strcmp(block, "W_EMBED") && !w->s->model.tie_embeddings;
}

/* The beta (MM_*) or accumulate flag (the weight-gradient kernels) of a write into the
 * gradient of block fmt (with %d the layer l): acc, or 1 for a block the trainer zeroes. */
static const char *step_acc(const struct step_writer *w, const char *fmt, int l)
{
	char block[48];
	snprintf(block, sizeof block, fmt, l);
	return step_grad_zeroed(w, block) ? "1" : "acc";
}

static void step_fwd_input_norm(struct step_writer *w, int l)
{
	OUT("\tCALL(%s, A(A_L%d_XN1), A(A_L%d_RSTD1), A(A_X%d), P(W_L%d_INPUT_NORM), T);\n",
	    step_kernel(w, "rmsnorm_fwd", "DIM", w->H), l, l, l, l);
}

/* q, k after the head norms (qk_norm) and RoPE: A_L<l>_QR, _KR. */
static void step_fwd_rope(struct step_writer *w, int l)
{
	const char *rope = step_kernel(w, "rope_fwd", NULL, 0);
	if (w->s->model.qk_norm) {
		const char *norm_hd = step_kernel(w, "rmsnorm_fwd", "DIM", w->HD);
		OUT("\tCALL(%s, A(A_L%d_QR), A(A_L%d_RSTD_Q), A(A_L%d_Q), P(W_L%d_Q_NORM), T * NH);\n", norm_hd, l, l, l, l);
		OUT("\tCALL(%s, A(A_L%d_KR), A(A_L%d_RSTD_K), A(A_L%d_K), P(W_L%d_K_NORM), T * NKV);\n", norm_hd, l, l, l, l);
		OUT("\tCALL(%s, A(A_L%d_QR), A(A_L%d_QR), pos, T, NH);\n", rope, l, l);
		OUT("\tCALL(%s, A(A_L%d_KR), A(A_L%d_KR), pos, T, NKV);\n", rope, l, l);
	} else {
		OUT("\tCALL(%s, A(A_L%d_QR), A(A_L%d_Q), pos, T, NH);\n", rope, l, l);
		OUT("\tCALL(%s, A(A_L%d_KR), A(A_L%d_K), pos, T, NKV);\n", rope, l, l);
	}
}

static void step_fwd_post_norm(struct step_writer *w, int l)
{
	OUT("\tCALL(%s, A(A_L%d_XN2), A(A_L%d_RSTD2), A(A_L%d_XMID), P(W_L%d_POST_ATTN_NORM), T);\n",
	    step_kernel(w, "rmsnorm_fwd", "DIM", w->H), l, l, l, l);
}

static void step_fwd_attention(struct step_writer *w, int l)
{
	OUT("\t/* layer %d attention: x_mid = x + o_proj(attention(rope(norm(q)), rope(norm(k)), v)) */\n", l);
	step_fwd_input_norm(w, l);
	OUT("\tMM_NT(T, QD, H, A(A_L%d_XN1), P(W_L%d_Q), A(A_L%d_Q), 0);\n", l, l, l);
	OUT("\tMM_NT(T, KD, H, A(A_L%d_XN1), P(W_L%d_K), A(A_L%d_K), 0);\n", l, l, l);
	OUT("\tMM_NT(T, KD, H, A(A_L%d_XN1), P(W_L%d_V), A(A_L%d_V), 0);\n", l, l, l);
	step_fwd_rope(w, l);
	OUT("\tCALL(%s, A(A_L%d_QR), A(A_L%d_KR), A(A_L%d_V), doc, A(A_L%d_ATT), A(A_L%d_LSE), T);\n",
	    step_kernel(w, "attention_fwd", NULL, 0), l, l, l, l, l);
	OUT("\tMM_NT(T, H, QD, A(A_L%d_ATT), P(W_L%d_O), A(A_S_Y), 0);\n", l, l);
	if (w->TP > 1)
		OUT("\tTP_SUM(A(A_S_Y), T * H); /* the heads of every tp rank */\n");
	OUT("\tCALL(%s, A(A_L%d_XMID), A(A_X%d), A(A_S_Y), (long)T * H);\n", step_kernel(w, "add", NULL, 0), l, l);
	step_fwd_post_norm(w, l);
}

/* The rows the experts' GEMMs read, expert after expert: x_perm itself on one rank; with
 * expert parallelism the rows this rank's experts received from the whole EP group
 * (runtime/ep.c: counts first, then the rows, regrouped by local expert), A_L<l>_XE. Returns
 * their count's name; offs gets the experts' row offsets. */
static const char *step_expert_rows(const struct step_writer *w, int l, int m, char *offs, size_t n)
{
	if (w->EP > 1)
		snprintf(offs, n, "EP_OFFSETS(%d)", m);
	else
		snprintf(offs, n, "AI(A_L%d_OFFSETS)", l);
	return w->EP > 1 ? "RT" : "TK";
}

static void step_fwd_experts_gate_up(struct step_writer *w, int l, int m)
{
	char offs[64];
	const char *rows = step_expert_rows(w, l, m, offs, sizeof offs);
	OUT("\tCALL(%s, A(A_L%d_%s), P(W_L%d_EXPERTS_GATE_UP), %s, A(A_L%d_HID), A(A_L%d_GU), %s);\n",
	    step_gemm(w, "moe_gate_up_fwd", true), l, w->EP > 1 ? "XE" : "XPERM", l, offs, l, l, rows);
}

static void step_fwd_dense_gate_up(struct step_writer *w, int l)
{
	OUT("\tCALL(%s, A(A_L%d_XN2), P(W_L%d_MLP_GATE_UP), AI(A_S_DENSE_OFFSETS), A(A_L%d_HID), A(A_L%d_GU), T);\n",
	    step_gemm(w, "moe_gate_up_fwd", false), l, l, l, l);
}

static void step_fwd_moe(struct step_writer *w, int l, int m)
{
	OUT("\t/* layer %d experts: route each token to K of E experts, y = sum_k w_k expert_k(xn2) */\n", l);
	/* the router's statistics (the loss terms' inputs): the layer's own in the forward; a
	 * recompute's go to scratch, leaving the ones the host read and sums untouched */
	static const char *stat[] = {"PROB_SUM", "SEL_COUNT", "EXPERT_COUNT", "Z_SUM", "DROPPED"};
	char st[5][40];
	for (int i = 0; i < 5; i++) {
		if (w->recomputing)
			snprintf(st[i], sizeof st[i], "A_S_RC_%s", stat[i]);
		else
			snprintf(st[i], sizeof st[i], "A_L%d_%s", l, stat[i]);
	}
	OUT("\tMM_NT(T, E, H, A(A_L%d_XN2), P(W_L%d_ROUTER), A(A_L%d_LOGITS), 0);\n", l, l, l);
	OUT("\tCALL(%s, A(A_L%d_LOGITS), r->router_bias, AI(A_L%d_TOPK_IDS), A(A_L%d_TOPK_W), A(%s), AI(%s),\n"
	    "\t\tAI(%s), A(%s), A(A_S_ROUTER_WS), T);\n",
	    step_kernel(w, "router_fwd", NULL, 0), l, l, l, st[0], st[1], st[2], st[3]);
	OUT("\tCALL(%s, AI(A_L%d_TOPK_IDS), AI(A_L%d_BLK), T);\n", step_kernel(w, "moe_count", NULL, 0), l, l);
	OUT("\tCALL(%s, AI(A_L%d_BLK), AI(A_L%d_COUNTS), AI(A_L%d_OFFSETS), AI(%s), T);\n",
	    step_kernel(w, "moe_scan", NULL, 0), l, l, l, st[4]);
	OUT("\tCALL(%s, AI(A_L%d_TOPK_IDS), AI(A_L%d_BLK), AI(A_L%d_COUNTS), AI(A_L%d_OFFSETS), AI(A_L%d_DEST),\n"
	    "\t\tAI(A_L%d_ROW_SRC), NULL, T);\n",
	    step_kernel(w, "moe_route", NULL, 0), l, l, l, l, l, l);
	OUT("\tCALL(%s, A(A_L%d_XN2), AI(A_L%d_DEST), A(A_L%d_XPERM), T);\n", step_kernel(w, "moe_permute", NULL, 0), l, l, l);
	if (w->EP > 1) {
		/* a recompute routes as the forward did: r->ep[m] still holds that routing */
		if (!w->recomputing)
			OUT("\tEP_ROUTE(%d, AI(A_L%d_COUNTS), AI(A_L%d_OFFSETS));\n", m, l, l);
		OUT("\tEP_DISPATCH(%d, A(A_L%d_XPERM), A(A_L%d_XE));\n", m, l, l);
	}
	char offs[64];
	const char *rows = step_expert_rows(w, l, m, offs, sizeof offs);
	step_fwd_experts_gate_up(w, l, m);
	char yout[64];
	snprintf(yout, sizeof yout, w->EP > 1 ? "A(A_S_YE)" : "A(A_L%d_YPERM)", l);
	OUT("\tCALL(%s, A(A_L%d_HID), P(W_L%d_EXPERTS_DOWN), %s, %s, %s);\n", step_gemm(w, "moe_down_fwd", true), l, l, offs,
	    yout, rows);
	if (w->EP > 1)
		OUT("\tEP_COMBINE(%d, A(A_S_YE), A(A_L%d_YPERM));\n", m, l);
	if (w->recomputing) /* the backward reads y_perm; y itself fed only the residual add */
		return;
	OUT("\tCALL(%s, A(A_L%d_YPERM), AI(A_L%d_DEST), A(A_L%d_TOPK_W), A(A_S_Y), T);\n", step_kernel(w, "moe_combine", NULL, 0),
	    l, l, l);
}

static void step_fwd_dense(struct step_writer *w, int l)
{
	OUT("\t/* layer %d dense MLP: y = down(silu(gate(xn2)) * up(xn2)), the grouped GEMMs with one group */\n", l);
	step_fwd_dense_gate_up(w, l);
	if (w->recomputing) /* the backward reads gate/up and the SwiGLU output, not y */
		return;
	OUT("\tCALL(%s, A(A_L%d_HID), P(W_L%d_MLP_DOWN), AI(A_S_DENSE_OFFSETS), A(A_S_Y), T);\n",
	    step_gemm(w, "moe_down_fwd", false), l, l);
	if (w->TP > 1)
		OUT("\tTP_SUM(A(A_S_Y), T * H); /* every tp rank's slice of the width */\n");
}

/* The LM head weight: its own, or the embedding when tied. */
static const char *step_lm_head(const struct step_writer *w)
{
	return w->s->model.tie_embeddings ? "W_EMBED" : "W_LM_HEAD";
}

/* The LM head and cross-entropy, one vocabulary chunk at a time over this tp rank's slice
 * [VR0, VR0 + VR) (the whole vocabulary with tp 1). Kernels take global columns (VR0 + v0)
 * so labels compare as they are; the GEMMs index the slice. With tp > 1 each rank folds its
 * columns into its own (max, sum, target) per row — an empty chunk at column 0 starts that
 * state, since the rank's first real chunk is not at column 0 — and the ranks' states are
 * all-gathered and merged (moec_ce_merge_tp) before ce_finish. */
static void step_head(struct step_writer *w)
{
	int L = w->ir->nlayers;
	const char *lm = step_lm_head(w);
	const char *ce_fwd = step_kernel(w, "ce_chunk_fwd", NULL, 0);
	const char *state = w->TP > 1 ? "CE_MINE(0), CE_MINE(1), CE_MINE(2)" : "A(A_ROW_MAX), A(A_ROW_SUM), A(A_TARGET)";
	OUT("	/* loss: final norm, then the LM head and cross-entropy one vocabulary chunk at a time */\n");
	OUT("	CALL(%s, A(A_XF), A(A_RSTDF), A(A_X%d), P(W_FINAL_NORM), T);\n", step_kernel(w, "rmsnorm_fwd", "DIM", w->H), L);
	if (w->TP > 1)
		OUT("	CALL(%s, %s, A(A_LOGITS), labels, T, 0, 0); /* an empty chunk starts the state */\n", ce_fwd, state);
	OUT("	for (int v0 = 0; v0 < VR; v0 += CHUNK) {\n");
	OUT("		const int c = VR - v0 < CHUNK ? VR - v0 : CHUNK;\n");
	OUT("		MM_NT(T, c, H, A(A_XF), P(%s) + (long)v0 * H, A(A_LOGITS), 0);\n", lm);
	OUT("		KEEP_LOGITS(A(A_LOGITS), VR0 + v0, c);\n");
	OUT("		CALL(%s, %s, A(A_LOGITS), labels, T, c, VR0 + v0);\n", ce_fwd, state);
	OUT("	}\n");
	if (w->TP > 1) {
		OUT("	TP_GATHER(A(A_CE_TP), 3 * T);\n");
		OUT("	STEP(moec_ce_merge_tp)(r, GET(A_CE_TP, 3 * T * TP));\n");
	}
	OUT("	CALL(%s, NULL, A(A_CE_LSE), A(A_CE_TOTALS), A(A_ROW_MAX), A(A_ROW_SUM), A(A_TARGET), labels, T);\n",
	    step_kernel(w, "ce_finish", NULL, 0));
	OUT("\n\t/* ---- the loss terms: statistics to the host, the router terms' gradients back ---- */\n");
	OUT("	moec_losses(GET(A_STATS, A_STATS_END - A_STATS), dloss, dprob, &dz_sum, totals, st, r->comm);\n");
	OUT("	PUT(A_CE_TOTALS, totals, 3); /* the global batch's counted targets: ce_chunk_bwd's denominator */\n");
	OUT("	PUT(A_S_DPROB_SUM, dprob, DPROB_FLOATS);\n\n");
	OUT("	/* ---- backward ---- */\n");
	OUT("	for (int v0 = 0; v0 < VR; v0 += CHUNK) {\n");
	OUT("		const int c = VR - v0 < CHUNK ? VR - v0 : CHUNK;\n");
	OUT("		if (VR > CHUNK) /* one chunk: the forward's logits are still there */\n");
	OUT("			MM_NT(T, c, H, A(A_XF), P(%s) + (long)v0 * H, A(A_LOGITS), 0);\n", lm);
	/* dlogits in the compute precision: in place in fp32, into the bf16 scratch in bf16 */
	const char *dl = w->bf16 ? "A(A_S_CAST)" : "A(A_LOGITS)";
	OUT("		CALL(%s, A(A_LOGITS), %s, A(A_CE_LSE), labels, A(A_CE_TOTALS), dloss, T, c, VR0 + v0);\n",
	    step_kernel(w, "ce_chunk_bwd", NULL, 0), dl);
	OUT("		MM_NN(T, H, c, %s, P(%s) + (long)v0 * H, A(A_S_DXN), v0 ? 1 : 0);\n", dl, lm);
	OUT("		MM_TN(c, H, T, %s, A(A_XF), G(%s) + (long)v0 * H, %s);\n", dl, lm, step_acc(w, lm, 0));
	OUT("	}\n");
	if (w->TP > 1)
		OUT("	TP_SUM(A(A_S_DXN), T * H); /* d xf from every tp rank's vocabulary slice */\n");
	OUT("	CALL(%s, A(A_S_DX), G(W_FINAL_NORM), RMS_SCRATCH, A(A_S_DXN), A(A_X%d), P(W_FINAL_NORM), A(A_RSTDF), T, 0);\n",
	    step_kernel(w, "rmsnorm_bwd", "DIM", w->H), L);
}

/* Vocab-parallel cross-entropy's merge, on the host (a few floats per row): the tp ranks'
 * states in [tp][3][T] order into the one ce_finish reads, merged as ce_chunk_fwd merges
 * chunks. A row's target logit is in one rank's slice; the others hold 0. */
static void step_ce_merge(struct step_writer *w)
{
	if (w->TP == 1)
		return;
	OUT("static void STEP(moec_ce_merge_tp)(const struct moert_run *r, const float *all)\n{\n"
	    "	static float merged[3][T];\n"
	    "	for (int t = 0; t < T; t++) {\n"
	    "		float m = -INFINITY, s = 0, target = 0;\n"
	    "		for (int k = 0; k < TP; k++) {\n"
	    "			const float *st = all + (long)k * 3 * T;\n"
	    "			const float m2 = st[t], M = m > m2 ? m : m2;\n"
	    "			if (M != -INFINITY)\n"
	    "				s = (m == -INFINITY ? 0.0f : s * expf(m - M)) + (m2 == -INFINITY ? 0.0f : st[T + t] * expf(m2 - M));\n"
	    "			m = M;\n"
	    "			target += st[2 * T + t];\n"
	    "		}\n"
	    "		merged[0][t] = m, merged[1][t] = s, merged[2][t] = target;\n"
	    "	}\n"
	    "	PUT(A_ROW_MAX, merged[0], T);\n\tPUT(A_ROW_SUM, merged[1], T);\n\tPUT(A_TARGET, merged[2], T);\n}\n\n");
}

static void step_bwd_moe(struct step_writer *w, int l, int m)
{
	OUT("\t/* layer %d experts backward (dx holds d x_%d) */\n", l, l + 1);
	OUT("\tCALL(%s, A(A_S_DX), A(A_L%d_YPERM), AI(A_L%d_DEST), A(A_L%d_TOPK_W), A(A_S_DY_PERM), A(A_S_DTOPK_W), T);\n",
	    step_kernel(w, "moe_combine_bwd", NULL, 0), l, l, l);
	/* the experts' side: on one rank the permuted rows themselves; with expert parallelism
	 * the gradient rows go to the experts' ranks and the input gradients come back */
	char offs[64], xe[64];
	const char *dy = "A(A_S_DY_PERM)", *dx = "A(A_S_DX_PERM)", *rows = "TK";
	snprintf(offs, sizeof offs, "AI(A_L%d_OFFSETS)", l);
	snprintf(xe, sizeof xe, "A(A_L%d_XPERM)", l);
	if (w->EP > 1) {
		OUT("\tEP_DISPATCH(%d, A(A_S_DY_PERM), A(A_S_DYE));\n", m);
		snprintf(offs, sizeof offs, "EP_OFFSETS(%d)", m);
		snprintf(xe, sizeof xe, "A(A_L%d_XE)", l);
		dy = "A(A_S_DYE)";
		dx = "A(A_S_DXE)";
		rows = "RT";
	}
	OUT("\tCALL(%s, %s, P(W_L%d_EXPERTS_DOWN), A(A_L%d_GU), %s, A(A_S_DGU), %s);\n",
	    step_gemm(w, "moe_down_bwd_data", true), dy, l, l, offs, rows);
	OUT("\tCALL(%s, %s, A(A_L%d_HID), %s, G(W_L%d_EXPERTS_DOWN), %s, %s);\n", step_gemm(w, "moe_down_bwd_weight", true),
	    dy, l, offs, l, rows, step_acc(w, "W_L%d_EXPERTS_DOWN", l));
	OUT("\tCALL(%s, A(A_S_DGU), P(W_L%d_EXPERTS_GATE_UP), %s, %s, %s);\n", step_gemm(w, "moe_gate_up_bwd_data", true), l,
	    offs, dx, rows);
	OUT("\tCALL(%s, A(A_S_DGU), %s, %s, G(W_L%d_EXPERTS_GATE_UP), %s, %s);\n",
	    step_gemm(w, "moe_gate_up_bwd_weight", true), xe, offs, l, rows, step_acc(w, "W_L%d_EXPERTS_GATE_UP", l));
	if (w->EP > 1)
		OUT("\tEP_COMBINE(%d, A(A_S_DXE), A(A_S_DX_PERM));\n", m);
	OUT("\tCALL(%s, A(A_S_DX_PERM), AI(A_L%d_DEST), A(A_S_DXN), T);\n", step_kernel(w, "moe_permute_bwd", NULL, 0), l);
	OUT("\tCALL(%s, A(A_L%d_LOGITS), AI(A_L%d_TOPK_IDS), A(A_S_DTOPK_W), DPROB_SUM(%d), dz_sum, A(A_S_DLOGITS), T);\n",
	    step_kernel(w, "router_bwd", NULL, 0), l, l, m);
	const char *dl = "A(A_S_DLOGITS)";
	if (w->bf16) { /* the GEMMs take two operands of one type */
		OUT("\tCALL(%s, A(A_S_CAST), A(A_S_DLOGITS), (long)T * E);\n", step_kernel(w, "cast_f32_bf16", NULL, 0));
		dl = "A(A_S_CAST)";
	}
	OUT("\tMM_NN(T, H, E, %s, P(W_L%d_ROUTER), A(A_S_DXN), 1);\n", dl, l);
	OUT("\tMM_TN(E, H, T, %s, A(A_L%d_XN2), G(W_L%d_ROUTER), %s);\n", dl, l, l, step_acc(w, "W_L%d_ROUTER", l));
}

static void step_bwd_dense(struct step_writer *w, int l)
{
	OUT("\t/* layer %d dense MLP backward (dx holds d x_%d) */\n", l, l + 1);
	OUT("\tCALL(%s, A(A_S_DX), P(W_L%d_MLP_DOWN), A(A_L%d_GU), AI(A_S_DENSE_OFFSETS), A(A_S_DGU), T);\n",
	    step_gemm(w, "moe_down_bwd_data", false), l, l);
	OUT("\tCALL(%s, A(A_S_DX), A(A_L%d_HID), AI(A_S_DENSE_OFFSETS), G(W_L%d_MLP_DOWN), T, %s);\n",
	    step_gemm(w, "moe_down_bwd_weight", false), l, l, step_acc(w, "W_L%d_MLP_DOWN", l));
	OUT("\tCALL(%s, A(A_S_DGU), P(W_L%d_MLP_GATE_UP), AI(A_S_DENSE_OFFSETS), A(A_S_DXN), T);\n",
	    step_gemm(w, "moe_gate_up_bwd_data", false), l);
	OUT("\tCALL(%s, A(A_S_DGU), A(A_L%d_XN2), AI(A_S_DENSE_OFFSETS), G(W_L%d_MLP_GATE_UP), T, %s);\n",
	    step_gemm(w, "moe_gate_up_bwd_weight", false), l, l, step_acc(w, "W_L%d_MLP_GATE_UP", l));
	if (w->TP > 1)
		OUT("\tTP_SUM(A(A_S_DXN), T * H); /* d xn2 from every tp rank's slice */\n");
}

/* The MLP block's norm backward: d x_mid = d x_{l+1} (in dx) + the norm's part. */
static void step_bwd_post_norm(struct step_writer *w, int l)
{
	OUT("\tCALL(%s, A(A_S_DX), G(W_L%d_POST_ATTN_NORM), RMS_SCRATCH, A(A_S_DXN), A(A_L%d_XMID), P(W_L%d_POST_ATTN_NORM),\n"
	    "\t\tA(A_L%d_RSTD2), T, 1);\n", step_kernel(w, "rmsnorm_bwd", "DIM", w->H), l, l, l, l);
}

static void step_bwd_attention(struct step_writer *w, int l)
{
	const char *norm_bwd = step_kernel(w, "rmsnorm_bwd", "DIM", w->H);
	OUT("\t/* layer %d attention backward (dx holds d x_mid) */\n", l);
	OUT("\tMM_NN(T, QD, H, A(A_S_DX), P(W_L%d_O), A(A_S_DATT), 0);\n", l);
	OUT("\tMM_TN(H, QD, T, A(A_S_DX), A(A_L%d_ATT), G(W_L%d_O), %s);\n", l, l, step_acc(w, "W_L%d_O", l));
	OUT("\tCALL(%s, A(A_L%d_ATT), A(A_S_DATT), A(A_S_DELTA), T);\n", step_kernel(w, "attention_bwd_pre", NULL, 0), l);
	OUT("\tCALL(%s, A(A_L%d_QR), A(A_L%d_KR), A(A_L%d_V), doc, A(A_S_DATT), A(A_L%d_LSE), A(A_S_DELTA),\n"
	    "\t\tA(A_S_DQ), A(A_S_DK), A(A_S_DV), T);\n", step_kernel(w, "attention_bwd", NULL, 0), l, l, l, l);
	const char *rope = step_kernel(w, "rope_bwd", NULL, 0);
	const char *dq = "A_S_DQ", *dk = "A_S_DK";
	if (w->s->model.qk_norm) {
		const char *norm_hd = step_kernel(w, "rmsnorm_bwd", "DIM", w->HD);
		OUT("\tCALL(%s, A(A_S_DQ), A(A_S_DQ), pos, T, NH);\n", rope);
		OUT("\tCALL(%s, A(A_S_DK), A(A_S_DK), pos, T, NKV);\n", rope);
		OUT("\tCALL(%s, A(A_S_DQ_RAW), G(W_L%d_Q_NORM), RMS_SCRATCH, A(A_S_DQ), A(A_L%d_Q), P(W_L%d_Q_NORM),\n"
		    "\t\tA(A_L%d_RSTD_Q), T * NH, 0);\n", norm_hd, l, l, l, l);
		OUT("\tCALL(%s, A(A_S_DK_RAW), G(W_L%d_K_NORM), RMS_SCRATCH, A(A_S_DK), A(A_L%d_K), P(W_L%d_K_NORM),\n"
		    "\t\tA(A_L%d_RSTD_K), T * NKV, 0);\n", norm_hd, l, l, l, l);
		dq = "A_S_DQ_RAW";
		dk = "A_S_DK_RAW";
	} else {
		OUT("\tCALL(%s, A(A_S_DQ), A(A_S_DQ), pos, T, NH);\n", rope);
		OUT("\tCALL(%s, A(A_S_DK), A(A_S_DK), pos, T, NKV);\n", rope);
	}
	OUT("\tMM_NN(T, H, QD, A(%s), P(W_L%d_Q), A(A_S_DXN), 0);\n", dq, l);
	OUT("\tMM_NN(T, H, KD, A(%s), P(W_L%d_K), A(A_S_DXN), 1);\n", dk, l);
	OUT("\tMM_NN(T, H, KD, A(A_S_DV), P(W_L%d_V), A(A_S_DXN), 1);\n", l);
	OUT("\tMM_TN(QD, H, T, A(%s), A(A_L%d_XN1), G(W_L%d_Q), %s);\n", dq, l, l, step_acc(w, "W_L%d_Q", l));
	OUT("\tMM_TN(KD, H, T, A(%s), A(A_L%d_XN1), G(W_L%d_K), %s);\n", dk, l, l, step_acc(w, "W_L%d_K", l));
	OUT("\tMM_TN(KD, H, T, A(A_S_DV), A(A_L%d_XN1), G(W_L%d_V), %s);\n", l, l, step_acc(w, "W_L%d_V", l));
	if (w->TP > 1)
		OUT("\tTP_SUM(A(A_S_DXN), T * H); /* d xn1 from every tp rank's heads */\n");
	OUT("\tCALL(%s, A(A_S_DX), G(W_L%d_INPUT_NORM), RMS_SCRATCH, A(A_S_DXN), A(A_X%d), P(W_L%d_INPUT_NORM),\n"
	    "\t\tA(A_L%d_RSTD1), T, 1);\n", norm_bwd, l, l, l, l);
}

/* Sequence-parallel MoE under tensor parallelism: a tp rank routes only its TS tokens,
 * rows R0 .. R0 + TS of the micro-batch. The block body is the one-rank code with T shadowed
 * by TS and the token-indexed buffers moved to row R0 (the text emit writes, rewritten);
 * afterwards every tp rank's rows are gathered. */
static void step_str_replace(char **text, const char *from, const char *to)
{
	size_t fl = strlen(from), tl = strlen(to), n = 0;
	for (const char *p = *text; (p = strstr(p, from)); p += fl)
		n++;
	if (!n)
		return;
	char *out = malloc(strlen(*text) + n * (tl + 1) + 1), *o = out;
	if (!out)
		return;
	for (const char *p = *text, *q; ; p = q + fl) {
		q = strstr(p, from);
		size_t k = q ? (size_t)(q - p) : strlen(p);
		memcpy(o, p, k);
		o += k;
		if (!q)
			break;
		memcpy(o, to, tl);
		o += tl;
	}
	*o = 0;
	free(*text);
	*text = out;
}

static void step_sliced(struct step_writer *w, int l, int m, void (*body)(struct step_writer *, int, int),
			const char *gather)
{
	if (w->TP == 1) {
		body(w, l, m);
		return;
	}
	FILE *real = w->f;
	char *text = NULL;
	size_t len = 0;
	w->f = open_memstream(&text, &len);
	if (!w->f) {
		w->f = real;
		w->err = "memory";
		return;
	}
	body(w, l, m);
	fclose(w->f);
	w->f = real;
	/* the row offset outside the macro: pointer arithmetic in the buffer's own type (act_t
	 * rows are half a float each in a bf16 step) */
	static const char *rows[] = {"XN2", "XMID"};
	char from[64], to[80];
	for (int i = 0; i < 2; i++) {
		snprintf(from, sizeof from, "A(A_L%d_%s)", l, rows[i]);
		snprintf(to, sizeof to, "(A(A_L%d_%s) + R0 * H)", l, rows[i]);
		step_str_replace(&text, from, to);
	}
	snprintf(from, sizeof from, "A(A_L%d_RSTD2)", l);
	snprintf(to, sizeof to, "(A(A_L%d_RSTD2) + R0)", l);
	step_str_replace(&text, from, to);
	step_str_replace(&text, "A(A_S_Y)", "(A(A_S_Y) + R0 * H)");
	step_str_replace(&text, "A(A_S_DX)", "(A(A_S_DX) + R0 * H)");
	step_str_replace(&text, "A(A_S_DXN)", "(A(A_S_DXN) + R0 * H)");
	step_str_replace(&text, "\n\t", "\n\t\t");
	OUT("\t{ /* sequence-parallel MoE: this tp rank's TS tokens, rows R0 .. R0 + TS */\n\t\tconst int T = TS;\n\t%s", text);
	OUT("}\n");
	if (gather) /* NULL: a recompute, whose output rows stay on this rank */
		OUT("\tTP_GATHER(A(%s), TS * H);\n", gather);
	free(text);
}

/* The MoE block's backward and the norm before it, as one unit for step_sliced. */
static void step_bwd_moe_block(struct step_writer *w, int l, int m)
{
	step_bwd_moe(w, l, m);
	step_bwd_post_norm(w, l);
}

/* Selective recompute's SwiGLU output of layer l from its saved gate/up: the experts' rows
 * under the layer's offsets (the received rows' under expert parallelism), or the dense
 * MLP's T rows as the one group of A_S_DENSE_OFFSETS. */
static void step_swiglu(struct step_writer *w, int l, int m)
{
	if (w->ir->layers[l].moe) {
		char offs[64];
		const char *rows = step_expert_rows(w, l, m, offs, sizeof offs);
		OUT("\tCALL(%s, A(A_L%d_GU), %s, A(A_L%d_HID), %s);\n",
		    step_kernel2(w, "swiglu_fwd", "E_LOCAL", w->E_LOCAL, "I", w->I), l, offs, l, rows);
	} else {
		OUT("\tCALL(%s, A(A_L%d_GU), AI(A_S_DENSE_OFFSETS), A(A_L%d_HID), T);\n",
		    step_kernel2(w, "swiglu_fwd", "E_LOCAL", 1, "I", w->D / w->TP), l, l);
	}
}

/* What layer l's backward reads and train.recompute did not keep (step_saved), rebuilt
 * into the shared A_R_* set by the forward's own kernels on the same inputs (selective's
 * SwiGLU: swiglu_fwd, the same function as the gate_up GEMM's epilogue), so the gradients
 * are bit-identical to recompute: none's.
 *   selective  the norm outputs from the saved residual stream (rmsnorm_fwd rewrites
 *              rstd with the values it holds), with qk_norm the post-RoPE q and k from
 *              the saved q, k, and the SwiGLU output from the saved gate/up (swiglu_fwd,
 *              the gate_up GEMM epilogue's own function of the rounded gate/up; the
 *              expert rows under the layer's offsets, or the dense MLP's T rows).
 *   full       the layer's forward from its input A_X<l>, except what fed only the
 *              residual add into A_X<l+1> (the MoE's combine and its tp all-gather, the
 *              dense MLP's down projection and its tp all-reduce); the router's
 *              statistics go to scratch. The attention output is all-reduced over tp
 *              again, and under expert parallelism the routed rows are dispatched and
 *              the experts' outputs combined again, with the forward's routing (plan.c
 *              counts both). */
static void step_recompute(struct step_writer *w, int l, int m)
{
	if (w->s->train.recompute == RECOMPUTE_SELECTIVE) {
		OUT("\t/* layer %d: the norm outputs%s and the %s SwiGLU output (from the saved gate/up)\n"
		    "\t * rebuilt (train.recompute: selective) */\n", l, w->s->model.qk_norm ? ", rotated q, k" : "",
		    w->ir->layers[l].moe ? "experts'" : "MLP's");
		step_fwd_post_norm(w, l);
		step_fwd_input_norm(w, l);
		if (w->s->model.qk_norm)
			step_fwd_rope(w, l);
		step_swiglu(w, l, m);
		return;
	}
	if (w->s->train.recompute != RECOMPUTE_FULL)
		return;
	OUT("\t/* layer %d recomputed from its input x_%d (train.recompute: full) */\n", l, l);
	w->recomputing = true;
	step_fwd_attention(w, l);
	if (w->ir->layers[l].moe)
		step_sliced(w, l, m, step_fwd_moe, NULL);
	else
		step_fwd_dense(w, l);
	w->recomputing = false;
}

static void step_micro_step(struct step_writer *w)
{
	const struct ir *ir = w->ir;
	step_ce_merge(w);
	OUT("/* One micro-batch: forward, loss, backward. first: the optimizer step's first micro-batch,\n"
	    " * whose gradient writes overwrite r->grads (acc 0), except into the blocks the trainer\n"
	    " * zeroes before it (moec_zero_ranges), which are added to; later micro-batches add to\n"
	    " * every gradient (compiler/step.c, step_grad_zeroed). dloss scales the whole gradient\n"
	    " * (1 / grad_accum). */\n");
	OUT("static void STEP(moec_micro_step)(const struct moert_run *r, const struct moert_batch *b, float dloss, int first,\n"
	    "\t\t\t\t  struct moert_stats *st)\n{\n");
	OUT("\tconst int acc = !first;\n");
	OUT("\tconst int *ids, *labels, *pos, *doc;\n");
	OUT("\tBATCH(b, ids, labels, pos, doc);\n");
	OUT("\tfloat dprob[DPROB_FLOATS], dz_sum, totals[3];\n");
	OUT("\tPUT(A_S_DENSE_OFFSETS, ((const int[]){0, T}), 2);\n\n");
	OUT("\t/* ---- forward ---- */\n");
	OUT("\tCALL(%s, A(A_X0), P(W_EMBED), ids, T, VR0, VR);\n", step_kernel(w, "embedding_fwd", NULL, 0));
	if (w->TP > 1)
		OUT("\tTP_SUM(A(A_X0), T * H); /* each tp rank looked up the ids of its vocabulary slice */\n");
	int m = 0;
	for (int l = 0; l < ir->nlayers; l++) {
		step_fwd_attention(w, l);
		if (ir->layers[l].moe)
			step_sliced(w, l, m++, step_fwd_moe, "A_S_Y");
		else
			step_fwd_dense(w, l);
		OUT("\tCALL(%s, A(A_X%d), A(A_L%d_XMID), A(A_S_Y), (long)T * H);\n\n", step_kernel(w, "add", NULL, 0), l + 1, l);
	}
	step_head(w);
	m = ir->n_moe_layers;
	for (int l = ir->nlayers - 1; l >= 0; l--) {
		OUT("\n");
		if (ir->layers[l].moe)
			m--;
		step_recompute(w, l, m);
		if (ir->layers[l].moe) {
			step_sliced(w, l, m, step_bwd_moe_block, "A_S_DX");
		} else {
			step_bwd_dense(w, l);
			step_bwd_post_norm(w, l);
		}
		step_bwd_attention(w, l);
	}
	OUT("\n\tCALL(%s, G(W_EMBED), A(A_S_DX), ids, T, VR0, VR);\n}\n\n", step_kernel(w, "embedding_bwd", NULL, 0));
}

/* The router statistics and the loss terms built from them (kernels/router_bwd.cu says what
 * the host passes down): HF's balance loss over all MoE layers' rows, or Megatron's per layer. */
/* The loss terms from the statistics block (A_STATS .. A_STATS_END, read after the forward)
 * and the gradients router_bwd takes for them (kernels/router_bwd.cu says what the host
 * passes): HF's balance loss over all MoE layers' rows, or Megatron's per layer; ST-MoE's
 * z-loss. Backend-independent: it runs on the host. */
static void step_losses(struct step_writer *w)
{
	bool per_layer = w->s->moe.aux_loss_scope == AUX_SCOPE_PER_LAYER;
	const char *tables[4][2] = {{"prob", "PROB_SUM"}, {"count", "EXPERT_COUNT"}, {"z", "Z_SUM"}, {"dropped", "DROPPED"}};
	OUT("/* Where each MoE layer's router statistics sit in the statistics block. */\n");
	for (int t = 0; t < 4; t++) {
		OUT("static const long moec_stat_%s[MOE_LAYERS ? MOE_LAYERS : 1] = {", tables[t][0]);
		int m = 0;
		for (int l = 0; l < w->ir->nlayers; l++)
			if (w->ir->layers[l].moe)
				OUT("%sA_L%d_%s - A_STATS", m++ ? ", " : "", l, tables[t][1]);
		OUT("%s};\n", m ? "" : "0");
	}
	OUT("#define DPROB_FLOATS (E * %s)\n\n", per_layer ? "(MOE_LAYERS ? MOE_LAYERS : 1)" : "1");
	OUT("/* Loss values into st; dprob_sum[m][e] = d(aux_coef * aux) / d prob_sum_m[e] and\n"
	    " * dz_sum = d(z_coef * z) / d z_sum, both scaled by dloss; totals for ce_chunk_bwd. With\n"
	    " * data parallelism every statistic is summed over the dp ranks first, so the losses are\n"
	    " * the global batch's (mean over all its counted targets, balance over all its rows) and\n"
	    " * the gradients, summed over dp afterwards, are exactly the one-rank gradients. */\n");
	OUT("static void moec_losses(const float *stats, float dloss, float *dprob_sum, float *dz_sum, float *totals,\n"
	    "\t\t\tstruct moert_stats *st, struct moert_comm *comm)\n{\n");
	OUT("\tenum { PER = 2 * E + 2, N = PER * (MOE_LAYERS ? MOE_LAYERS : 1) + 2 };\n");
	OUT("\tdouble v[N] = {0}; /* per layer: probabilities [E], picks [E], z, dropped; then CE sum, counted */\n");
	OUT("\tconst float *ce = stats + (A_CE_TOTALS - A_STATS);\n");
	OUT("\tfor (int m = 0; m < MOE_LAYERS; m++) {\n"
	    "\t\tconst int *c = (const int *)(stats + moec_stat_count[m]);\n"
	    "\t\tfor (int e = 0; e < E; e++) {\n"
	    "\t\t\tv[m * PER + e] = stats[moec_stat_prob[m] + e];\n"
	    "\t\t\tv[m * PER + E + e] = c[e];\n"
	    "\t\t}\n"
	    "\t\tv[m * PER + 2 * E] = stats[moec_stat_z[m]];\n"
	    "\t\tv[m * PER + 2 * E + 1] = *(const int *)(stats + moec_stat_dropped[m]);\n"
	    "\t}\n");
	OUT("\tv[N - 2] = ce[0];\n\tv[N - 1] = ce[1];\n");
	if (w->TP > 1) /* tp ranks route different tokens but compute the same cross-entropy */
		OUT("\tif (comm) {\n"
		    "\t\tmoert_allreduce_f64(comm, MOERT_WORLD, MOERT_BYTES_OTHER, v, N - 2);\n"
		    "\t\tmoert_allreduce_f64(comm, MOERT_DP, MOERT_BYTES_OTHER, v + N - 2, 2);\n"
		    "\t}\n");
	else
		OUT("\tif (comm)\n\t\tmoert_allreduce_f64(comm, MOERT_DP, MOERT_BYTES_OTHER, v, N);\n");
	OUT("\tconst double rows = (double)T * (comm ? comm->size[MOERT_DP] : 1); /* tokens of the global batch */\n");
	OUT("\tdouble count[MOE_LAYERS ? MOE_LAYERS : 1][E], prob[MOE_LAYERS ? MOE_LAYERS : 1][E], z = 0;\n");
	OUT("\tst->counted = v[N - 1];\n\tst->ce_loss = v[N - 1] > 0 ? v[N - 2] / v[N - 1] : 0;\n");
	OUT("\ttotals[0] = (float)v[N - 2];\n\ttotals[1] = (float)v[N - 1];\n\ttotals[2] = (float)st->ce_loss;\n");
	OUT("\tst->aux_loss = 0;\n\tst->dropped = 0;\n");
	OUT("\tfor (int m = 0; m < MOE_LAYERS; m++) {\n"
	    "\t\tfor (int e = 0; e < E; e++) {\n"
	    "\t\t\tprob[m][e] = v[m * PER + e];\n"
	    "\t\t\tcount[m][e] = v[m * PER + E + e];\n"
	    "\t\t\tst->expert_count[m * E + e] = (int)count[m][e];\n"
	    "\t\t}\n"
	    "\t\tz += v[m * PER + 2 * E];\n"
	    "\t\tst->dropped += (long long)v[m * PER + 2 * E + 1];\n"
	    "\t}\n");
	OUT("\tst->z_loss = MOE_LAYERS ? z / ((double)MOE_LAYERS * rows) : 0;\n");
	if (per_layer) {
		OUT("\t/* per_layer: aux = mean over layers of E * sum_e (C_l[e] / T) (S_l[e] / T) */\n");
		OUT("\tfor (int m = 0; m < MOE_LAYERS; m++)\n"
		    "\t\tfor (int e = 0; e < E; e++) {\n"
		    "\t\t\tst->aux_loss += E * (count[m][e] / rows) * (prob[m][e] / rows) / MOE_LAYERS;\n"
		    "\t\t\tdprob_sum[m * E + e] = (float)(dloss * AUX_COEF * E * count[m][e] / (rows * rows * MOE_LAYERS));\n"
		    "\t\t}\n");
	} else {
		OUT("\t/* all_layers (HF): R = rows of all layers, C[e] = picks, S[e] = probabilities, summed\n"
		    "\t * over layers; aux = E * sum_e (C[e] / R) (S[e] / R); the same gradient for every layer. */\n");
		OUT("\tconst double R = MOE_LAYERS * rows;\n");
		OUT("\tfor (int e = 0; e < E; e++) {\n"
		    "\t\tdouble c = 0, s = 0;\n"
		    "\t\tfor (int m = 0; m < MOE_LAYERS; m++) {\n"
		    "\t\t\tc += count[m][e];\n"
		    "\t\t\ts += prob[m][e];\n"
		    "\t\t}\n"
		    "\t\tif (MOE_LAYERS)\n"
		    "\t\t\tst->aux_loss += E * (c / R) * (s / R);\n"
		    "\t\tdprob_sum[e] = MOE_LAYERS ? (float)(dloss * AUX_COEF * E * c / (R * R)) : 0;\n"
		    "\t}\n");
	}
	OUT("\t*dz_sum = MOE_LAYERS ? (float)(dloss * Z_COEF / (MOE_LAYERS * rows)) : 0;\n");
	OUT("\tst->loss = st->ce_loss + AUX_COEF * st->aux_loss + Z_COEF * st->z_loss;\n}\n\n");
	OUT("#define DPROB_SUM(m) %s\n\n", per_layer ? "(A(A_S_DPROB_SUM) + (m) * E)" : "A(A_S_DPROB_SUM)");
}

/* ---- part 4: optimizer and the model description ---- */

/* parallel.shard_optimizer where there is something to shard it over: each rank keeps AdamW's
 * moments for its range of the dense blocks (over dp) and of the expert blocks (over edp),
 * and in a bf16 step the fp32 masters of those ranges too (runtime/zero.h). An fp32 step's
 * weights stay whole: they are what its forward reads; a bf16 step keeps the bf16 copies
 * whole, and of the fp32 weights only the norms it reads in fp32, [0, W_FP32_END). */
static bool step_shards(const struct step_writer *w)
{
	const struct plan_layout *l = &w->c->plan->layout;
	return w->s->parallel.shard_optimizer && (l->dp > 1 || l->edp > 1);
}

/* Floats of each AdamW moment arena on the rank with the largest ranges. */
static int64_t step_moment_floats(const struct step_writer *w)
{
	const struct plan_layout *l = &w->c->plan->layout;
	if (!step_shards(w))
		return w->param_floats;
	int64_t experts = w->param_floats - w->experts_begin;
	return (w->experts_begin + l->dp - 1) / l->dp + (experts + l->edp - 1) / l->edp;
}

/* The gradient ranges the trainer zeroes before an optimizer step's first micro-batch: the
 * blocks step_grad_zeroed names (their producers only add), adjacent ones merged. The rest
 * of the arena is overwritten by its first write (step_acc). */
static void step_zero_ranges(struct step_writer *w)
{
	OUT("/* Gradient ranges {offset, floats} zeroed before an optimizer step's first micro-batch\n"
	    " * (compiler/step.c, step_grad_zeroed): the blocks whose producers only add. */\n");
	OUT("static const long long moec_zero_ranges[][2] = {");
	int n = 0;
	for (int i = 0; i < w->nblocks; i++) {
		if (!step_grad_zeroed(w, w->blocks[i].macro))
			continue;
		int j = i;
		while (j + 1 < w->nblocks && step_grad_zeroed(w, w->blocks[j + 1].macro))
			j++;
		OUT("\n\t{%lld, %lld}, /* %s .. %s */", (long long)w->blocks[i].off,
		    (long long)(w->blocks[j].off + w->blocks[j].numel - w->blocks[i].off), w->blocks[i].macro, w->blocks[j].macro);
		n++;
		i = j;
	}
	OUT("%s\n};\n#define N_ZERO_RANGES %d\n\n", n ? "" : "\n\t{0, 0}, /* none */", n);
}

/* AdamW's tensor list (the storage blocks of the parameter arena, and which decay), in
 * model.c; the backend-independent optimizer step goes to step.inc (step_optimizer_step). */
static void step_optimizer_tables(struct step_writer *w)
{
	OUT("/* AdamW's tensor list: the storage blocks of the parameter arena, and which decay. */\n");
	OUT("#define NBLOCKS %d\n", w->nblocks);
	OUT("static const long moec_block_offsets[NBLOCKS + 1] = {");
	for (int i = 0; i <= w->nblocks; i++)
		OUT("%s%s%lld", i ? ", " : "", i % 8 ? "" : "\n\t", (long long)(i < w->nblocks ? w->blocks[i].off : w->param_floats));
	OUT("\n};\nstatic const int moec_block_decay[NBLOCKS] = {");
	for (int i = 0; i < w->nblocks; i++)
		OUT("%s%s%d", i ? ", " : "", i % 16 ? "" : "\n\t", w->blocks[i].decay);
	OUT("\n};\n");
	OUT("/* The tp-split blocks' and the expert blocks' sizes as offsets of their own lists (their\n"
	    " * squares are summed over tp and ep for the norm). */\n");
	OUT("#define NDENSE %d\n#define NSPLIT %d\n", w->ndense, w->nsplit);
	OUT("static const long moec_split_offsets[NDENSE - NSPLIT + 1] = {");
	for (int i = w->nsplit; i <= w->ndense; i++)
		OUT("%s%s%lld", i > w->nsplit ? ", " : "", (i - w->nsplit) % 8 ? "" : "\n\t",
		    (long long)((i < w->ndense ? w->blocks[i].off : w->experts_begin) - w->split_begin));
	OUT("\n};\n");
	OUT("static const long moec_expert_offsets[NBLOCKS - NDENSE + 1] = {");
	for (int i = w->ndense; i <= w->nblocks; i++)
		OUT("%s%s%lld", i > w->ndense ? ", " : "", (i - w->ndense) % 8 ? "" : "\n\t",
		    (long long)((i < w->nblocks ? w->blocks[i].off : w->param_floats) - w->experts_begin));
	OUT("\n};\n\n");
	OUT("/* The blocks' addresses (host or device addresses alike): g, the whole gradient blocks the\n"
	    " * norm reads; p, zg, m, v, p16 and zoff, the pieces of them this rank's AdamW updates: all\n"
	    " * of every block, or under parallel.shard_optimizer this rank's ranges (runtime/zero.h),\n"
	    " * whose moments (and a bf16 step's masters) are in its parts of those arenas. */\n");
	OUT("static void moec_block_pointers(const struct moert_run *r, float **p, float **g, float **m, float **v,\n"
	    "\tfloat **zg, long *zoff, bf16 **p16)\n{\n"
	    "\tvoid *b16[NBLOCKS];\n"
	    "\tfor (int i = 0; i < NBLOCKS; i++)\n"
	    "\t\tg[i] = r->grads + moec_block_offsets[i];\n"
	    "\tmoert_zero_tables(&r->zero, moec_block_offsets, NBLOCKS, W_EXPERTS_BEGIN, r->params, r->master, r->grads,\n"
	    "\t\tr->exp_avg, r->exp_avg_sq, r->params16, p, zg, m, v, b16, zoff);\n"
	    "\tfor (int i = 0; i < NBLOCKS; i++)\n"
	    "\t\tp16[i] = b16[i];\n}\n\n");
}

static void step_optimizer_step(struct step_writer *w)
{
	const char *sumsq = step_kernel(w, "grad_sumsq", NULL, 0);
	OUT("/* Gradients summed over the ranks that share them (step_class in compiler/step.c: dense\n"
	    " * over dp, tp-partial ones over dp and tp, experts over edp), the global gradient norm\n"
	    " * (returned; squares of tp slices summed over tp, of experts over ep), then\n"
	    " * clip_grad_norm_ and AdamW fused, as torch. */\n");
	OUT("static double STEP(moec_optimizer_step)(const struct moert_run *r, double lr, int step)\n{\n");
	OUT("\tOPT_TABLES(p, g, m, v, offsets, decay);\n");
	OUT("\tREDUCE(MOERT_DP, MOERT_BYTES_DP, G(0), W_TP_PARTIAL_BEGIN);\n");
	if (w->TP > 1) {
		OUT("\tREDUCE(MOERT_WORLD, MOERT_BYTES_DP, G(W_TP_PARTIAL_BEGIN), W_TP_SPLIT_BEGIN - W_TP_PARTIAL_BEGIN);\n");
		OUT("\tREDUCE(MOERT_DP, MOERT_BYTES_DP, G(W_TP_SPLIT_BEGIN), W_EXPERTS_BEGIN - W_TP_SPLIT_BEGIN);\n");
	}
	OUT("\tREDUCE(MOERT_EDP, MOERT_BYTES_EDP, G(W_EXPERTS_BEGIN), MOEC_PARAM_FLOATS - W_EXPERTS_BEGIN);\n");
	OUT("\tPUT(A_S_SUMSQ, ((const float[]){0, 0, 0}), 3);\n");
	OUT("\tCALL_TOTAL(%s, W_TP_SPLIT_BEGIN, A(A_S_SUMSQ), (double *)A(A_S_SUMSQ_WS), (unsigned *)AI(A_S_SUMSQ_COUNT), g,\n"
	    "\t\toffsets, NSPLIT);\n", sumsq);
	OUT("\tif (NDENSE > NSPLIT)\n");
	OUT("\t\tCALL_TOTAL(%s, W_EXPERTS_BEGIN - W_TP_SPLIT_BEGIN, A(A_S_SUMSQ) + 1, (double *)A(A_S_SUMSQ_WS),\n"
	    "\t\t\t(unsigned *)AI(A_S_SUMSQ_COUNT), g + NSPLIT, SPLIT_OFFSETS, NDENSE - NSPLIT);\n", sumsq);
	OUT("\tif (NBLOCKS > NDENSE)\n");
	OUT("\t\tCALL_TOTAL(%s, MOEC_PARAM_FLOATS - W_EXPERTS_BEGIN, A(A_S_SUMSQ) + 2, (double *)A(A_S_SUMSQ_WS),\n"
	    "\t\t\t(unsigned *)AI(A_S_SUMSQ_COUNT), g + NDENSE, EXPERT_OFFSETS, NBLOCKS - NDENSE);\n", sumsq);
	OUT("\tconst float *part = GET(A_S_SUMSQ, 3);\n");
	OUT("\tdouble dense = part[0], split = part[1], expert = part[2];\n");
	OUT("\tif (r->comm) {\n"
	    "\t\tmoert_allreduce_f64(r->comm, MOERT_TP, MOERT_BYTES_OTHER, &split, 1);\n"
	    "\t\tmoert_allreduce_f64(r->comm, MOERT_EP, MOERT_BYTES_OTHER, &expert, 1);\n"
	    "\t}\n");
	OUT("\tconst float total = (float)(dense + split + expert);\n");
	OUT("\tPUT(A_S_SUMSQ, &total, 1);\n");
	OUT("\tCALL_TOTAL(%s, ZERO_FLOATS, p, ZERO_G, m, v, BF16_COPIES, ZERO_OFFSETS, decay, NBLOCKS, lr, %.17g, %.17g,\n"
	    "\t\t%.17g, %.17g, step, A(A_S_SUMSQ), (float)%.17g);\n",
	    step_kernel(w, "adamw", NULL, 0), w->s->train.adam_beta1, w->s->train.adam_beta2, w->s->train.adam_eps,
	    w->s->train.weight_decay, w->s->train.max_grad_norm);
	if (w->s->parallel.shard_optimizer) /* ZeRO-1: each rank updated its ranges; the forward reads them all */
		OUT("\tif (r->zero.on)\n\t\tZERO_GATHER();\n");
	OUT("\treturn sqrt((double)total);\n}\n");
}

/* A data path the trainer can open from any working directory. */
static void step_absolute(const char *path, char *out, size_t n)
{
	char cwd[PATH_MAX];
	if (realpath(path, out))
		return;
	if (path[0] == '/' || !getcwd(cwd, sizeof cwd) || snprintf(out, n, "%s/%s", cwd, path) >= (int)n)
		snprintf(out, n, "%s", path);
}

static void step_model_struct(struct step_writer *w)
{
	const struct spec *s = w->s;
	static const char *schedules[] = {"cosine", "linear", "constant"};
	static const char *formats[] = {"auto", "megatron", "llmc", "raw"};
	char gen[PATH_MAX + 128];
	emit_generated_line(w->c, gen, sizeof gen);
	OUT("static const char *const moec_data_paths[] = {");
	for (int i = 0; i < s->data.paths.n; i++) {
		char abs[PATH_MAX];
		step_absolute(s->data.paths.v[i], abs, sizeof abs);
		OUT("%s", i ? ", " : "");
		emit_c_string(w->f, abs);
	}
	OUT("%s};\n\n", s->data.paths.n ? "" : "NULL");
	OUT("static const struct moert_model moec_model = {\n");
	OUT("\t.name = ");
	emit_c_string(w->f, s->name ? s->name : w->c->spec_path);
	OUT(",\n\t.generated_by = ");
	emit_c_string(w->f, gen);
	OUT(",\n\t.spec_hash = MOEC_SPEC_HASH,\n\t.model_hash = 0x%016llxull,\n", (unsigned long long)w->model_hash);
	OUT("\t.seq_len = MOEC_SEQ, .micro_batch = MOEC_MICRO_BATCH, .grad_accum = MOEC_GRAD_ACCUM, .act_bf16 = ACT_BF16,\n");
	OUT("\t.vocab = V, .hidden = H, .layers = MOEC_LAYERS, .moe_layers = MOE_LAYERS, .experts = E, .top_k = K,\n");
	OUT("\t.expert_inter = I,\n");
	OUT("\t.tokens = T, .param_floats = MOEC_PARAM_FLOATS, .act_floats = MOEC_ACT_FLOATS, .n_params = %lld,\n",
	    (long long)w->param_floats);
	OUT("\t.flops_per_token = %.17g,\n", w->c->plan->compute.flops_per_token);
	OUT("\t.n_tensors = sizeof moec_tensor_table / sizeof moec_tensor_table[0], .tensors = moec_tensor_table,\n");
	OUT("\t.steps = %lld, .lr = %.17g, .min_lr = %.17g, .beta1 = %.17g, .beta2 = %.17g, .eps = %.17g,\n",
	    (long long)s->train.steps, s->train.lr, s->train.min_lr, s->train.adam_beta1, s->train.adam_beta2,
	    s->train.adam_eps);
	OUT("\t.weight_decay = %.17g, .max_grad_norm = %.17g, .init_std = 0.02,\n", s->train.weight_decay,
	    s->train.max_grad_norm);
	OUT("\t.aux_coef = AUX_COEF, .z_coef = Z_COEF, .warmup_steps = %lld, .schedule = \"%s\", .seed = %lldull,\n",
	    (long long)s->train.warmup_steps, schedules[s->train.schedule], (long long)s->train.seed);
	OUT("\t.n_data_paths = %d, .data_paths = moec_data_paths, .data_format = \"%s\", .eod_token = %lld,\n",
	    s->data.paths.n, formats[s->data.format], (long long)s->data.eod_token);
	OUT("\t.shuffle = %d,\n\t.ckpt_dir = ", s->data.shuffle);
	emit_c_string(w->f, s->checkpoint.dir ? s->checkpoint.dir : "checkpoints");
	OUT(", .ckpt_every = %lld, .ckpt_keep = %lld, .ckpt_resume = %d,\n", (long long)s->checkpoint.every,
	    (long long)s->checkpoint.keep, s->checkpoint.resume);
	OUT("\t.init_from = ");
	if (s->checkpoint.init_from) {
		char abs[PATH_MAX];
		step_absolute(s->checkpoint.init_from, abs, sizeof abs);
		emit_c_string(w->f, abs);
	} else {
		OUT("NULL");
	}
	const struct plan_layout *lay = &w->c->plan->layout;
	OUT(",\n\t.stats_floats = A_STATS_END - A_STATS,\n");
	OUT("\t.layout = {%d, %d, %d, %d, %d}, .experts_per_rank = %lld, .experts_begin = W_EXPERTS_BEGIN,\n", lay->world,
	    lay->dp, lay->tp, lay->ep, lay->edp, (long long)w->E_LOCAL);
	OUT("\t.split_begin = W_TP_SPLIT_BEGIN, .shard_optimizer = %d, .fp32_floats = %s,\n", step_shards(w),
	    step_shards(w) && w->bf16 ? "W_FP32_END" : "MOEC_PARAM_FLOATS");
	OUT("\t.n_zero_ranges = N_ZERO_RANGES, .zero_ranges = moec_zero_ranges,\n");
	OUT("\t.micro_step = moec_micro_step_cpu,\n\t.optimizer_step = moec_optimizer_step_cpu,\n");
	OUT("\t.micro_step_cuda = moec_micro_step_cuda,\n\t.optimizer_step_cuda = moec_optimizer_step_cuda,\n");
	OUT("\t.setup_cuda = moec_setup_cuda,\n\t.n_kernels = MOEC_NKERNELS,\n\t.kernels = moec_kernel_images,\n};\n\n");
	OUT("int main(int argc, char **argv)\n{\n\treturn moert_train_main(&moec_model, argc, argv);\n}\n");
}

/* The step is written once (gen/step.inc) and compiled twice, once per backend; these
 * macros are all that differs. */
static const char step_backend_cpu[] =
	"/* ---- the CPU backend: the kernels' CPU twins (gen/cpu/) and OpenBLAS ---- */\n"
	"#define STEP(name) name##_cpu\n"
	"#define CALL(k, ...) (PROF_BEGIN(), k##_cpu(__VA_ARGS__), PROF_END(MOEC_K_##k))\n"
	"#define CALL_TOTAL(k, total, ...) (PROF_BEGIN(), k##_cpu(__VA_ARGS__), PROF_END(MOEC_K_##k))\n"
	"#define MM_NT(m_, n_, k_, a_, b_, c_, beta_) \\\n"
	"\t(PROF_BEGIN(), moert_mm(MOERT_GEMM_NT, m_, n_, k_, a_, IS16(a_), b_, IS16(b_), c_, IS16(c_), beta_), PROF_END(MOEC_NKERNELS))\n"
	"#define MM_NN(m_, n_, k_, a_, b_, c_, beta_) \\\n"
	"\t(PROF_BEGIN(), moert_mm(MOERT_GEMM_NN, m_, n_, k_, a_, IS16(a_), b_, IS16(b_), c_, IS16(c_), beta_), PROF_END(MOEC_NKERNELS + 1))\n"
	"#define MM_TN(m_, n_, k_, a_, b_, c_, beta_) \\\n"
	"\t(PROF_BEGIN(), moert_mm(MOERT_GEMM_TN, m_, n_, k_, a_, IS16(a_), b_, IS16(b_), c_, IS16(c_), beta_), PROF_END(MOEC_NKERNELS + 2))\n"
	"#define GET(off, n) ((const float *)(r->acts + (off)))\n"
	"#define PUT(off, src, n) memcpy(r->acts + (off), (src), (size_t)(n) * 4)\n"
	"#define BATCH(b, ids, labels, pos, doc) \\\n"
	"\t(ids = (b)->input_ids, labels = (b)->labels, pos = (b)->positions, doc = (b)->doc_ids)\n"
	"#define KEEP_LOGITS(src, v0, c) (r->logits_out ? moert_copy_cols(r->logits_out, V, v0, src, T, c) : (void)0)\n"
	"#define RMS_SCRATCH A(A_S_RMS_WS), (unsigned *)AI(A_S_RMS_COUNT)\n"
	"#define REDUCE(group, kind, x, n) (r->comm ? moert_allreduce_f32(r->comm, group, kind, x, n) : (void)0)\n"
	"#define EP_ROUTE(m, counts, offsets) moert_ep_route(r->comm, &r->ep[m], counts, offsets)\n"
	"/* rows move as bytes: H act_t values are H * sizeof(act_t) / 4 floats */\n"
	"#define EP_DISPATCH(m, x, out) \\\n"
	"\tmoert_ep_dispatch(r->comm, &r->ep[m], (const float *)(x), EPW, A(A_S_EP_TMP), (float *)(out))\n"
	"#define EP_COMBINE(m, y, out) \\\n"
	"\tmoert_ep_combine(r->comm, &r->ep[m], (const float *)(y), EPW, A(A_S_EP_TMP), (float *)(out))\n"
	"#define EP_OFFSETS(m) (r->ep[m].local_offsets)\n"
	"#define EXPERT_OFFSETS moec_expert_offsets\n"
	"#define SPLIT_OFFSETS moec_split_offsets\n"
	"/* sums over tp of act_t buffers (bf16 ones summed in fp32); gathers move bytes */\n"
	"#define TP_SUM(x, n) \\\n"
	"\t(r->comm ? _Generic((x), bf16 *: moert_allreduce_bf16, default: moert_allreduce_f32)(r->comm, MOERT_TP, \\\n"
	"\t\tMOERT_BYTES_TP, x, n) : (void)0)\n"
	"#define TP_GATHER(x, n) \\\n"
	"\t(r->comm ? moert_allgather_f32(r->comm, MOERT_TP, MOERT_BYTES_TP, (float *)(x), (long)(n) * (long)sizeof(*(x)) / 4) \\\n"
	"\t\t : (void)0)\n"
	"#define OPT_TABLES(p, g, m, v, offsets, decay) \\\n"
	"\tfloat *p[NBLOCKS], *g[NBLOCKS], *m[NBLOCKS], *v[NBLOCKS], *zg[NBLOCKS]; \\\n"
	"\tbf16 *p16[NBLOCKS]; \\\n"
	"\tlong zoffsets[NBLOCKS + 1]; \\\n"
	"\tconst long *offsets = moec_block_offsets; \\\n"
	"\tconst int *decay = moec_block_decay; \\\n"
	"\tmoec_block_pointers(r, p, g, m, v, zg, zoffsets, p16)\n"
	"#define BF16_COPIES (ACT_BF16 ? p16 : NULL)\n"
	"#define ZERO_G zg\n#define ZERO_OFFSETS zoffsets\n"
	"#define ZERO_GATHER() moert_zero_gather_weights(r, W_EXPERTS_BEGIN, MOEC_PARAM_FLOATS)\n"
	"#include \"step.inc\"\n"
	"#undef STEP\n#undef CALL\n#undef CALL_TOTAL\n#undef MM_NT\n#undef MM_NN\n#undef MM_TN\n#undef GET\n#undef PUT\n"
	"#undef BATCH\n#undef KEEP_LOGITS\n#undef RMS_SCRATCH\n#undef OPT_TABLES\n#undef BF16_COPIES\n#undef REDUCE\n#undef EP_ROUTE\n"
	"#undef ZERO_G\n#undef ZERO_OFFSETS\n#undef ZERO_GATHER\n"
	"#undef EP_DISPATCH\n#undef EP_COMBINE\n#undef EP_OFFSETS\n#undef EXPERT_OFFSETS\n#undef SPLIT_OFFSETS\n#undef TP_SUM\n"
	"#undef TP_GATHER\n\n";

static const char step_backend_cuda[] =
	"/* ---- the CUDA backend: the cubins (launch.h's <kernel>_cuda), cuBLASLt, and copies of\n"
	" * the batch in and the statistics out (runtime/trainer_cuda.c). r's arena pointers are\n"
	" * device addresses here. ---- */\n"
	"#define STEP(name) name##_cuda\n"
	"#define MOEC_LAUNCH (&(const struct moec_cuda_launch){(CUfunction *)r->cuda_fn, (CUstream)r->cuda_stream})\n"
	"#define CALL(k, ...) (PROF_BEGIN(), k##_cuda(MOEC_LAUNCH, MOEC_K_##k, __VA_ARGS__), PROF_END(MOEC_K_##k))\n"
	"#define CALL_TOTAL(k, total, ...) \\\n"
	"\t(PROF_BEGIN(), k##_cuda(MOEC_LAUNCH, MOEC_K_##k, total, __VA_ARGS__), PROF_END(MOEC_K_##k))\n"
	"#define MM_NT(m_, n_, k_, a_, b_, c_, beta_) \\\n"
	"\t(PROF_BEGIN(), moert_cuda_step_mm(r, MOERT_GEMM_NT, m_, n_, k_, a_, IS16(a_), b_, IS16(b_), c_, IS16(c_), beta_), \\\n"
	"\t PROF_END(MOEC_NKERNELS))\n"
	"#define MM_NN(m_, n_, k_, a_, b_, c_, beta_) \\\n"
	"\t(PROF_BEGIN(), moert_cuda_step_mm(r, MOERT_GEMM_NN, m_, n_, k_, a_, IS16(a_), b_, IS16(b_), c_, IS16(c_), beta_), \\\n"
	"\t PROF_END(MOEC_NKERNELS + 1))\n"
	"#define MM_TN(m_, n_, k_, a_, b_, c_, beta_) \\\n"
	"\t(PROF_BEGIN(), moert_cuda_step_mm(r, MOERT_GEMM_TN, m_, n_, k_, a_, IS16(a_), b_, IS16(b_), c_, IS16(c_), beta_), \\\n"
	"\t PROF_END(MOEC_NKERNELS + 2))\n"
	"#define GET(off, n) moert_cuda_step_get(r, off, n)\n"
	"#define PUT(off, src, n) moert_cuda_step_put(r, off, src, (long)(n) * 4)\n"
	"#define BATCH(b, ids, labels, pos, doc) moert_cuda_step_batch(r, b, A_S_BATCH, T, &ids, &labels, &pos, &doc)\n"
	"#define KEEP_LOGITS(src, v0, c) moert_cuda_step_logits(r, src, V, v0, T, c)\n"
	"#define RMS_SCRATCH A(A_S_RMS_WS), (unsigned *)AI(A_S_RMS_COUNT)\n"
	"/* several ranks: NCCL on the device buffers (trainer_cuda.c); one rank: nothing to do */\n"
	"#define REDUCE(group, kind, x, n) moert_cuda_step_reduce(r, group, kind, x, n)\n"
	"#define EP_ROUTE(m, counts, offsets) moert_cuda_step_ep_route(r, m, counts, offsets)\n"
	"/* the regroups launch ep_regroup through moec_ep_regroup_cuda (step_ep_regroup_hook) */\n"
	"#define EP_DISPATCH(m, x, out) moert_cuda_step_ep(r, m, 0, x, EPW, A(A_S_EP_TMP), out, moec_ep_regroup_cuda)\n"
	"#define EP_COMBINE(m, y, out) moert_cuda_step_ep(r, m, 1, y, EPW, A(A_S_EP_TMP), out, moec_ep_regroup_cuda)\n"
	"#define EP_OFFSETS(m) ((const int *)r->ep[m].dev_offsets)\n"
	"#define EXPERT_OFFSETS ((const long *)A(A_S_OPT_EXPERT_OFFSETS))\n"
	"#define SPLIT_OFFSETS ((const long *)A(A_S_OPT_SPLIT_OFFSETS))\n"
	"#define TP_SUM(x, n) moert_cuda_step_tp_sum(r, x, n, IS16(x))\n"
	"#define TP_GATHER(x, n) moert_cuda_step_tp_gather(r, x, (long)(n) * (long)sizeof(*(x)))\n"
	"#define BF16_COPIES (ACT_BF16 ? (bf16 **)A(A_S_OPT_BF16) : NULL)\n"
	"#define ZERO_G ((float **)A(A_S_ZERO_PTRS))\n"
	"#define ZERO_OFFSETS ((const long *)A(A_S_ZERO_OFFSETS))\n"
	"#define ZERO_GATHER() moert_cuda_step_zero_gather(r, W_EXPERTS_BEGIN, MOEC_PARAM_FLOATS)\n"
	"#define OPT_TABLES(p, g, m, v, offsets, decay) \\\n"
	"\tfloat **p = (float **)A(A_S_OPT_PTRS), **g = p + NBLOCKS, **m = g + NBLOCKS, **v = m + NBLOCKS; \\\n"
	"\tconst long *offsets = (const long *)A(A_S_OPT_OFFSETS); \\\n"
	"\tconst int *decay = (const int *)AI(A_S_OPT_DECAY)\n"
	"#include \"step.inc\"\n\n"
	"/* Once, with the arenas on the device: AdamW's tensor tables (device pointers). */\n"
	"static void moec_setup_cuda(const struct moert_run *r)\n{\n"
	"\tfloat *ptrs[4 * NBLOCKS], *zg[NBLOCKS];\n"
	"\tlong zoff[NBLOCKS + 1];\n"
	"\tbf16 *p16[NBLOCKS];\n"
	"\tmoec_block_pointers(r, ptrs, ptrs + NBLOCKS, ptrs + 2 * NBLOCKS, ptrs + 3 * NBLOCKS, zg, zoff, p16);\n"
	"\tmoert_cuda_step_put(r, A_S_OPT_PTRS, ptrs, sizeof ptrs);\n"
	"\tmoert_cuda_step_put(r, A_S_ZERO_PTRS, zg, sizeof zg);\n"
	"\tmoert_cuda_step_put(r, A_S_ZERO_OFFSETS, zoff, sizeof zoff);\n"
	"\tmoert_cuda_step_put(r, A_S_OPT_OFFSETS, moec_block_offsets, sizeof moec_block_offsets);\n"
	"\tmoert_cuda_step_put(r, A_S_OPT_DECAY, moec_block_decay, sizeof moec_block_decay);\n"
	"\tmoert_cuda_step_put(r, A_S_OPT_EXPERT_OFFSETS, moec_expert_offsets, sizeof moec_expert_offsets);\n"
	"\tmoert_cuda_step_put(r, A_S_OPT_SPLIT_OFFSETS, moec_split_offsets, sizeof moec_split_offsets);\n"
	"\tmoert_cuda_step_put(r, A_S_OPT_BF16, p16, sizeof p16);\n"
	"}\n\n";

/* With expert parallelism, the CUDA backend's regroup (runtime/ep.h's moert_ep_io.regroup):
 * one ep_regroup launch through CALL, so it is profiled and emulated as every kernel; the
 * runtime calls it back, since only the generated code knows the instance. Emitted after the
 * backend's macros, declared before the step that names it. */
static void step_ep_regroup_hook(struct step_writer *w, bool body)
{
	if (w->EP <= 1)
		return;
	OUT("static void moec_ep_regroup_cuda(const struct moert_run *r, const int *table, const void *src, void *dst,\n"
	    "\tint rows, int width)%s", body ? "\n{\n" : ";\n");
	if (!body)
		return;
	OUT("\tif (width != EPW) /* the instance moves rows of H act_t */\n"
	    "\t\tmoert_fatal(\"ep_regroup: rows of %%d floats, the kernel's are %%d\", width, EPW);\n"
	    "\tCALL(%s, (const act_t *)src, table, (act_t *)dst, rows);\n}\n\n",
	    step_kernel(w, "ep_regroup", NULL, 0));
}

/* The cubins, embedded by gen/cubins.S, and each kernel's dynamic shared memory. */
static void step_kernel_images(struct step_writer *w)
{
	OUT("/* The kernels' cubins (gen/cubins.S embeds DIR/cubin/<kernel>.%s.cubin). */\n", w->c->arch);
	for (int i = 0; i < w->ks->n; i++)
		OUT("extern const unsigned char moec_cubin_%s[], moec_cubin_%s_end[];\n", w->ks->v[i].name, w->ks->v[i].name);
	OUT("static const struct moert_kernel_image moec_kernel_images[MOEC_NKERNELS] = {\n");
	for (int i = 0; i < w->ks->n; i++) {
		const char *n = w->ks->v[i].name;
		OUT("\t{\"%s\", moec_cubin_%s, moec_cubin_%s_end, MOEC_SMEM_%s},\n", n, n, n, n);
	}
	OUT("};\n\n");
}

static char *step_cubins_asm(struct step_writer *w, size_t *len)
{
	char *text = NULL;
	FILE *f = open_memstream(&text, len);
	if (!f)
		return NULL;
	char gen[PATH_MAX + 128];
	emit_generated_line(w->c, gen, sizeof gen);
	fprintf(f, "// %s\n// cubins.S - every kernel's cubin as read-only data of the trainer (assembled in DIR).\n", gen);
	fprintf(f, "\t.section .rodata\n");
	for (int i = 0; i < w->ks->n; i++) {
		const char *n = w->ks->v[i].name;
		fprintf(f, "\t.balign 64\n\t.globl moec_cubin_%s\n\t.globl moec_cubin_%s_end\nmoec_cubin_%s:\n"
			   "\t.incbin \"cubin/%s.%s.cubin\"\nmoec_cubin_%s_end:\n", n, n, n, n, w->c->arch, n);
	}
	fprintf(f, "\t.section .note.GNU-stack,\"\",@progbits\n");
	fclose(f);
	return text;
}

static void step_prologue(struct step_writer *w, const char *defs, const char *table)
{
	char gen[PATH_MAX + 128];
	emit_generated_line(w->c, gen, sizeof gen);
	const struct spec *s = w->s;
	OUT("// %s\n", gen);
	OUT("/* model.c - %s: the layout of the weights and activations, the loss terms, and the\n"
	    " * training step (gen/step.inc, straight-line calls layer by layer) compiled for the CPU\n"
	    " * backend (the kernels' twins in gen/cpu/, OpenBLAS) and for the CUDA backend (the\n"
	    " * cubins, cuBLASLt). Weights, gradients and AdamW moments live in arenas of\n"
	    " * MOEC_PARAM_FLOATS floats at the W_* offsets; activations in one arena at the A_*\n"
	    " * offsets. Nothing is allocated here. */\n",
	    s->name ? s->name : w->c->spec_path);
	OUT("#include <math.h>\n#include <stddef.h>\n#include <string.h>\n\n");
	OUT("#include \"model.h\"\n#include \"trainer.h\"\n#include \"trainer_cuda.h\"\n#include \"gemm.h\"\n"
	    "#include \"comm.h\"\n#include \"ep.h\"\n#include \"moert.h\"\n#include \"profile.h\"\n");
	OUT("/* launch.h's stubs call the driver the runtime loaded with dlopen */\n");
	OUT("#define MOEC_CU_LAUNCH_KERNEL(f, gx, gy, gz, bx, by, bz, smem, s, args, extra) \\\n"
	    "\tmoert_cu_launch((void *)(f), gx, gy, gz, bx, by, bz, smem, (void *)(s), args, extra)\n");
	OUT("#include \"launch.h\"\n\n");
	OUT("/* Shapes (per rank). */\n");
	OUT("enum {\n\tT = MOEC_TOKENS, H = MOEC_H, V = MOEC_V, NH = MOEC_NH, NKV = MOEC_NKV, HD = MOEC_HD,\n"
	    "\tQD = NH * HD, KD = NKV * HD, E = MOEC_E, K = MOEC_K, TK = MOEC_MOE_TOKENS * K, I = MOEC_I, D = MOEC_D,\n"
	    "\tMOE_LAYERS = MOEC_MOE_LAYERS, E_LOCAL = MOEC_E_LOCAL, EP = %lld, RT = EP * TK, /* rows a rank's experts may get */\n"
	    "\tTS = MOEC_MOE_TOKENS, /* tokens a rank routes: T / tp */\n"
	    "\tTP = %lld, VR = V / TP, /* tensor-parallel ranks; the vocabulary rows each holds */\n"
	    "\tCHUNK = %lld, /* LM-head vocabulary columns per chunk: T * CHUNK floats of logits at once */\n};\n",
	    (long long)w->EP, (long long)w->TP, (long long)w->chunk);
	OUT("#define AUX_COEF %.17g\n#define Z_COEF %.17g\n\n", s->moe.router_aux_loss_coef, s->moe.router_z_loss_coef);
	OUT("/* This rank's first row of the sequence-parallel MoE and first vocabulary row (tensor\n"
	    " * parallelism), and its slot of the vocab-parallel cross-entropy's states (k: 0 max, 1 sum,\n"
	    " * 2 target). */\n"
	    "#define TPI (r->comm ? r->comm->index[MOERT_TP] : 0)\n"
	    "#define R0 (TPI * TS)\n#define VR0 (TPI * VR)\n"
	    "#define CE_MINE(k) (A(A_CE_TP) + ((long)TPI * 3 + (k)) * T)\n");
	OUT("#define P(off) (r->params + (off))\n#define G(off) (r->grads + (off))\n"
	    "#define A(off) (r->acts + (off))\n#define AI(off) ((int *)(r->acts + (off)))\n"
	    "/* the elements AdamW updates on this rank: all, or its ranges (runtime/zero.h) */\n"
	    "#define ZERO_FLOATS (r->zero.hi[0] - r->zero.lo[0] + r->zero.hi[1] - r->zero.lo[1])\n"
	    "/* act_t activations, and the weights kernels and GEMMs read as act_t: in a bf16 step\n"
	    " * the bf16 copies of the fp32 masters, else the masters themselves */\n"
	    "#define AB(off) ((act_t *)(r->acts + (off)))\n"
	    "#if ACT_BF16\n#define PW(off) ((act_t *)r->params16 + (off))\n#else\n#define PW(off) P(off)\n#endif\n"
	    "/* train --profile: every kernel call and GEMM timed (runtime/profile.h) */\n"
	    "#define PROF_BEGIN() (r->prof ? moert_prof_begin(r) : (void)0)\n"
	    "#define PROF_END(id) (r->prof ? moert_prof_end(r, id) : (void)0)\n"
	    "/* a GEMM operand's type */\n"
	    "#define IS16(p) _Generic((p), bf16 *: 1, const bf16 *: 1, default: 0)\n"
	    "/* a row of H act_t values, in floats (expert-parallel transfers move bytes) */\n"
	    "#define EPW ((int)(H * sizeof(act_t) / 4))\n\n");
	OUT("/* Parameter arena offsets (floats). */\n%s", defs);
	OUT("#define MOEC_PARAM_FLOATS %lld\n\n", (long long)w->param_floats);
	OUT("/* Every tensor by its Hugging Face name: where it lives, its shape, decay and init. */\n");
	OUT("static const struct moert_tensor moec_tensor_table[] = {\n%s};\n\n", table);
}

static int step_sizes(struct step_writer *w)
{
	const struct ir_dims *d = &w->ir->dims;
	w->T = w->s->train.micro_batch * w->s->train.seq_len;
	w->H = d->hidden;
	w->V = d->vocab;
	w->NH = d->heads;
	w->NKV = d->kv_heads; /* whole model here; per rank from the kernels' NKV below */
	w->HD = d->head_dim;
	w->QD = w->NH * w->HD;
	w->KD = w->NKV * w->HD;
	w->E = d->experts;
	w->K = d->top_k;
	w->I = d->expert_inter;
	w->D = d->dense_inter;
	w->TP = w->c->plan->layout.tp;
	w->TS = w->T / (w->TP > 0 ? w->TP : 1);
	w->TK = w->TS * w->K; /* the MoE is sequence-parallel over tp: a rank routes TS tokens */
	w->EP = w->c->plan->layout.ep;
	w->E_LOCAL = w->E / (w->EP > 0 ? w->EP : 1);
	w->RT = w->EP * w->TK; /* dropless: every routed row of the group could pick this rank */
	w->bf16 = w->s->train.precision == DTYPE_BF16;
	const char *nkv = kernels_dict_get(&w->ks->dict, "NKV");
	w->kv_split = w->TP == 1 || (nkv && atoll(nkv) * w->TP == w->NKV);
	w->nblk = (w->T + 255) / 256;
	w->chunk = STEP_LOGIT_FLOATS / (w->T > 0 ? w->T : 1);
	if (w->chunk < 1)
		w->chunk = 1;
	if (w->chunk >= w->V)
		w->chunk = w->V;
	else if (w->chunk > 128)
		w->chunk = w->chunk / 128 * 128;
	return 0;
}

static int step_write(const struct emit_context *c, const char *rel, const char *text, size_t len)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/%s", c->dir, rel);
	int err = file_write_atomic(path, text, len, true);
	if (err)
		fprintf(stderr, "moec: error: cannot write %s: %s\n", path, strerror(err));
	else if (c->debug >= 2)
		fprintf(stderr, "==== %s\n%s", path, text);
	return err ? 1 : 0;
}

/* The proof behind `moec check`'s verdict is the plan's estimate; the trainer's arenas are
 * what it will allocate: weights, gradients and both AdamW moments in fp32 (the moments, and
 * a bf16 step's masters, this rank's part under parallel.shard_optimizer), the bf16 weight
 * copies of a bf16 step, and the activation arena. They must fit the GPU with the plan's
 * reserve for the CUDA context and NCCL (else an error: the job would fail at start), and
 * should not exceed the plan's estimate (else a warning: the plan under-counts something,
 * which tests/dist and tests/train check for). */
static int step_check_memory(const struct step_writer *w)
{
	const struct plan_memory *pm = &w->c->plan->memory;
	const double gib = 1024.0 * 1024.0 * 1024.0;
	bool masters = step_shards(w) && w->bf16; /* sharded fp32 masters beside the fp32 norms */
	int64_t arenas = 4 * ((masters ? w->fp32_end : w->param_floats) + w->param_floats +
			      (masters ? 3 : 2) * step_moment_floats(w) + w->act_floats) +
			 (w->bf16 ? 2 * w->param_floats : 0);
	int64_t estimate = pm->total - pm->ws_reserve;
	if (w->c->debug)
		fprintf(stderr,
			"moec: arenas per rank (GiB): fp32 weights %.3f, bf16 weights %.3f, gradients %.3f, AdamW m+v %.3f, "
			"sharded fp32 masters %.3f, activations %.3f\n",
			4.0 * (masters ? w->fp32_end : w->param_floats) / gib, (w->bf16 ? 2.0 * w->param_floats : 0) / gib,
			4.0 * w->param_floats / gib, 8.0 * step_moment_floats(w) / gib,
			masters ? 4.0 * step_moment_floats(w) / gib : 0.0, 4.0 * w->act_floats / gib);
	if (pm->capacity > 0 && arenas + pm->ws_reserve > pm->capacity) {
		fprintf(stderr,
			"moec: error: the trainer's arenas take %.2f GiB per rank (weights, gradients, AdamW and activations), "
			"%.2f GiB with the plan's reserve for CUDA and NCCL: more than the GPU's %.2f GiB (the plan estimated "
			"%.2f GiB); reduce train.micro_batch, recompute more (train.recompute), shard the optimizer "
			"(parallel.shard_optimizer) or spread the model over more ranks\n",
			arenas / gib, (arenas + pm->ws_reserve) / gib, pm->capacity / gib, pm->total / gib);
		return 1;
	}
	if (arenas > estimate)
		fprintf(stderr,
			"moec: warning: the trainer's arenas (%.3f GiB per rank) exceed moec plan's estimate of them (%.3f GiB): "
			"the plan under-counts; its verdict may be optimistic\n",
			arenas / gib, estimate / gib);
	else if (w->c->debug)
		fprintf(stderr, "moec: the trainer's arenas take %.3f GiB per rank; the plan estimated %.3f GiB\n",
			arenas / gib, estimate / gib);
	return 0;
}

int step_write_model_c(const struct emit_context *c, const struct kernel_set *ks)
{
	struct step_writer w = {.c = c, .s = c->spec, .ir = c->ir, .ks = ks};
	char *defs_text = NULL, *tab_text = NULL, *step_text = NULL, *all = NULL, *cubins = NULL;
	size_t defs_len = 0, tab_len = 0, step_len = 0, all_len = 0, cubins_len = 0;
	FILE *defs = open_memstream(&defs_text, &defs_len), *tab = open_memstream(&tab_text, &tab_len);
	FILE *step = open_memstream(&step_text, &step_len), *f = open_memstream(&all, &all_len);
	int errors = 1;
	if (!defs || !tab || !step || !f)
		goto out;
	step_sizes(&w);
	if (step_layout_params(&w, defs, tab))
		goto out;
	step_layout_acts(&w, defs);
	fclose(defs);
	fclose(tab);
	defs = tab = NULL;
	/* gen/step.inc: the step itself, backend-neutral */
	char gen[PATH_MAX + 128];
	emit_generated_line(c, gen, sizeof gen);
	w.f = step;
	fprintf(step, "// %s\n/* step.inc - one training step of %s, included by model.c once per backend. */\n\n", gen,
		c->spec->name ? c->spec->name : c->spec_path);
	step_micro_step(&w);
	step_optimizer_step(&w);
	fclose(step);
	step = NULL;
	step_type_buffers(&step_text);
	step_len = strlen(step_text);
	/* gen/model.c */
	w.f = f;
	step_prologue(&w, defs_text, tab_text);
	step_losses(&w);
	step_optimizer_tables(&w);
	step_zero_ranges(&w);
	fputs(step_backend_cpu, f);
	step_ep_regroup_hook(&w, false);
	fputs(step_backend_cuda, f);
	step_ep_regroup_hook(&w, true);
	step_kernel_images(&w);
	step_model_struct(&w);
	fclose(f);
	f = NULL;
	if (w.err) {
		fprintf(stderr, "moec: error: the step needs a %s kernel the kernel set lacks (compiler/kernels.c)\n", w.err);
		goto out;
	}
	if (step_check_memory(&w))
		goto out;
	cubins = step_cubins_asm(&w, &cubins_len);
	if (!cubins)
		goto out;
	errors = step_write(c, "gen/step.inc", step_text, step_len) + step_write(c, "gen/model.c", all, all_len) +
		 step_write(c, "gen/cubins.S", cubins, cubins_len);
out:
	if (defs)
		fclose(defs);
	if (tab)
		fclose(tab);
	if (step)
		fclose(step);
	if (f)
		fclose(f);
	free(defs_text);
	free(tab_text);
	free(step_text);
	free(all);
	free(cubins);
	free(w.blocks);
	return errors;
}
