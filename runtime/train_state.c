/* train_state.c - weights in and out of a trainer, and its batches. See train_state.h. */
#define _GNU_SOURCE
#include "train_state.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt.h"
#include "hf.h"
#include "moert.h"
#include "safetensors.h"

long long moert_tensor_numel(const struct moert_tensor *t)
{
	long long n = 1;
	for (int d = 0; d < t->ndim; d++)
		n *= (long long)t->shape[d];
	return n;
}

static void tensor_shape(const struct moert_tensor *t, uint64_t *shape)
{
	for (int d = 0; d < t->ndim; d++)
		shape[d] = t->shape[d];
}

static char *name_with(const char *name, const char *suffix)
{
	size_t n = strlen(name) + strlen(suffix) + 1;
	char *s = malloc(n);
	if (!s)
		moert_fatal("out of memory");
	snprintf(s, n, "%s%s", name, suffix);
	return s;
}

void train_state_init(struct train_state *ts, const struct moert_model *m, const char *ckpt_dir, struct moert_comm *comm)
{
	*ts = (struct train_state){.m = m, .ckpt_dir = ckpt_dir, .comm = comm, .ep_index = comm->index[MOERT_EP]};
	ts->exp_avg_names = calloc((size_t)m->n_tensors, sizeof(char *));
	ts->exp_avg_sq_names = calloc((size_t)m->n_tensors, sizeof(char *));
	if (!ts->exp_avg_names || !ts->exp_avg_sq_names)
		moert_fatal("out of memory");
	for (int i = 0; i < m->n_tensors; i++) {
		ts->exp_avg_names[i] = name_with(m->tensors[i].name, ".exp_avg");
		ts->exp_avg_sq_names[i] = name_with(m->tensors[i].name, ".exp_avg_sq");
	}
}

bool train_state_holds(const struct train_state *ts, const struct moert_tensor *t)
{
	return t->expert < 0 || t->expert / ts->m->experts_per_rank == ts->ep_index;
}

/* ---- random init ---- */

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* A uniform double in (0, 1]: 53 random bits, never 0 (log below). */
static double uniform01(uint64_t *s)
{
	return ((double)(splitmix64(s) >> 11) + 1.0) * 0x1.0p-53;
}

/* Tensor parallelism: a rank holds slice k of a tp-split tensor, its rows [k*R/tp, ...)
 * (tp_dim 0) or, of a matrix, its columns [k*C/tp, ...) (tp_dim 1). */
static void slice_copy(const struct moert_tensor *t, int tp, int k, float *full, float *local, int to_local)
{
	long long n = moert_tensor_numel(t);
	if (t->tp_dim == 0) {
		long long part = n / tp;
		if (to_local)
			memcpy(local, full + k * part, (size_t)part * sizeof *local);
		else
			memcpy(full + k * part, local, (size_t)part * sizeof *local);
		return;
	}
	long long rows = (long long)t->shape[0], cols = (long long)t->shape[1], lc = cols / tp;
	for (long long i = 0; i < rows; i++) {
		if (to_local)
			memcpy(local + i * lc, full + i * cols + k * lc, (size_t)lc * sizeof *local);
		else
			memcpy(full + i * cols + k * lc, local + i * lc, (size_t)lc * sizeof *local);
	}
}

static float *full_buffer(const struct moert_tensor *t)
{
	float *b = malloc((size_t)moert_tensor_numel(t) * sizeof *b);
	if (!b)
		moert_fatal("out of memory");
	return b;
}

/* Put the full tensor's values (full) into this rank's storage of it. */
static void store_local(const struct train_state *ts, const struct moert_tensor *t, float *full, float *arena)
{
	if (t->tp_dim < 0)
		memcpy(arena + t->offset, full, (size_t)moert_tensor_numel(t) * sizeof *full);
	else
		slice_copy(t, ts->m->layout.tp, ts->comm->index[MOERT_TP], full, arena + t->offset, 1);
}

