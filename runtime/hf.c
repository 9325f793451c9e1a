/* hf.c - Hugging Face model weights by name, as float32 (see hf.h).
 *
 * Everything under the tensors (offsets, sizes, tiling) is checked by safetensors.c; this
 * file adds the model's view: where a name lives, whether its shape is the one the model
 * needs, and the dtype conversion. Tensor data may sit at any byte offset in a file from
 * elsewhere, so elements are loaded with memcpy, never through a cast pointer.
 */
#define _GNU_SOURCE
#include "hf.h"
#include "moert.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct hf_model {
	char *path;               /* as given to hf_open */
	struct st_file *file;     /* a single file, or NULL */
	char *file_path;
	struct st_index *idx;     /* a sharded model, or NULL */
	char **shard_names;       /* distinct shard names as the index writes them */
	char **shard_paths;       /* and their paths, for messages */
	size_t nshards;
};

/* "a/b" from a and b; NULL when out of memory. */
static char *join(const char *a, const char *b)
{
	size_t n = strlen(a) + strlen(b) + 2;
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%s/%s", a, b);
	return p;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && !strcmp(s + n - k, suffix);
}

static int is_file(const char *path)
{
	struct stat sb;
	return !stat(path, &sb) && S_ISREG(sb.st_mode);
}

void hf_close(struct hf_model *m)
{
	if (!m)
		return;
	st_close(m->file);
	st_index_close(m->idx);
	for (size_t i = 0; i < m->nshards; i++) {
		free(m->shard_names[i]);
		free(m->shard_paths[i]);
	}
	free(m->shard_names);
	free(m->shard_paths);
	free(m->file_path);
	free(m->path);
	free(m);
}

/* Remember shard name (once) and its path under dir. */
static int add_shard(struct hf_model *m, const char *dir, const char *name)
{
	for (size_t i = 0; i < m->nshards; i++)
		if (!strcmp(m->shard_names[i], name))
			return 0;
	char **n = realloc(m->shard_names, (m->nshards + 1) * sizeof *n);
	if (!n)
		return -1;
	m->shard_names = n;
	char **p = realloc(m->shard_paths, (m->nshards + 1) * sizeof *p);
	if (!p)
		return -1;
	m->shard_paths = p;
	n[m->nshards] = strdup(name);
	p[m->nshards] = join(dir, name);
	if (!n[m->nshards] || !p[m->nshards]) {
		free(n[m->nshards]);
		free(p[m->nshards]);
		return -1;
	}
	m->nshards++;
	return 0;
}

/* Open the index and resolve every entry now: that opens and validates each shard once
 * and proves the weight map true, so later reads cannot fail on a bad shard. */
static int open_index(struct hf_model *m, const char *path, char *err, size_t errlen)
{
	if (st_index_open(path, &m->idx, err, errlen))
		return -1;
	char *dir = strdup(path);
	if (!dir) {
		moert_seterr(err, errlen, "%s: out of memory", path);
		return -1;
	}
	char *slash = strrchr(dir, '/');
	const char *d = slash ? (slash == dir ? "/" : (*slash = 0, dir)) : ".";
	int rc = 0;
	for (size_t i = 0; i < st_index_count(m->idx) && !rc; i++) {
		const char *name, *file;
		st_index_at(m->idx, i, &name, &file);
		if (!st_index_find(m->idx, name, err, errlen)) {
			moert_adderr(err, errlen, " (checking the shards of %s: re-download the model, or fix its index)", path);
			rc = -1;
		}
		else if (add_shard(m, d, file)) {
			moert_seterr(err, errlen, "%s: out of memory", path);
			rc = -1;
		}
	}
	free(dir);
	return rc;
}

static int open_file(struct hf_model *m, const char *path, char *err, size_t errlen)
{
	if (!(m->file_path = strdup(path))) {
		moert_seterr(err, errlen, "%s: out of memory", path);
		return -1;
	}
	return st_open(path, &m->file, err, errlen);
}

/* A directory: the single file first, as transformers looks for it first. */
static int open_dir(struct hf_model *m, const char *dir, char *err, size_t errlen)
{
	char *single = join(dir, "model.safetensors"), *index = join(dir, "model.safetensors.index.json");
	int rc = -1;
	if (!single || !index)
		moert_seterr(err, errlen, "%s: out of memory", dir);
	else if (is_file(single))
		rc = open_file(m, single, err, errlen);
	else if (is_file(index))
		rc = open_index(m, index, err, errlen);
	else
		moert_seterr(err, errlen,
		       "%s: no model.safetensors or model.safetensors.index.json; not a Hugging Face model directory (download the safetensors weights, or give the .safetensors file itself)",
		       dir);
	free(single);
	free(index);
	return rc;
}

int hf_open(const char *path, struct hf_model **out, char *err, size_t errlen)
{
	*out = NULL;
	if (err && errlen)
		*err = 0;
	struct stat sb;
	if (stat(path, &sb)) {
		moert_seterr(err, errlen, "%s: cannot open: %s (give a model directory, a .safetensors file or a model.safetensors.index.json)",
		       path, strerror(errno));
		return -1;
	}
	struct hf_model *m = calloc(1, sizeof *m);
	if (!m || !(m->path = strdup(path))) {
		free(m);
		moert_seterr(err, errlen, "%s: out of memory", path);
		return -1;
	}
	int rc;
	if (S_ISDIR(sb.st_mode))
		rc = open_dir(m, path, err, errlen);
	else if (ends_with(path, ".json"))
		rc = open_index(m, path, err, errlen);
	else
		rc = open_file(m, path, err, errlen);
	if (rc) {
		hf_close(m);
		return -1;
	}
	*out = m;
	return 0;
}

