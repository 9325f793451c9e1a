/* export.c - a trainer's checkpoint as a Hugging Face model directory. See export.h. */
#define _GNU_SOURCE
#include "export.h"

#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "ckpt.h"
#include "files.h"
#include "gemm.h"
#include "hf.h"
#include "safetensors.h"

/* "moec export: ..." on stderr; returns 1 (the exit code) so callers can return it. */
__attribute__((format(printf, 1, 2))) static int export_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("moec export: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return 1;
}

/* ---- which checkpoint ---- */

/* CKPT itself when it is a step directory (it holds optimizer.safetensors), else the
 * newest complete step under it. 0 and path, or 1 after the error. */
static int export_find_ckpt(const char *ckpt, char *path, size_t n)
{
	char probe[PATH_MAX], err[1024];
	struct stat st;
	int bad = stat(ckpt, &st) ? errno : !S_ISDIR(st.st_mode) ? ENOTDIR : 0;
	if (bad)
		return export_error("%s: %s (CKPT is a step_XXXXXXXX directory or the trainer's --ckpt-dir)", ckpt,
				    strerror(bad));
	snprintf(probe, sizeof probe, "%s/optimizer.safetensors", ckpt);
	if (file_exists(probe)) {
		snprintf(path, n, "%s", ckpt);
		return 0;
	}
	int rc = ckpt_latest(ckpt, path, n, err, sizeof err);
	if (rc < 0)
		return export_error("%s (pass one step_XXXXXXXX directory to export that one)", err);
	if (rc == 0)
		return export_error("%s holds no checkpoint (no step_XXXXXXXX directory): pass a step directory or the "
				    "trainer's --ckpt-dir", ckpt);
	return 0;
}

/* ---- the build ---- */

static bool is_spec_hash(const char *s)
{
	if (!s || strlen(s) != 16)
		return false;
	for (int i = 0; i < 16; i++)
		if (!strchr("0123456789abcdef", s[i]))
			return false;
	return true;
}

/* The top-level "spec_hash" of BUILD/manifest.json (libyaml reads JSON, as inspect.c does). */
static int export_build_hash(const char *build, char hash[17])
{
	char path[PATH_MAX], *text;
	size_t len;
	snprintf(path, sizeof path, "%s/manifest.json", build);
	int err = file_read_whole(path, &text, &len);
	if (err)
		return export_error("%s: %s (is %s a directory made by `moec build`?)", path, strerror(err), build);
	yaml_parser_t p;
	yaml_document_t doc;
	yaml_parser_initialize(&p);
	yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
	int ok = yaml_parser_load(&p, &doc);
	yaml_parser_delete(&p);
	free(text);
	if (!ok)
		return export_error("%s: cannot parse it; rebuild %s with `moec build`", path, build);
	const char *v = NULL;
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	for (yaml_node_pair_t *q = root && root->type == YAML_MAPPING_NODE ? root->data.mapping.pairs.start : NULL;
	     q && q < root->data.mapping.pairs.top; q++) {
		yaml_node_t *k = yaml_document_get_node(&doc, q->key), *val = yaml_document_get_node(&doc, q->value);
		if (k->type == YAML_SCALAR_NODE && val->type == YAML_SCALAR_NODE &&
		    !strcmp((const char *)k->data.scalar.value, "spec_hash"))
			v = (const char *)val->data.scalar.value;
	}
	ok = is_spec_hash(v);
	if (ok)
		memcpy(hash, v, 17);
	yaml_document_delete(&doc);
	if (!ok)
		return export_error("%s has no spec_hash of 16 hex digits; rebuild %s with `moec build`", path, build);
	return 0;
}