/* One tensor of a random init: normal(0, init_std) (or ones / zeros) from a stream seeded by
 * the seed and the tensor's name, so every layout draws the same full tensor. */
static void init_tensor(const struct train_state *ts, const struct moert_tensor *t, float *params, uint64_t seed)
{
	long long n = moert_tensor_numel(t);
	float *p = t->tp_dim < 0 ? params + t->offset : full_buffer(t);
	uint64_t s = seed ^ 0xcbf29ce484222325ull;
	for (const char *c = t->name; *c; c++)
		s = (s ^ (unsigned char)*c) * 0x100000001b3ull;
	for (long long j = 0; j < n; j += 2) {
		/* Box-Muller: two normals from two uniforms. */
		double u1 = uniform01(&s), u2 = uniform01(&s), rad = sqrt(-2.0 * log(u1));
		double z[2] = {rad * cos(2 * M_PI * u2), rad * sin(2 * M_PI * u2)};
		for (int k = 0; k < 2 && j + k < n; k++)
			p[j + k] = t->init == MOERT_INIT_ONES ? 1.0f
				   : t->init == MOERT_INIT_ZEROS ? 0.0f
				   : (float)(ts->m->init_std * z[k]);
	}
	if (t->tp_dim >= 0) {
		store_local(ts, t, p, params);
		free(p);
	}
}

struct init_work {
	const struct train_state *ts;
	float *params;
	uint64_t seed;
	int next; /* the next tensor to take (atomic) */
};

static void *init_worker(void *arg)
{
	struct init_work *w = arg;
	for (int i; (i = __atomic_fetch_add(&w->next, 1, __ATOMIC_RELAXED)) < w->ts->m->n_tensors;)
		if (train_state_holds(w->ts, &w->ts->m->tensors[i]))
			init_tensor(w->ts, &w->ts->m->tensors[i], w->params, w->seed);
	return NULL;
}

/* Tensors are independent streams, so they are drawn on every core (a 30B-shape model's
 * few billion normals take about a minute on one): the same values whatever the count. */
void train_state_init_random(struct train_state *ts, struct moert_run *r, uint64_t seed)
{
	struct init_work w = {ts, r->params, seed, 0};
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	int n = cores < 1 ? 1 : cores > 64 ? 64 : (int)cores;
	pthread_t th[64];
	int started = 0;
	while (started < n - 1 && pthread_create(&th[started], NULL, init_worker, &w) == 0)
		started++;
	init_worker(&w); /* this thread too; alone where no thread could start */
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
}

/* ---- Hugging Face init ---- */

static void read_model_tensors(const struct train_state *ts, struct hf_model *hf, float *params)
{
	const struct moert_model *m = ts->m;
	char err[1024];
	for (int i = 0; i < m->n_tensors; i++) {
		const struct moert_tensor *t = &m->tensors[i];
		if (!train_state_holds(ts, t))
			continue;
		uint64_t shape[4];
		tensor_shape(t, shape);
		float *full = t->tp_dim < 0 ? params + t->offset : full_buffer(t);
		if (hf_read_f32(hf, t->name, t->ndim, shape, full, err, sizeof err))
			moert_fatal("%s", err);
		if (t->tp_dim >= 0) {
			store_local(ts, t, full, params);
			free(full);
		}
	}
}

void train_state_init_from(struct train_state *ts, struct moert_run *r, const char *path, struct log *lg)
{
	char err[1024];
	struct hf_model *hf;
	if (hf_open(path, &hf, err, sizeof err))
		moert_fatal("%s (initializing from it: --init-from / checkpoint.init_from)", err);
	read_model_tensors(ts, hf, r->params);
	size_t unused = hf_count(hf) > (size_t)ts->m->n_tensors ? hf_count(hf) - (size_t)ts->m->n_tensors : 0;
	log_event(lg, "init", "initialized %d tensors from %s%s", ts->m->n_tensors, path,
		  unused ? " (it holds tensors this model does not use)" : "");
	hf_close(hf);
}

