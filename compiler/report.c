/* report.c - print a plan as text and as JSON.
 *
 * Requires: a plan built from the same spec and IR (plan.c).
 * Establishes: nothing; it only prints. Text is for people (rounded, human units, the
 *   verdict first-class); JSON is for tools (exact integers, stable keys).
 */
#include "report.h"

#include "diag.h"
#include "parse.h"

#include <math.h>
#include <string.h>

#include "schema.h"

#define GIB (1024.0 * 1024.0 * 1024.0)

/* ---- text ---- */

static double report_gib(int64_t b)
{
	return (double)b / GIB;
}

/* "bf16 51.10" in GiB, or "fp32 0.9 MiB" when under a hundredth of a GiB. */
static void report_text_size(FILE *f, const char *sep, const char *label, int64_t b)
{
	if (report_gib(b) >= 0.01)
		fprintf(f, "%s%s %.2f", sep, label, report_gib(b));
	else
		fprintf(f, "%s%s %.1f MiB", sep, label, (double)b / (1024.0 * 1024.0));
}

/* "30.532 B (30532122624)": billions with 3 decimals, then the exact count. */
static void report_text_params(FILE *f, const char *label, int64_t n, const char *tail)
{
	fprintf(f, "  %-16s %.3f B (%lld)%s\n", label, (double)n / 1e9, (long long)n, tail ? tail : "");
}

/* First group of a list as "[0 2 4 ...]", at most 16 ranks. */
static void report_text_group(FILE *f, const char *label, const struct plan_groups *g)
{
	fprintf(f, "  %-16s %d x %d ranks, %s  e.g. [", label, g->count, g->size,
		g->all_in_domain ? "each inside one NVLink domain" : "across NVLink domains");
	int shown = g->size < 16 ? g->size : 16;
	for (int i = 0; i < shown; i++)
		fprintf(f, "%s%d", i ? " " : "", g->ranks[i]);
	fprintf(f, "%s]\n", shown < g->size ? " ..." : "");
}

static void report_text_layout(FILE *f, const struct spec *s, const struct plan_layout *l, int max_ranks)
{
	fprintf(f, "layout\n");
	fprintf(f, "  %-16s %d = %d node%s x %d GPU%s (%s), NVLink domain %d GPUs\n", "world", l->world, l->nodes,
		l->nodes == 1 ? "" : "s", l->gpus_per_node, l->gpus_per_node == 1 ? "" : "s",
		schema_enum_name(gpu_names, s->parallel.gpu), l->nvlink_domain);
	fprintf(f, "  %-16s tp %d x dp %d\n", "attention", l->tp, l->dp);
	fprintf(f, "  %-16s ep %d x edp %d, %lld experts per rank\n", "experts", l->ep, l->edp, (long long)l->experts_per_rank);
	report_text_group(f, "tp groups", &l->tp_groups);
	report_text_group(f, "dp groups", &l->dp_groups);
	report_text_group(f, "ep groups", &l->ep_groups);
	report_text_group(f, "edp groups", &l->edp_groups);
	int n = max_ranks < 0 || max_ranks > l->world ? l->world : max_ranks;
	if (n == 0)
		return;
	fprintf(f, "  %5s %5s %4s %4s %4s %4s %4s  %s\n", "rank", "node", "gpu", "dp", "tp", "ep", "edp", "experts");
	for (int r = 0; r < n; r++) {
		const struct plan_rank *pr = &l->ranks[r];
		fprintf(f, "  %5d %5d %4d %4d %4d %4d %4d  %lld-%lld\n", pr->rank, pr->node, pr->local_gpu, pr->dp, pr->tp,
			pr->ep, pr->edp, (long long)pr->expert_first, (long long)pr->expert_last);
	}
	if (n < l->world)
		fprintf(f, "  ... %d more ranks\n", l->world - n);
}

static void report_text_params_section(FILE *f, const struct plan_params *p)
{
	char tail[96];
	fprintf(f, "parameters\n");
	report_text_params(f, "total", p->total, NULL);
	snprintf(tail, sizeof tail, " per token; %.3f B without the input embedding", (double)p->active_no_embed / 1e9);
	report_text_params(f, "active", p->active, tail);
	report_text_params(f, "routed experts", p->routed, NULL);
	report_text_params(f, "embedding", p->embedding, NULL);
	report_text_params(f, "trainable", p->trainable, NULL);
	if (p->adapters)
		report_text_params(f, "lora adapters", p->adapters, NULL);
	report_text_params(f, "held per rank", p->rank_params, NULL);
}