/* The checkpoint must have been trained from BUILD's spec; --force only warns. */
static int export_check_hash(const struct ckpt *c, const char *build, const char *build_hash, bool force)
{
	const char *have = ckpt_state(c, "spec_hash");
	if (have && !strcmp(have, build_hash))
		return 0;
	if (force) {
		fprintf(stderr, "moec export: warning: %s/optimizer.safetensors has spec_hash %s, %s/manifest.json %s; "
			"exporting anyway (--force)\n", ckpt_path(c), have ? have : "(none)", build, build_hash);
		return 0;
	}
	return export_error("%s/optimizer.safetensors has spec_hash %s, but %s/manifest.json has %s: the checkpoint was "
			    "trained from another spec than this build's, whose %s/config.json may describe another model. "
			    "Export it with the build that trained it (the checkpoint's own manifest.json names its spec), or "
			    "pass --force to skip this check",
			    ckpt_path(c), have ? have : "(none)", build, build_hash, build);
}

/* BUILD/config.json, with torch_dtype set to the exported dtype. *text is malloc'd. */
static int export_config(const char *build, bool bf16, char **text, size_t *len)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/config.json", build);
	int err = file_read_whole(path, text, len);
	if (err)
		return export_error("%s: %s: `moec build` writes it for Qwen3-MoE and Mixtral specs (and says why when a "
				    "spec gets none); rebuild %s with this moec", path, strerror(err), build);
	if (!bf16)
		return 0;
	/* hfconfig.c wrote this file: one "torch_dtype": "float32" pair. */
	static const char key[] = "\"torch_dtype\": \"float32\"";
	char *at = strstr(*text, key);
	if (!at) {
		free(*text);
		return export_error("%s has no %s; rebuild %s with this moec", path, key, build);
	}
	static const char repl[] = "\"torch_dtype\": \"bfloat16\"";
	size_t head = (size_t)(at - *text), tail = *len - head - (sizeof key - 1);
	char *t = malloc(head + sizeof repl + tail);
	if (!t) {
		free(*text);
		return export_error("out of memory");
	}
	memcpy(t, *text, head);
	memcpy(t + head, repl, sizeof repl - 1);
	memcpy(t + head + sizeof repl - 1, at + sizeof key - 1, tail + 1);
	free(*text);
	*text = t;
	*len = head + sizeof repl - 1 + tail;
	return 0;
}

/* ---- tensors ---- */

/* float32 -> bfloat16, round to nearest even; NaNs stay (quiet) NaNs of the same sign,
 * as torch's .to(torch.bfloat16) does. */
static float element_f32(const struct st_tensor *t, uint64_t i)
{
	const unsigned char *p = t->data;
	uint16_t h;
	float f;
	if (t->dtype == ST_F32) {
		memcpy(&f, p + 4 * i, 4);
		return f;
	}
	memcpy(&h, p + 2 * i, 2);
	return t->dtype == ST_BF16 ? hf_bf16_to_f32(h) : hf_f16_to_f32(h);
}

static bool is_float(enum st_dtype d)
{
	return d == ST_F32 || d == ST_BF16 || d == ST_F16;
}

/* The tensor as written: the checkpoint's bytes when already in the target dtype (or not a
 * float), else a converted copy in *owned. 0, or 1 when out of memory. */
static int export_convert(const struct st_tensor *t, bool bf16, struct st_write_tensor *w, void **owned)
{
	enum st_dtype want = bf16 ? ST_BF16 : ST_F32;
	*w = (struct st_write_tensor){t->name, t->dtype, t->ndim, t->shape, t->data};
	*owned = NULL;
	if (!is_float(t->dtype) || t->dtype == want)
		return 0;
	void *buf = malloc(t->numel ? t->numel * st_dtype_size(want) : 1);
	if (!buf)
		return 1;
	for (uint64_t i = 0; i < t->numel; i++) {
		float f = element_f32(t, i);
		if (bf16)
			((uint16_t *)buf)[i] = moert_f32_to_bf16(f);
		else
			((float *)buf)[i] = f;
	}
	w->dtype = want;
	w->data = buf;
	*owned = buf;
	return 0;
}

struct export_totals {
	size_t tensors;
	uint64_t params, bytes;
};