/* ---- checkpoints ---- */

static void hex64(uint64_t v, char *buf, size_t n)
{
	snprintf(buf, n, "%016llx", (unsigned long long)v);
}

bool train_state_resume(struct train_state *ts, struct moert_run *r, long long *step, struct data_cursor *cursor,
			struct log *lg)
{
	const struct moert_model *m = ts->m;
	char path[PATH_MAX], err[1024], want[32];
	int rc = ckpt_latest(ts->ckpt_dir, path, sizeof path, err, sizeof err);
	if (rc < 0)
		moert_fatal("%s (resuming from %s; move it aside or pass --no-resume)", err, ts->ckpt_dir);
	if (rc == 0)
		return false;
	struct ckpt *c;
	if (ckpt_open(path, &c, err, sizeof err))
		moert_fatal("%s (resuming; move it aside or pass --no-resume)", err);
	hex64(m->model_hash, want, sizeof want);
	const char *have = ckpt_state(c, "model_hash");
	if (!have || strcmp(have, want))
		moert_fatal("%s/optimizer.safetensors: this checkpoint was written for another model (tensor table "
			    "%s, this trainer's %s). Use another --ckpt-dir, or --no-resume to start fresh",
			    path, have ? have : "unknown", want);
	read_model_tensors(ts, ckpt_model(c), r->params);
	float *am = r->exp_avg, *av = r->exp_avg_sq;
	if (r->zero.on && (!(am = calloc((size_t)m->param_floats, sizeof *am)) || !(av = calloc((size_t)m->param_floats, sizeof *av))))
		moert_fatal("out of memory (AdamW's moments of %lld floats, to resume)", m->param_floats);
	for (int i = 0; i < m->n_tensors; i++) {
		const struct moert_tensor *t = &m->tensors[i];
		if (!train_state_holds(ts, t))
			continue;
		uint64_t shape[4];
		tensor_shape(t, shape);
		float *fm = full_buffer(t), *fv = full_buffer(t);
		if (ckpt_read_optim(c, ts->exp_avg_names[i], t->ndim, shape, fm, err, sizeof err) ||
		    ckpt_read_optim(c, ts->exp_avg_sq_names[i], t->ndim, shape, fv, err, sizeof err))
			moert_fatal("%s", err);
		store_local(ts, t, fm, am);
		store_local(ts, t, fv, av);
		free(fm);
		free(fv);
	}
	if (r->zero.on) { /* sharded AdamW keeps its part of the full tensors (zero.h) */
		moert_zero_cut(&r->zero, am, r->exp_avg);
		moert_zero_cut(&r->zero, av, r->exp_avg_sq);
		free(am);
		free(av);
	}
	unsigned long long epoch, row;
	if (ckpt_state_i64(c, "step", step, err, sizeof err) || ckpt_state_u64(c, "data_epoch", &epoch, err, sizeof err) ||
	    ckpt_state_u64(c, "data_row", &row, err, sizeof err))
		moert_fatal("%s", err);
	cursor->epoch = epoch;
	cursor->row = row;
	log_event(lg, "resume", "resumed from %s at step %lld", path, *step);
	ckpt_close(c);
	return true;
}

/* DIR/manifest.json of the build this binary came from (the trainer lives in DIR). */
static char *read_manifest(size_t *size)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		return NULL;
	exe[n] = 0;
	char path[PATH_MAX + 32];
	snprintf(path, sizeof path, "%s/manifest.json", dirname(exe));
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = NULL;
	if (!fseek(f, 0, SEEK_END)) {
		long len = ftell(f);
		if (len > 0 && len < (16 << 20) && !fseek(f, 0, SEEK_SET) && (buf = malloc((size_t)len))) {
			*size = fread(buf, 1, (size_t)len, f);
		}
	}
	fclose(f);
	return buf;
}


/* Rank 0 writes whole tensors. With expert parallelism each EP group gathers its experts'
 * region of an arena to its first rank, with tensor parallelism each TP group its split
 * region ([ranks][region floats]; NULL on other ranks and with one rank in the group). */