static void report_text_mem_detail(FILE *f, const struct spec *s, const struct plan_memory *m, int i)
{
	switch (i) {
	case PLAN_MEM_WEIGHTS:
		fprintf(f, "  (");
		for (int d = 0, first = 1; d < DTYPE_COUNT; d++)
			if (m->weights_by_dtype[d]) {
				report_text_size(f, first ? "" : ", ", schema_enum_name(dtype_names, d), m->weights_by_dtype[d]);
				first = 0;
			}
		fprintf(f, ")");
		break;
	case PLAN_MEM_ACTIVATIONS:
		fprintf(f, "  (saved %.2f, one layer's backward %.2f; recompute %s)", report_gib(m->act_saved),
			report_gib(m->act_working), schema_enum_name(recompute_names, s->train.recompute));
		break;
	case PLAN_MEM_EXPERT_BUFFERS:
		fprintf(f, "  (worst case %lld routed rows in one layer)", (long long)m->rows_worst);
		break;
	case PLAN_MEM_WORKSPACE:
		fprintf(f, "  (cuBLAS %.2f, LM-head chunk of %lld tokens %.2f, CUDA/NCCL reserve %.2f)", report_gib(m->ws_cublas),
			(long long)m->ce_chunk_rows, report_gib(m->ws_ce_chunk), report_gib(m->ws_reserve));
		break;
	default:
		break;
	}
}

static void report_text_verdict(FILE *f, const struct plan_memory *m)
{
	if (m->capacity <= 0) {
		fprintf(f, "  %-16s unknown: set parallel.gpu_memory_gib for a custom GPU\n", "verdict");
		return;
	}
	fprintf(f, "  %-16s %s; largest: ", "verdict", m->fits ? "fits" : "DOES NOT FIT");
	for (int j = 0; j < 3; j++)
		fprintf(f, "%s%s %.2f GiB", j ? ", " : "", plan_mem_item_name(m->top[j]), report_gib(m->item[m->top[j]]));
	fprintf(f, "\n");
	for (int j = 0; j < m->nhints; j++)
		fprintf(f, "  %-16s %s\n", "hint", m->hints[j]);
}

static void report_text_memory(FILE *f, const struct spec *s, const struct plan_memory *m)
{
	fprintf(f, "memory per rank (GiB; micro-batch %lld tokens, MoE routes %lld per rank)\n", (long long)m->tokens,
		(long long)m->moe_tokens);
	for (int i = 0; i < PLAN_MEM_NITEMS; i++) {
		fprintf(f, "  %-16s %8.2f", plan_mem_item_name(i), report_gib(m->item[i]));
		report_text_mem_detail(f, s, m, i);
		fprintf(f, "\n");
	}
	fprintf(f, "  %-16s %8.2f\n", "total", report_gib(m->total));
	fprintf(f, "  %-16s %8.2f  (%s)\n", "GPU", report_gib(m->capacity), schema_enum_name(gpu_names, s->parallel.gpu));
	fprintf(f, "  %-16s %8.2f\n", "headroom", report_gib(m->headroom));
	report_text_verdict(f, m);
	if (!m->rows_bounded && m->rows_worst > 0)
		fprintf(f, "  %-16s dropless routing: saved expert activations assume balanced routing (%lld rows per layer);"
			   " a capacity_factor bounds them\n", "note", (long long)m->rows_saved);
}

static void report_text_comm_line(FILE *f, const char *label, double bytes, double sec, const char *where)
{
	fprintf(f, "  %-16s %8.2f GiB %8.4f s  %s\n", label, bytes / GIB, sec, where);
}