int export_parse_size(const char *text, unsigned long long *bytes)
{
	static const struct {
		const char *suffix;
		unsigned long long scale;
	} units[] = {{"", 1}, {"B", 1}, {"KB", 1000ull}, {"MB", 1000000ull}, {"GB", 1000000000ull},
		     {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}};
	char *end;
	errno = 0;
	double v = strtod(text, &end);
	if (errno || end == text || !(v > 0) || v > 1e15)
		return -1;
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
		if (!strcmp(end, units[i].suffix)) {
			*bytes = (unsigned long long)(v * (double)units[i].scale);
			return *bytes ? 0 : -1;
		}
	return -1;
}

/* Convert tensors [first, last) of the checkpoint's model file and write them to path. */
static int export_file(struct hf_model *m, size_t first, size_t last, bool bf16, const char *path,
		       struct export_totals *tot)
{
	size_t n = last - first;
	struct st_write_tensor *w = calloc(n ? n : 1, sizeof *w);
	void **owned = calloc(n ? n : 1, sizeof *owned);
	int rc = 1;
	if (!w || !owned) {
		export_error("out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const struct st_tensor *t = hf_find(m, hf_name_at(m, first + i), NULL);
		if (export_convert(t, bf16, &w[i], &owned[i])) {
			export_error("out of memory converting %s (%llu elements)", t->name, (unsigned long long)t->numel);
			goto out;
		}
		tot->params += t->numel;
		tot->bytes += t->numel * st_dtype_size(w[i].dtype);
	}
	tot->tensors += n;
	char err[1024];
	static const struct st_kv meta[] = {{"format", "pt"}};
	if (st_write(path, w, n, meta, 1, err, sizeof err)) {
		export_error("%s", err);
		goto out;
	}
	rc = 0;
out:
	for (size_t i = 0; owned && i < n; i++)
		free(owned[i]);
	free(owned);
	free(w);
	return rc;
}

struct export_entry {
	const char *name;
	int shard;
};

static int export_entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct export_entry *)a)->name, ((const struct export_entry *)b)->name);
}

/* model.safetensors.index.json as transformers writes it: total_size, weight_map by name. */
static int export_index(const char *out, struct export_entry *e, size_t n, int nshards, uint64_t total)
{
	char *text = NULL, path[PATH_MAX];
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return export_error("out of memory");
	qsort(e, n, sizeof *e, export_entry_cmp);
	fprintf(f, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n  \"weight_map\": {\n", (unsigned long long)total);
	for (size_t i = 0; i < n; i++) /* HF names are plain ASCII without quotes or backslashes */
		fprintf(f, "    \"%s\": \"model-%05d-of-%05d.safetensors\"%s\n", e[i].name, e[i].shard, nshards,
			i + 1 < n ? "," : "");
	fprintf(f, "  }\n}\n");
	fclose(f);
	snprintf(path, sizeof path, "%s/model.safetensors.index.json", out);
	int err = file_write_atomic(path, text, len, false);
	free(text);
	return err ? export_error("cannot write %s: %s", path, strerror(err)) : 0;
}

/* Where the weights go: model.safetensors, or shards of at most max_bytes and an index.
 * Tensors keep checkpoint order; a tensor larger than a shard gets a shard of its own. */