struct gathered {
	float *experts, *split;
};

static void train_state_write(struct train_state *ts, const struct moert_run *r, long long step, struct data_cursor cursor,
			      int keep, struct log *lg, const struct gathered *gp, const struct gathered *gm,
			      const struct gathered *gv);

static float *gather_region(const struct train_state *ts, enum moert_group g, const float *begin, long long n)
{
	int size = ts->comm->size[g];
	if (size == 1 || n == 0)
		return NULL;
	float *all = NULL;
	if (ts->comm->index[g] == 0 && !(all = malloc((size_t)(size * n) * sizeof *all)))
		moert_fatal("out of memory");
	moert_gather_f32(ts->comm, g, 0, begin, all, n);
	return all;
}

static struct gathered gather_arena(const struct train_state *ts, const float *arena)
{
	const struct moert_model *m = ts->m;
	struct gathered g;
	g.experts = gather_region(ts, MOERT_EP, arena + m->experts_begin, m->param_floats - m->experts_begin);
	g.split = gather_region(ts, MOERT_TP, arena + m->split_begin, m->experts_begin - m->split_begin);
	return g;
}

static void gathered_free(struct gathered *g)
{
	free(g->experts);
	free(g->split);
}

/* Tensor t's full values on the writing rank: in its arena, among the gathered experts, or
 * assembled from the tp slices into *owned (freed by the caller). */
static const float *tensor_at(const struct train_state *ts, const struct moert_tensor *t, const float *arena,
			      const struct gathered *g, float **owned)
{
	const struct moert_model *m = ts->m;
	*owned = NULL;
	if (t->expert >= 0 && g->experts) {
		long long ef = m->param_floats - m->experts_begin;
		return g->experts + (long long)(t->expert / m->experts_per_rank) * ef + (t->offset - m->experts_begin);
	}
	if (t->tp_dim < 0 || !g->split)
		return arena + t->offset;
	long long sf = m->experts_begin - m->split_begin;
	float *full = full_buffer(t);
	for (int k = 0; k < m->layout.tp; k++)
		slice_copy(t, m->layout.tp, k, full, g->split + k * sf + (t->offset - m->split_begin), 0);
	return *owned = full;
}

/* The whole fp32 weights: r->params, or with sharded masters (zero.h) an arena assembled from
 * the ranks' masters and the norms every rank keeps (complete on the ranks train_state_save
 * reads; the caller frees it when it is not r->params). */
static float *whole_weights(struct train_state *ts, const struct moert_run *r)
{
	if (!r->zero.master)
		return r->params;
	float *w = calloc((size_t)ts->m->param_floats, sizeof *w);
	if (!w)
		moert_fatal("out of memory (the weights, %lld floats, to save)", ts->m->param_floats);
	moert_zero_expand(&r->zero, ts->m, ts->comm, r->master, w);
	memcpy(w, r->params, (size_t)ts->m->fp32_floats * sizeof *w);
	return w;
}

void train_state_save(struct train_state *ts, const struct moert_run *r, long long step, struct data_cursor cursor,
		      int keep, struct log *lg)
{
	/* Sharded AdamW: its moments (and masters) as full arenas first (zero.h), then as without
	 * sharding. */
	struct moert_run full = *r;
	const bool sharded = r->zero.on;
	const float *own = r->params;
	full.params = whole_weights(ts, r);
	if (sharded) {
		full.exp_avg = calloc((size_t)ts->m->param_floats, sizeof(float));
		full.exp_avg_sq = calloc((size_t)ts->m->param_floats, sizeof(float));
		if (!full.exp_avg || !full.exp_avg_sq)
			moert_fatal("out of memory (AdamW's moments of %lld floats, to save)", ts->m->param_floats);
		moert_zero_expand(&r->zero, ts->m, ts->comm, r->exp_avg, full.exp_avg);
		moert_zero_expand(&r->zero, ts->m, ts->comm, r->exp_avg_sq, full.exp_avg_sq);
		r = &full;
	}
	struct gathered gp = gather_arena(ts, r->params), gm = gather_arena(ts, r->exp_avg), gv = gather_arena(ts, r->exp_avg_sq);
	if (ts->comm->rank == 0)
		train_state_write(ts, r, step, cursor, keep, lg, &gp, &gm, &gv);
	if (full.params != own)
		free(full.params);
	if (sharded) {
		free(full.exp_avg);
		free(full.exp_avg_sq);
	}
	gathered_free(&gp);
	gathered_free(&gm);
	gathered_free(&gv);
	moert_barrier(ts->comm); /* nobody reads it, or starts the next step's writes, before it is there */
}