static void report_text_compute(FILE *f, const struct spec *s, const struct plan *p)
{
	const struct plan_compute *c = &p->compute;
	const struct plan_comm *m = &p->comm;
	const struct plan_layout *l = &p->layout;
	fprintf(f, "compute per step\n");
	fprintf(f, "  %-16s %lld (micro-batch %lld x seq %lld x dp %d x accum %lld)\n", "tokens", (long long)c->tokens_per_step,
		(long long)s->train.micro_batch, (long long)s->train.seq_len, l->dp, (long long)s->train.grad_accum);
	fprintf(f, "  %-16s %.3f GFLOP (matmul %.3f, attention %.3f); %.3f with recompute\n", "FLOPs per token",
		c->flops_per_token / 1e9, c->matmul_flops_per_token / 1e9, c->attn_flops_per_token / 1e9, c->hw_flops_per_token / 1e9);
	fprintf(f, "  %-16s %.1f TFLOP all ranks; %.1f TFLOP per rank", "FLOPs per step", c->flops_per_step / 1e12,
		c->hw_flops_per_rank_step / 1e12);
	if (c->peak_flops > 0)
		fprintf(f, " = %.3f s at %.0f TFLOP/s peak", c->compute_s, c->peak_flops / 1e12);
	fprintf(f, "\n");
	fprintf(f, "communication per rank per step (NVLink %.0f GB/s, network %.0f GB/s, no overlap)\n", m->intra_gbps, m->inter_gbps);
	report_text_comm_line(f, "all-to-all", m->a2a_bytes, m->a2a_s, m->a2a_in_domain ? "EP inside NVLink" : "EP crosses the network");
	report_text_comm_line(f, "tensor parallel", m->tp_bytes, m->tp_s, l->tp_groups.all_in_domain ? "inside NVLink" : "crosses the network");
	report_text_comm_line(f, "dp grads", m->dp_bytes, m->dp_s, l->dp_groups.all_in_domain ? "inside NVLink" : "crosses the network");
	report_text_comm_line(f, "edp grads", m->edp_bytes, m->edp_s, l->edp_groups.all_in_domain ? "inside NVLink" : "crosses the network");
	fprintf(f, "  %-16s %21.4f s\n", "total", m->total_s);
}

void report_plan_text(FILE *f, const struct spec *s, const struct ir *ir, const struct plan *p, int max_ranks_listed)
{
	(void)ir;
	if (!p) {
		fprintf(f, "plan: none (impossible layout or out of memory)\n");
		return;
	}
	report_text_layout(f, s, &p->layout, max_ranks_listed);
	report_text_params_section(f, &p->params);
	report_text_memory(f, s, &p->memory);
	report_text_compute(f, s, p);
}

/* ---- JSON ---- */

/* A JSON string: quotes, backslashes and control characters escaped. */
static void report_json_str(FILE *f, const char *str)
{
	fputc('"', f);
	for (const unsigned char *c = (const unsigned char *)str; *c; c++) {
		if (*c == '"' || *c == '\\')
			fprintf(f, "\\%c", *c);
		else if (*c == '\n')
			fputs("\\n", f);
		else if (*c < 0x20)
			fprintf(f, "\\u%04x", *c);
		else
			fputc(*c, f);
	}
	fputc('"', f);
}

/* Key, then the value printed by the caller; `first` tracks the comma. */
static void report_json_key(FILE *f, int *first, const char *key)
{
	fprintf(f, "%s", *first ? "" : ",");
	*first = 0;
	report_json_str(f, key);
	fputc(':', f);
}

static void report_json_int(FILE *f, int *first, const char *key, int64_t v)
{
	report_json_key(f, first, key);
	fprintf(f, "%lld", (long long)v);
}

/* JSON has no inf/nan: print them as null. */
static void report_json_num(FILE *f, int *first, const char *key, double v)
{
	report_json_key(f, first, key);
	if (isfinite(v))
		fprintf(f, "%.9g", v);
	else
		fputs("null", f);
}

static void report_json_bool(FILE *f, int *first, const char *key, bool v)
{
	report_json_key(f, first, key);
	fputs(v ? "true" : "false", f);
}

static void report_json_groups(FILE *f, int *first, const char *key, const struct plan_groups *g)
{
	int k = 1;
	report_json_key(f, first, key);
	fputc('{', f);
	report_json_int(f, &k, "count", g->count);
	report_json_int(f, &k, "size", g->size);
	report_json_bool(f, &k, "in_nvlink_domain", g->all_in_domain);
	report_json_key(f, &k, "ranks");
	fputc('[', f);
	for (int i = 0; i < g->count; i++) {
		fprintf(f, "%s[", i ? "," : "");
		for (int j = 0; j < g->size; j++)
			fprintf(f, "%s%d", j ? "," : "", g->ranks[i * g->size + j]);
		fputc(']', f);
	}
	fputs("]}", f);
}

static void report_json_rank(FILE *f, const struct plan_rank *r)
{
	int k = 1;
	fputc('{', f);
	report_json_int(f, &k, "rank", r->rank);
	report_json_int(f, &k, "node", r->node);
	report_json_int(f, &k, "gpu", r->local_gpu);
	report_json_int(f, &k, "domain", r->domain);
	report_json_int(f, &k, "dp", r->dp);
	report_json_int(f, &k, "tp", r->tp);
	report_json_int(f, &k, "ep", r->ep);
	report_json_int(f, &k, "edp", r->edp);
	report_json_key(f, &k, "experts");
	fprintf(f, "[%lld,%lld]}", (long long)r->expert_first, (long long)r->expert_last);
}