const char *hf_path(const struct hf_model *m)
{
	return m->path;
}

const struct st_tensor *hf_find(struct hf_model *m, const char *name, const char **file)
{
	if (m->file) {
		if (file)
			*file = m->file_path;
		return st_find(m->file, name);
	}
	const char *shard = st_index_shard(m->idx, name);
	if (!shard)
		return NULL;
	for (size_t i = 0; i < m->nshards; i++)
		if (!strcmp(m->shard_names[i], shard)) {
			if (file)
				*file = m->shard_paths[i];
			break;
		}
	/* Every entry was resolved in hf_open, so this is a cache hit that cannot fail. */
	return st_index_find(m->idx, name, NULL, 0);
}

int hf_has(struct hf_model *m, const char *name)
{
	return hf_find(m, name, NULL) != NULL;
}

size_t hf_count(const struct hf_model *m)
{
	return m->file ? st_count(m->file) : st_index_count(m->idx);
}

const char *hf_name_at(const struct hf_model *m, size_t i)
{
	if (i >= hf_count(m))
		return NULL;
	if (m->file)
		return st_tensor_at(m->file, i)->name;
	const char *name, *file;
	st_index_at(m->idx, i, &name, &file);
	return name;
}

float hf_bf16_to_f32(uint16_t b)
{
	uint32_t bits = (uint32_t)b << 16;
	float f;
	memcpy(&f, &bits, sizeof f);
	return f;
}

float hf_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = h >> 10 & 0x1f, man = h & 0x3ff, bits;
	if (exp == 0x1f) {
		bits = sign | 0x7f800000 | man << 13; /* inf, or NaN keeping its payload */
	} else if (exp) {
		bits = sign | (exp + 127 - 15) << 23 | man << 13;
	} else if (!man) {
		bits = sign;
	} else {
		/* Subnormal: every one is a normal float32; shift the leading 1 into the implicit bit. */
		uint32_t e = 127 - 15 + 1;
		while (!(man & 0x400)) {
			man <<= 1;
			e--;
		}
		bits = sign | e << 23 | (man & 0x3ff) << 13;
	}
	float f;
	memcpy(&f, &bits, sizeof f);
	return f;
}

/* Render a shape as "[a, b]". */
static void shape_str(char *buf, size_t len, const uint64_t *shape, int ndim)
{
	size_t k = (size_t)snprintf(buf, len, "[");
	for (int i = 0; i < ndim && k < len; i++)
		k += (size_t)snprintf(buf + k, len - k, "%s%llu", i ? ", " : "", (unsigned long long)shape[i]);
	if (k < len)
		snprintf(buf + k, len - k, "]");
}

static int same_shape(const struct st_tensor *t, int ndim, const uint64_t *shape)
{
	if (t->ndim != ndim)
		return 0;
	for (int d = 0; d < ndim; d++)
		if (t->shape[d] != shape[d])
			return 0;
	return 1;
}

int hf_tensor_f32(const char *file, const struct st_tensor *t, int ndim, const uint64_t *shape, float *dst, char *err,
                  size_t errlen)
{
	if (ndim < 0 || ndim > ST_MAX_DIMS || (ndim && !shape)) {
		moert_seterr(err, errlen, "%s: tensor %s: the caller asked for %d dimensions (at most %d); this is a bug in the trainer",
		       file, t->name, ndim, ST_MAX_DIMS);
		return -1;
	}
	if (!same_shape(t, ndim, shape)) {
		char have[256], want[256];
		shape_str(have, sizeof have, t->shape, t->ndim);
		shape_str(want, sizeof want, shape, ndim);
		moert_seterr(err, errlen,
		       "%s: tensor %s has shape %s, this model needs %s (the checkpoint is for another model configuration; compare the spec with the checkpoint's config.json)",
		       file, t->name, have, want);
		return -1;
	}
	if (t->numel && !dst) {
		moert_seterr(err, errlen, "%s: tensor %s: no destination buffer; this is a bug in the trainer", file, t->name);
		return -1;
	}
	const unsigned char *p = t->data;
	switch (t->dtype) {
	case ST_F32:
		if (t->nbytes)
			memcpy(dst, p, t->nbytes);
		return 0;
	case ST_BF16:
	case ST_F16:
		for (uint64_t i = 0; i < t->numel; i++) {
			uint16_t v;
			memcpy(&v, p + 2 * i, 2);
			dst[i] = t->dtype == ST_BF16 ? hf_bf16_to_f32(v) : hf_f16_to_f32(v);
		}
		return 0;
	default:
		moert_seterr(err, errlen, "%s: tensor %s has dtype %s; only F32, BF16 and F16 weights can be read (convert the checkpoint to one of them)",
		       file, t->name, st_dtype_name(t->dtype));
		return -1;
	}
}

int hf_read_f32(struct hf_model *m, const char *name, int ndim, const uint64_t *shape, float *dst, char *err,
                size_t errlen)
{
	const char *file = m->path;
	const struct st_tensor *t = hf_find(m, name, &file);
	if (!t) {
		moert_seterr(err, errlen,
		       "%s: no tensor %s (the checkpoint does not match this model; compare the spec's model with the checkpoint's config.json, or check the tensor names the trainer expects)",
		       m->path, name);
		return -1;
	}
	return hf_tensor_f32(file, t, ndim, shape, dst, err, errlen);
}