static void train_state_write(struct train_state *ts, const struct moert_run *r, long long step, struct data_cursor cursor,
			      int keep, struct log *lg, const struct gathered *gp, const struct gathered *gm,
			      const struct gathered *gv)
{
	const struct moert_model *m = ts->m;
	size_t n = (size_t)m->n_tensors;
	struct ckpt_tensor *model = calloc(n, sizeof *model), *optim = calloc(2 * n, sizeof *optim);
	float **owned = calloc(3 * n, sizeof *owned);
	if (!model || !optim || !owned)
		moert_fatal("out of memory");
	for (size_t i = 0; i < n; i++) {
		const struct moert_tensor *t = &m->tensors[i];
		struct ckpt_tensor base = {.name = t->name, .dtype = ST_F32, .ndim = t->ndim};
		tensor_shape(t, base.shape);
		model[i] = base;
		model[i].data = tensor_at(ts, t, r->params, gp, &owned[3 * i]);
		optim[2 * i] = base;
		optim[2 * i].name = ts->exp_avg_names[i];
		optim[2 * i].data = tensor_at(ts, t, r->exp_avg, gm, &owned[3 * i + 1]);
		optim[2 * i + 1] = base;
		optim[2 * i + 1].name = ts->exp_avg_sq_names[i];
		optim[2 * i + 1].data = tensor_at(ts, t, r->exp_avg_sq, gv, &owned[3 * i + 2]);
	}
	char s_step[32], s_epoch[32], s_row[32], s_model[32], s_spec[32], s_loss[48];
	snprintf(s_step, sizeof s_step, "%lld", step);
	snprintf(s_epoch, sizeof s_epoch, "%llu", (unsigned long long)cursor.epoch);
	snprintf(s_row, sizeof s_row, "%llu", (unsigned long long)cursor.row);
	hex64(m->model_hash, s_model, sizeof s_model);
	hex64(m->spec_hash, s_spec, sizeof s_spec);
	snprintf(s_loss, sizeof s_loss, "%.9g", ts->last_loss);
	struct st_kv state[] = {{"step", s_step},         {"data_epoch", s_epoch}, {"data_row", s_row},
				{"model_hash", s_model},  {"spec_hash", s_spec},   {"loss", s_loss},
				{"generated_by", m->generated_by}, {"optimizer", "adamw"}};
	size_t manifest_size = 0;
	char *manifest = read_manifest(&manifest_size);
	struct ckpt_file files[] = {{"manifest.json", manifest, manifest_size}};
	struct ckpt_save s = {.dir = ts->ckpt_dir, .step = step, .keep = keep, .model = model, .n_model = n,
			      .optim = optim, .n_optim = 2 * n, .state = state, .n_state = sizeof state / sizeof state[0],
			      .files = files, .n_files = manifest ? 1 : 0};
	char err[1024];
	double t0 = moert_seconds();
	if (ckpt_write(&s, err, sizeof err))
		moert_fatal("%s", err);
	char path[PATH_MAX];
	ckpt_step_path(ts->ckpt_dir, step, path, sizeof path);
	log_event(lg, "checkpoint", "checkpoint %s (%.2f s)", path, moert_seconds() - t0);
	free(manifest);
	free(model);
	free(optim);
	for (size_t i = 0; i < 3 * n; i++)
		free(owned[i]);
	free(owned);
}