static void report_json_layout(FILE *f, int *first, const struct plan_layout *l, int max_ranks)
{
	int k = 1;
	report_json_key(f, first, "layout");
	fputc('{', f);
	report_json_int(f, &k, "world", l->world);
	report_json_int(f, &k, "nodes", l->nodes);
	report_json_int(f, &k, "gpus_per_node", l->gpus_per_node);
	report_json_int(f, &k, "nvlink_domain", l->nvlink_domain);
	report_json_int(f, &k, "dp", l->dp);
	report_json_int(f, &k, "tp", l->tp);
	report_json_int(f, &k, "ep", l->ep);
	report_json_int(f, &k, "edp", l->edp);
	report_json_int(f, &k, "experts_per_rank", l->experts_per_rank);
	report_json_key(f, &k, "groups");
	int g = 1;
	fputc('{', f);
	report_json_groups(f, &g, "tp", &l->tp_groups);
	report_json_groups(f, &g, "dp", &l->dp_groups);
	report_json_groups(f, &g, "ep", &l->ep_groups);
	report_json_groups(f, &g, "edp", &l->edp_groups);
	fputc('}', f);
	int n = max_ranks < 0 || max_ranks > l->world ? l->world : max_ranks;
	report_json_key(f, &k, "ranks");
	fputc('[', f);
	for (int r = 0; r < n; r++) {
		if (r)
			fputc(',', f);
		report_json_rank(f, &l->ranks[r]);
	}
	fputs("]}", f);
}

static void report_json_params(FILE *f, int *first, const struct plan_params *p)
{
	int k = 1;
	report_json_key(f, first, "params");
	fputc('{', f);
	report_json_int(f, &k, "total", p->total);
	report_json_int(f, &k, "embedding", p->embedding);
	report_json_int(f, &k, "routed", p->routed);
	report_json_int(f, &k, "active", p->active);
	report_json_int(f, &k, "active_no_embed", p->active_no_embed);
	report_json_int(f, &k, "trainable", p->trainable);
	report_json_int(f, &k, "adapters", p->adapters);
	report_json_int(f, &k, "per_rank", p->rank_params);
	fputc('}', f);
}

static void report_json_memory(FILE *f, int *first, const struct plan_memory *m)
{
	int k = 1;
	report_json_key(f, first, "memory");
	fputc('{', f);
	for (int i = 0; i < PLAN_MEM_NITEMS; i++)
		report_json_int(f, &k, plan_mem_item_name(i), m->item[i]);
	report_json_int(f, &k, "total", m->total);
	report_json_int(f, &k, "capacity", m->capacity);
	report_json_int(f, &k, "headroom", m->headroom);
	report_json_bool(f, &k, "fits", m->fits);
	report_json_key(f, &k, "weights_by_dtype");
	int d1 = 1;
	fputc('{', f);
	for (int d = 0; d < DTYPE_COUNT; d++)
		if (m->weights_by_dtype[d])
			report_json_int(f, &d1, schema_enum_name(dtype_names, d), m->weights_by_dtype[d]);
	fputc('}', f);
	report_json_int(f, &k, "activations_saved", m->act_saved);
	report_json_int(f, &k, "activations_working", m->act_working);
	report_json_int(f, &k, "workspace_cublas", m->ws_cublas);
	report_json_int(f, &k, "workspace_ce_chunk", m->ws_ce_chunk);
	report_json_int(f, &k, "workspace_reserve", m->ws_reserve);
	report_json_int(f, &k, "tokens", m->tokens);
	report_json_int(f, &k, "moe_tokens", m->moe_tokens);
	report_json_int(f, &k, "routed_rows_saved", m->rows_saved);
	report_json_int(f, &k, "routed_rows_worst", m->rows_worst);
	report_json_bool(f, &k, "routed_rows_bounded", m->rows_bounded);
	report_json_int(f, &k, "ce_chunk_rows", m->ce_chunk_rows);
	report_json_key(f, &k, "largest");
	fprintf(f, "[");
	for (int j = 0; j < 3; j++) {
		fprintf(f, "%s", j ? "," : "");
		report_json_str(f, plan_mem_item_name(m->top[j]));
	}
	fprintf(f, "]");
	report_json_key(f, &k, "hints");
	fputc('[', f);
	for (int j = 0; j < m->nhints; j++) {
		fprintf(f, "%s", j ? "," : "");
		report_json_str(f, m->hints[j]);
	}
	fputs("]}", f);
}