static int export_model(struct ckpt *c, const char *out, bool bf16, uint64_t max_bytes, struct export_totals *tot)
{
	struct hf_model *m = ckpt_model(c);
	size_t n = hf_count(m);
	char path[PATH_MAX];
	struct export_entry *e = calloc(n ? n : 1, sizeof *e);
	size_t *start = calloc(n + 2, sizeof *start);
	int nshards = 0, rc = 1;
	if (!e || !start) {
		export_error("out of memory");
		goto out;
	}
	uint64_t in_shard = 0, total = 0;
	for (size_t i = 0; i < n; i++) {
		const struct st_tensor *t = hf_find(m, hf_name_at(m, i), NULL);
		uint64_t b = t->numel * st_dtype_size(is_float(t->dtype) ? (bf16 ? ST_BF16 : ST_F32) : t->dtype);
		if (nshards == 0 || (in_shard > 0 && in_shard + b > max_bytes)) {
			start[nshards++] = i;
			in_shard = 0;
		}
		in_shard += b;
		total += b;
		e[i] = (struct export_entry){t->name, nshards};
	}
	start[nshards] = n;
	if (nshards <= 1) {
		/* a sharded export's files, which would otherwise linger beside the new file */
		glob_t g;
		snprintf(path, sizeof path, "%s/model-[0-9][0-9][0-9][0-9][0-9]-of-[0-9]*.safetensors", out);
		if (!glob(path, 0, NULL, &g)) {
			for (size_t i = 0; i < g.gl_pathc; i++)
				unlink(g.gl_pathv[i]);
			globfree(&g);
		}
		snprintf(path, sizeof path, "%s/model.safetensors.index.json", out);
		unlink(path);
		snprintf(path, sizeof path, "%s/model.safetensors", out);
		rc = export_file(m, 0, n, bf16, path, tot);
		goto out;
	}
	for (int k = 0; k < nshards; k++) {
		snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", out, k + 1, nshards);
		if (export_file(m, start[k], start[k + 1], bf16, path, tot))
			goto out;
	}
	if (export_index(out, e, n, nshards, total))
		goto out;
	snprintf(path, sizeof path, "%s/model.safetensors", out);
	unlink(path); /* transformers and hf.c would prefer a stale single file over the index */
	rc = 0;
out:
	free(e);
	free(start);
	return rc;
}

/* ---- the command ---- */

/* Writing into the checkpoint or the build would replace their own files. */
static int export_check_out(const char *out, const char *stepdir, const char *build)
{
	char ro[PATH_MAX], rs[PATH_MAX], rb[PATH_MAX];
	if (!realpath(out, ro))
		return export_error("%s: %s", out, strerror(errno));
	if (realpath(stepdir, rs) && !strcmp(ro, rs))
		return export_error("-o %s is the checkpoint directory itself; export into another directory", out);
	if (realpath(build, rb) && !strcmp(ro, rb))
		return export_error("-o %s is the build directory itself; export into another directory", out);
	return 0;
}

static int export_write(struct ckpt *c, const struct export_options *o, const char *config, size_t config_len)
{
	struct export_totals tot = {0};
	char path[PATH_MAX];
	int err = file_make_dirs(o->out);
	if (err)
		return export_error("cannot create %s: %s", o->out, strerror(err));
	uint64_t max_bytes = o->max_shard_bytes ? o->max_shard_bytes : 5000000000ull;
	if (export_check_out(o->out, ckpt_path(c), o->build) || export_model(c, o->out, o->bf16, max_bytes, &tot))
		return 1;
	snprintf(path, sizeof path, "%s/config.json", o->out);
	err = file_write_atomic(path, config, config_len, false);
	if (err)
		return export_error("cannot write %s: %s", path, strerror(err));
	const char *step = ckpt_state(c, "step");
	printf("%s: %zu tensors, %.2f M parameters, %.2f MB %s (config.json and the weights) from %s (step %s)\n",
	       o->out, tot.tensors, (double)tot.params / 1e6, (double)tot.bytes / 1e6, o->bf16 ? "bf16" : "fp32",
	       ckpt_path(c), step ? step : "?");
	return 0;
}

int export_run(const struct export_options *o)
{
	char stepdir[PATH_MAX], build_hash[17], err[1024];
	char *config = NULL;
	size_t config_len = 0;
	struct ckpt *c = NULL;
	if (export_build_hash(o->build, build_hash) || export_config(o->build, o->bf16, &config, &config_len))
		return 1;
	int rc = 1;
	if (export_find_ckpt(o->ckpt, stepdir, sizeof stepdir))
		goto out;
	if (ckpt_open(stepdir, &c, err, sizeof err)) {
		export_error("%s", err);
		goto out;
	}
	if (export_check_hash(c, o->build, build_hash, o->force))
		goto out;
	rc = export_write(c, o, config, config_len);
out:
	if (c)
		ckpt_close(c);
	free(config);
	return rc;
}