void train_state_dump(struct train_state *ts, const struct moert_run *r, const char *path, const struct moert_stats *st)
{
	const struct moert_model *m = ts->m;
	float *weights = whole_weights(ts, r);
	struct gathered gg = gather_arena(ts, r->grads), gp = gather_arena(ts, weights);
	if (ts->comm->rank != 0) {
		gathered_free(&gg);
		gathered_free(&gp);
		if (weights != r->params)
			free(weights);
		return;
	}
	float **owned = calloc(2 * (size_t)m->n_tensors, sizeof *owned);
	if (!owned)
		moert_fatal("out of memory");
	size_t n = (size_t)m->n_tensors, k = 0;
	struct st_write_tensor *w = calloc(2 * n + 5, sizeof *w);
	char **names = calloc(2 * n, sizeof *names);
	uint64_t(*shapes)[4] = calloc(n, sizeof *shapes);
	if (!w || !names || !shapes)
		moert_fatal("out of memory");
	static const uint64_t one[1] = {1};
	float scalars[4] = {(float)st->loss, (float)st->ce_loss, (float)st->aux_loss, (float)st->z_loss};
	static const char *scalar_names[4] = {"loss", "ce_loss", "aux_loss", "z_loss"};
	for (int i = 0; i < 4; i++)
		w[k++] = (struct st_write_tensor){scalar_names[i], ST_F32, 1, one, &scalars[i]};
	uint64_t logits_shape[3] = {(uint64_t)m->micro_batch, (uint64_t)m->seq_len, (uint64_t)m->vocab};
	if (r->logits_out && ts->comm->world == 1) /* with several ranks, rank 0 has its rows' logits only */
		w[k++] = (struct st_write_tensor){"logits", ST_F32, 3, logits_shape, r->logits_out};
	for (size_t i = 0; i < n; i++) {
		const struct moert_tensor *t = &m->tensors[i];
		tensor_shape(t, shapes[i]);
		names[2 * i] = name_with("grad.", t->name);
		names[2 * i + 1] = name_with("adamw.", t->name);
		w[k++] = (struct st_write_tensor){names[2 * i], ST_F32, t->ndim, shapes[i],
						  tensor_at(ts, t, r->grads, &gg, &owned[2 * i])};
		w[k++] = (struct st_write_tensor){names[2 * i + 1], ST_F32, t->ndim, shapes[i],
						  tensor_at(ts, t, weights, &gp, &owned[2 * i + 1])};
	}
	char err[1024];
	struct st_kv meta[] = {{"generated_by", m->generated_by}};
	if (st_write(path, w, k, meta, 1, err, sizeof err))
		moert_fatal("%s", err);
	for (size_t i = 0; i < 2 * n; i++)
		free(names[i]);
	free(names);
	free(shapes);
	free(w);
	for (size_t i = 0; i < 2 * n; i++)
		free(owned[i]);
	free(owned);
	gathered_free(&gg);
	gathered_free(&gp);
	if (weights != r->params)
		free(weights);
}

/* ---- batches ---- */

static int32_t *alloc_tokens(long long n)
{
	int32_t *p = calloc((size_t)n, sizeof *p);
	if (!p)
		moert_fatal("out of memory");
	return p;
}

/* A fixed batch as Hugging Face takes it: input_ids and labels [B, S], labels unshifted
 * (HF shifts inside its loss). moec's labels are next-token targets, so label[t] =
 * labels[t + 1] and the last position of each row predicts nothing. */