static void report_json_compute(FILE *f, int *first, const struct plan_compute *c)
{
	int k = 1;
	report_json_key(f, first, "compute");
	fputc('{', f);
	report_json_num(f, &k, "matmul_flops_per_token", c->matmul_flops_per_token);
	report_json_num(f, &k, "attention_flops_per_token", c->attn_flops_per_token);
	report_json_num(f, &k, "flops_per_token", c->flops_per_token);
	report_json_num(f, &k, "hw_flops_per_token", c->hw_flops_per_token);
	report_json_int(f, &k, "tokens_per_step", c->tokens_per_step);
	report_json_num(f, &k, "flops_per_step", c->flops_per_step);
	report_json_num(f, &k, "hw_flops_per_rank_step", c->hw_flops_per_rank_step);
	report_json_num(f, &k, "peak_flops", c->peak_flops);
	report_json_num(f, &k, "compute_s", c->compute_s);
	fputc('}', f);
}

static void report_json_comm(FILE *f, int *first, const struct plan_comm *c)
{
	int k = 1;
	report_json_key(f, first, "comm");
	fputc('{', f);
	report_json_num(f, &k, "intra_gbps", c->intra_gbps);
	report_json_num(f, &k, "inter_gbps", c->inter_gbps);
	report_json_num(f, &k, "a2a_bytes", c->a2a_bytes);
	report_json_num(f, &k, "tp_bytes", c->tp_bytes);
	report_json_num(f, &k, "dp_bytes", c->dp_bytes);
	report_json_num(f, &k, "edp_bytes", c->edp_bytes);
	report_json_num(f, &k, "a2a_s", c->a2a_s);
	report_json_num(f, &k, "tp_s", c->tp_s);
	report_json_num(f, &k, "dp_s", c->dp_s);
	report_json_num(f, &k, "edp_s", c->edp_s);
	report_json_num(f, &k, "total_s", c->total_s);
	report_json_bool(f, &k, "a2a_in_nvlink_domain", c->a2a_in_domain);
	fputc('}', f);
}

void report_plan_json(FILE *f, const struct spec *s, const struct ir *ir, const struct plan *p)
{
	(void)s;
	(void)ir;
	if (!p) {
		fputs("null", f);
		return;
	}
	int first = 1;
	fputc('{', f);
	report_json_layout(f, &first, &p->layout, -1);
	report_json_params(f, &first, &p->params);
	report_json_memory(f, &first, &p->memory);
	report_json_compute(f, &first, &p->compute);
	report_json_comm(f, &first, &p->comm);
	fputc('}', f);
}

/* ---- verdict for `moec check` ---- */

bool report_verdict(const struct spec *s, const struct plan *p)
{
	/* Point at the user's parallel: section (where the fix usually goes), else the file. */
	struct origin at = spec_section_origin(s, "parallel");
	const struct source *src = at.src ? at.src : s->main_source;
	const char *name = s->name ? s->name : s->model.name ? s->model.name : "the job";
	if (!p) {
		diag_at(DIAG_ERROR, src, at.line, at.col, "%s: no plan (the parallel layout is impossible or memory ran out)", name);
		return false;
	}
	const struct plan_memory *m = &p->memory;
	if (m->capacity <= 0) {
		diag_at(DIAG_NOTE, src, at.line, at.col, "%s needs %.2f GiB per rank; GPU memory unknown (set parallel.gpu_memory_gib)", name,
			report_gib(m->total));
		return true;
	}
	if (m->fits)
		return true;
	char largest[256];
	size_t used = 0;
	for (int j = 0; j < 3; j++)
		used += (size_t)snprintf(largest + used, sizeof largest - used, "%s%s %.2f GiB", j ? ", " : "",
					 plan_mem_item_name(m->top[j]), report_gib(m->item[m->top[j]]));
	diag_at(DIAG_ERROR, src, at.line, at.col, "%s does not fit: needs %.2f GiB per rank, the GPU has %.2f GiB (%s); largest: %s", name,
		report_gib(m->total), report_gib(m->capacity), schema_enum_name(gpu_names, s->parallel.gpu), largest);
	for (int j = 0; j < m->nhints; j++)
		diag_at(DIAG_NOTE, NULL, 0, 0, "%s", m->hints[j]);
	return false;
}