static void read_fixed_batch(struct train_batches *tb, const char *file)
{
	const struct moert_model *m = tb->m;
	char err[1024];
	struct st_file *f;
	if (st_open(file, &f, err, sizeof err))
		moert_fatal("%s", err);
	const char *names[2] = {"input_ids", "labels"};
	int32_t *dst[2] = {tb->ids, tb->labels};
	for (int i = 0; i < 2; i++) {
		const struct st_tensor *t = st_find(f, names[i]);
		if (!t || t->ndim != 2 || t->shape[0] != (uint64_t)m->micro_batch || t->shape[1] != (uint64_t)m->seq_len ||
		    (t->dtype != ST_I32 && t->dtype != ST_I64))
			moert_fatal("%s: needs %s as I32 or I64 [%d, %d] (micro_batch, seq_len of this trainer)", file,
				    names[i], m->micro_batch, m->seq_len);
		for (long long j = 0; j < m->tokens; j++) {
			int64_t v;
			if (t->dtype == ST_I32) {
				int32_t x;
				memcpy(&x, (const char *)t->data + 4 * j, 4);
				v = x;
			} else {
				memcpy(&v, (const char *)t->data + 8 * j, 8);
			}
			if ((i == 0 && (v < 0 || v >= m->vocab)) || (i == 1 && v != -100 && (v < 0 || v >= m->vocab)))
				moert_fatal("%s: %s[%lld] = %lld is outside [0, %d)%s", file, names[i], j / m->seq_len,
					    (long long)v, m->vocab, i ? " and not -100" : "");
			dst[i][j] = (int32_t)v;
		}
	}
	st_close(f);
	for (int b = 0; b < m->micro_batch; b++)
		for (int t = 0; t < m->seq_len; t++) {
			long long j = (long long)b * m->seq_len + t;
			tb->labels[j] = t + 1 < m->seq_len ? tb->labels[j + 1] : -100;
			tb->pos[j] = t;
			tb->doc[j] = b;
		}
}

void train_batches_open(struct train_batches *tb, const struct moert_model *m, const char *const *paths, int n_paths,
			const char *batch_file, uint64_t seed, struct data_cursor cursor, int dp_rank, int dp_size)
{
	*tb = (struct train_batches){.m = m};
	tb->ids = alloc_tokens(m->tokens);
	tb->labels = alloc_tokens(m->tokens);
	tb->pos = alloc_tokens(m->tokens);
	tb->doc = alloc_tokens(m->tokens);
	if (batch_file) {
		tb->fixed = true;
		read_fixed_batch(tb, batch_file);
		return;
	}
	if (!n_paths) {
		paths = m->data_paths;
		n_paths = m->n_data_paths;
	}
	if (!n_paths)
		moert_fatal("no training data: the spec has no data.paths; pass --data PATH");
	enum data_format fmt;
	if (data_format_parse(m->data_format, &fmt))
		moert_fatal("data format '%s' is unknown", m->data_format);
	char err[1024];
	tb->data = data_open(paths, n_paths, fmt, m->vocab, m->eod_token, err, sizeof err);
	if (!tb->data)
		moert_fatal("%s", err);
	struct data_batcher_config c = {.seq_len = m->seq_len, .micro_batch = m->micro_batch, .dp_rank = dp_rank,
					.dp_size = dp_size, .seed = seed, .shuffle = m->shuffle};
	tb->batcher = data_batcher_new(tb->data, &c, err, sizeof err);
	if (!tb->batcher)
		moert_fatal("%s", err);
	if (data_batcher_seek(tb->batcher, cursor, err, sizeof err))
		moert_fatal("%s", err);
}

void train_batches_next(struct train_batches *tb, struct moert_batch *b)
{
	if (!tb->fixed)
		data_batcher_next(tb->batcher, tb->ids, tb->labels, tb->pos, tb->doc);
	*b = (struct moert_batch){tb->ids, tb->labels, tb->pos, tb->doc};
}

struct data_cursor train_batches_cursor(const struct train_batches *tb)
{
	struct data_cursor none = {0, 0};
	return tb->fixed ? none : data_batcher_cursor(tb->batcher);
}

void train_batches_close(struct train_batches *tb)
{
	data_batcher_free(tb->batcher);
	data_close(tb->data);
	free(tb->ids);
	free(tb->labels);
	free(tb->pos);
	free(tb->doc);
}
