/* safetensors.c - safetensors reader/writer and sharded index (see safetensors.h).
 *
 * The reader never dereferences a header-supplied offset before checking it against the
 * mapping; every size computation is overflow-checked, because the file is outside input.
 */
#define _GNU_SOURCE
#include "moert.h"
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The reference implementation's limit; a larger header is an attack or corruption. */
#define ST_MAX_HEADER 100000000ull

static const struct {
	const char *name;
	size_t size;
} dtypes[ST_DTYPE_COUNT] = {
	[ST_BOOL] = {"BOOL", 1},      [ST_U8] = {"U8", 1},     [ST_I8] = {"I8", 1},
	[ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1}, [ST_F8_E8M0] = {"F8_E8M0", 1},
	[ST_I16] = {"I16", 2},        [ST_U16] = {"U16", 2},   [ST_F16] = {"F16", 2},
	[ST_BF16] = {"BF16", 2},      [ST_I32] = {"I32", 4},   [ST_U32] = {"U32", 4},
	[ST_F32] = {"F32", 4},        [ST_I64] = {"I64", 8},   [ST_U64] = {"U64", 8},
	[ST_F64] = {"F64", 8},
};

const char *st_dtype_name(enum st_dtype d)
{
	return (unsigned)d < ST_DTYPE_COUNT ? dtypes[d].name : NULL;
}

size_t st_dtype_size(enum st_dtype d)
{
	return (unsigned)d < ST_DTYPE_COUNT ? dtypes[d].size : 0;
}

int st_dtype_parse(const char *name, enum st_dtype *out)
{
	for (int i = 0; i < ST_DTYPE_COUNT; i++)
		if (!strcmp(name, dtypes[i].name)) {
			*out = (enum st_dtype)i;
			return 0;
		}
	return -1;
}

/* ---- strict JSON subset ---- */

struct json {
	const char *p, *end, *start;
	const char *file; /* for messages */
	char *err;
	size_t errlen;
	int failed;
};

static void jerr(struct json *j, const char *what)
{
	if (j->failed)
		return;
	j->failed = 1;
	moert_seterr(j->err, j->errlen, "%s: header JSON at byte %zu: %s", j->file, (size_t)(j->p - j->start), what);
}

static void ws(struct json *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

/* Consume c after whitespace; 0 if it was there. */
static int eat(struct json *j, char c)
{
	ws(j);
	if (j->p < j->end && *j->p == c) {
		j->p++;
		return 0;
	}
	return -1;
}

static int expect(struct json *j, char c)
{
	if (eat(j, c)) {
		char msg[64];
		if (j->p >= j->end)
			snprintf(msg, sizeof msg, "expected '%c' but the header ends", c);
		else
			snprintf(msg, sizeof msg, "expected '%c'", c);
		jerr(j, msg);
		return -1;
	}
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int hex4(struct json *j, unsigned *out)
{
	if (j->end - j->p < 4) {
		jerr(j, "truncated \\u escape");
		return -1;
	}
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		int h = hexval(j->p[i]);
		if (h < 0) {
			jerr(j, "bad \\u escape");
			return -1;
		}
		v = v << 4 | (unsigned)h;
	}
	j->p += 4;
	*out = v;
	return 0;
}

/* Length of a valid UTF-8 sequence at s (at most n bytes), else 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len;
	unsigned min;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2, min = 0x80;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, min = 0x800;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, min = 0x10000;
	else
		return 0;
	if (n < len)
		return 0;
	unsigned v = c & (0x7f >> len);
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = v << 6 | (s[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	return len;
}

static size_t put_utf8(char *o, unsigned v)
{
	if (v < 0x80) {
		o[0] = (char)v;
		return 1;
	}
	if (v < 0x800) {
		o[0] = (char)(0xc0 | v >> 6);
		o[1] = (char)(0x80 | (v & 0x3f));
		return 2;
	}
	if (v < 0x10000) {
		o[0] = (char)(0xe0 | v >> 12);
		o[1] = (char)(0x80 | (v >> 6 & 0x3f));
		o[2] = (char)(0x80 | (v & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | v >> 18);
	o[1] = (char)(0x80 | (v >> 12 & 0x3f));
	o[2] = (char)(0x80 | (v >> 6 & 0x3f));
	o[3] = (char)(0x80 | (v & 0x3f));
	return 4;
}

/* A string, decoded into a fresh NUL-terminated buffer; NULL on error. NUL characters are
 * rejected because names and values become C strings. */
static char *jstring(struct json *j)
{
	if (expect(j, '"'))
		return NULL;
	const char *s = j->p;
	size_t raw = 0;
	while (s + raw < j->end && s[raw] != '"') {
		if (s[raw] == '\\')
			raw++;
		raw++;
	}
	if (s + raw >= j->end) {
		jerr(j, "unterminated string");
		return NULL;
	}
	/* Decoded text is never longer than its escaped form. */
	char *out = malloc(raw + 1), *o = out;
	if (!out) {
		jerr(j, "out of memory");
		return NULL;
	}
	while (*j->p != '"') {
		unsigned char c = (unsigned char)*j->p;
		if (c < 0x20) {
			jerr(j, "control character in string");
			goto fail;
		}
		if (c != '\\') {
			size_t n = utf8_len((const unsigned char *)j->p, (size_t)(j->end - j->p));
			if (!n) {
				jerr(j, "invalid UTF-8 in string");
				goto fail;
			}
			memcpy(o, j->p, n);
			o += n;
			j->p += n;
			continue;
		}
		j->p++;
		char e = *j->p++;
		unsigned v;
		switch (e) {
		case '"': *o++ = '"'; break;
		case '\\': *o++ = '\\'; break;
		case '/': *o++ = '/'; break;
		case 'b': *o++ = '\b'; break;
		case 'f': *o++ = '\f'; break;
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case 't': *o++ = '\t'; break;
		case 'u':
			if (hex4(j, &v))
				goto fail;
			if (v >= 0xd800 && v <= 0xdbff) {
				unsigned lo;
				if (j->end - j->p < 2 || j->p[0] != '\\' || j->p[1] != 'u') {
					jerr(j, "unpaired surrogate in \\u escape");
					goto fail;
				}
				j->p += 2;
				if (hex4(j, &lo))
					goto fail;
				if (lo < 0xdc00 || lo > 0xdfff) {
					jerr(j, "unpaired surrogate in \\u escape");
					goto fail;
				}
				v = 0x10000 + ((v - 0xd800) << 10) + (lo - 0xdc00);
			} else if (v >= 0xdc00 && v <= 0xdfff) {
				jerr(j, "unpaired surrogate in \\u escape");
				goto fail;
			} else if (v == 0) {
				jerr(j, "NUL character (\\u0000) in string");
				goto fail;
			}
			o += put_utf8(o, v);
			break;
		default:
			j->p--;
			jerr(j, "bad escape in string");
			goto fail;
		}
	}
	j->p++;
	*o = 0;
	return out;
fail:
	free(out);
	return NULL;
}

/* A non-negative integer without leading zeros that fits in 64 bits. */
static int juint(struct json *j, uint64_t *out)
{
	ws(j);
	if (j->p >= j->end || *j->p < '0' || *j->p > '9') {
		jerr(j, j->p < j->end && *j->p == '-' ? "negative number" : "expected a non-negative integer");
		return -1;
	}
	if (*j->p == '0' && j->p + 1 < j->end && j->p[1] >= '0' && j->p[1] <= '9') {
		jerr(j, "number with a leading zero");
		return -1;
	}
	uint64_t v = 0;
	while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
		unsigned d = (unsigned)(*j->p - '0');
		if (v > (UINT64_MAX - d) / 10) {
			jerr(j, "integer does not fit in 64 bits");
			return -1;
		}
		v = v * 10 + d;
		j->p++;
	}
	if (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E')) {
		jerr(j, "expected an integer, found a fraction or exponent");
		return -1;
	}
	*out = v;
	return 0;
}

/* After a member or element: 1 if another follows (',' eaten), 0 at close, -1 on error. */
static int jnext(struct json *j, char close)
{
	if (!eat(j, ','))
		return 1;
	if (!eat(j, close))
		return 0;
	char msg[48];
	snprintf(msg, sizeof msg, "expected ',' or '%c'", close);
	jerr(j, msg);
	return -1;
}

/* Open an object; 1 if it has members, 0 if empty. */
static int jobject(struct json *j)
{
	if (expect(j, '{'))
		return -1;
	return eat(j, '}') ? 1 : 0;
}

/* Parse [u64, ...] into v (at most max); *n the count. */
static int juint_array(struct json *j, uint64_t *v, int max, int *n, const char *toomany)
{
	*n = 0;
	if (expect(j, '['))
		return -1;
	if (!eat(j, ']'))
		return 0;
	for (;;) {
		if (*n == max) {
			jerr(j, toomany);
			return -1;
		}
		if (juint(j, &v[(*n)++]))
			return -1;
		int r = jnext(j, ']');
		if (r <= 0)
			return r;
	}
}

/* ---- string list helpers ---- */

/* qsort, but fine with an empty (possibly NULL) array, which qsort's contract is not. */
static void sort(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
	if (n > 1)
		qsort(base, n, size, cmp);
}

struct kv {
	char *key, *value;
};

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ---- reader ---- */

struct st_file {
	char *name;
	const unsigned char *base;
	size_t size;
	int mapped;
	struct st_tensor *t; /* data offset order */
	size_t n;
	struct st_tensor **by_name;
	struct kv *meta;
	size_t nmeta;
};

void st_close(struct st_file *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->n; i++)
		free((char *)f->t[i].name);
	for (size_t i = 0; i < f->nmeta; i++) {
		free(f->meta[i].key);
		free(f->meta[i].value);
	}
	free(f->t);
	free(f->by_name);
	free(f->meta);
	if (f->mapped && f->base)
		munmap((void *)f->base, f->size);
	free(f->name);
	free(f);
}

static int cmp_offset(const void *a, const void *b)
{
	const struct st_tensor *x = a, *y = b;
	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	if (x->nbytes != y->nbytes)
		return x->nbytes < y->nbytes ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int cmp_tensor_name(const void *a, const void *b)
{
	return strcmp((*(struct st_tensor *const *)a)->name, (*(struct st_tensor *const *)b)->name);
}

/* Render a shape as "[a, b]" for messages. */
static void shape_str(char *buf, size_t len, const uint64_t *shape, int ndim)
{
	size_t k = (size_t)snprintf(buf, len, "[");
	for (int i = 0; i < ndim && k < len; i++)
		k += (size_t)snprintf(buf + k, len - k, "%s%llu", i ? ", " : "", (unsigned long long)shape[i]);
	if (k < len)
		snprintf(buf + k, len - k, "]");
}

static int grow(void **p, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return 0;
	size_t c = *cap ? *cap * 2 : 16;
	void *q = realloc(*p, c * elem);
	if (!q)
		return -1;
	*p = q;
	*cap = c;
	return 0;
}

/* One tensor's object: {"dtype": .., "shape": [..], "data_offsets": [b, e]} in any order. */
static int parse_tensor(struct json *j, struct st_tensor *t, uint64_t begin_end[2])
{
	int have_dtype = 0, have_shape = 0, have_off = 0;
	char msg[512];
	int r = jobject(j);
	if (r < 0)
		return -1;
	while (r > 0) {
		char *key = jstring(j);
		if (!key)
			return -1;
		if (expect(j, ':')) {
			free(key);
			return -1;
		}
		if (!strcmp(key, "dtype")) {
			if (have_dtype++) {
				jerr(j, "duplicate key 'dtype'");
				goto bad;
			}
			char *d = jstring(j);
			if (!d)
				goto bad;
			if (st_dtype_parse(d, &t->dtype)) {
				j->failed = 1;
				snprintf(msg, sizeof msg, "%.100s", d);
				moert_seterr(j->err, j->errlen,
				       "%s: tensor '%s': unknown dtype \"%s\" (known: BOOL U8 I8 F8_E4M3 F8_E5M2 F8_E8M0 I16 U16 F16 BF16 I32 U32 F32 I64 U64 F64)",
				       j->file, t->name, msg);
				free(d);
				goto bad;
			}
			free(d);
		} else if (!strcmp(key, "shape")) {
			if (have_shape++) {
				jerr(j, "duplicate key 'shape'");
				goto bad;
			}
			snprintf(msg, sizeof msg, "tensor shape has more than %d dimensions", ST_MAX_DIMS);
			if (juint_array(j, t->shape, ST_MAX_DIMS, &t->ndim, msg))
				goto bad;
		} else if (!strcmp(key, "data_offsets")) {
			if (have_off++) {
				jerr(j, "duplicate key 'data_offsets'");
				goto bad;
			}
			uint64_t v[2];
			int n;
			if (juint_array(j, v, 2, &n, "data_offsets has more than 2 numbers"))
				goto bad;
			if (n != 2) {
				jerr(j, "data_offsets must be [begin, end]");
				goto bad;
			}
			begin_end[0] = v[0];
			begin_end[1] = v[1];
		} else {
			j->failed = 1;
			moert_seterr(j->err, j->errlen, "%s: tensor '%s': unknown key '%.100s' (expected dtype, shape, data_offsets)",
			       j->file, t->name, key);
			goto bad;
		}
		free(key);
		r = jnext(j, '}');
		continue;
	bad:
		free(key);
		return -1;
	}
	if (r < 0)
		return -1;
	if (!have_dtype || !have_shape || !have_off) {
		j->failed = 1;
		moert_seterr(j->err, j->errlen, "%s: tensor '%s': missing '%s'", j->file, t->name,
		       !have_dtype ? "dtype" : !have_shape ? "shape" : "data_offsets");
		return -1;
	}
	return 0;
}

static int parse_metadata(struct json *j, struct st_file *f)
{
	size_t cap = 0;
	int r = jobject(j);
	while (r > 0) {
		if (grow((void **)&f->meta, &cap, f->nmeta, sizeof *f->meta)) {
			jerr(j, "out of memory");
			return -1;
		}
		struct kv *m = &f->meta[f->nmeta];
		m->key = jstring(j);
		if (!m->key)
			return -1;
		m->value = NULL;
		f->nmeta++;
		if (expect(j, ':'))
			return -1;
		ws(j);
		if (j->p < j->end && *j->p != '"') {
			j->failed = 1;
			moert_seterr(j->err, j->errlen, "%s: __metadata__ value for '%s' is not a string (the format allows only strings)",
			       j->file, m->key);
			return -1;
		}
		m->value = jstring(j);
		if (!m->value)
			return -1;
		r = jnext(j, '}');
	}
	if (r < 0)
		return -1;
	/* Duplicate keys would make lookups ambiguous. */
	char **keys = malloc((f->nmeta ? f->nmeta : 1) * sizeof *keys);
	if (!keys) {
		jerr(j, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < f->nmeta; i++)
		keys[i] = f->meta[i].key;
	sort(keys, f->nmeta, sizeof *keys, cmp_str);
	for (size_t i = 1; i < f->nmeta; i++)
		if (!strcmp(keys[i - 1], keys[i])) {
			j->failed = 1;
			moert_seterr(j->err, j->errlen, "%s: __metadata__ key '%s' appears twice", j->file, keys[i]);
			free(keys);
			return -1;
		}
	free(keys);
	return 0;
}

int st_open_memory(const char *name, const void *buf, size_t size, struct st_file **out, char *err, size_t errlen)
{
	*out = NULL;
	struct st_file *f = calloc(1, sizeof *f);
	if (!f || !(f->name = strdup(name))) {
		free(f);
		moert_seterr(err, errlen, "%s: out of memory", name);
		return -1;
	}
	f->base = buf;
	f->size = size;
	const unsigned char *b = buf;
	if (size < 8) {
		moert_seterr(err, errlen, "%s: %zu bytes is too short for a safetensors file (8-byte header length missing); the file is truncated or not safetensors",
		       name, size);
		goto fail;
	}
	uint64_t hlen = 0;
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | b[i];
	if (hlen > size - 8) {
		moert_seterr(err, errlen, "%s: header length %llu runs past the end of the file (%zu bytes); the file is truncated or not safetensors",
		       name, (unsigned long long)hlen, size);
		goto fail;
	}
	if (hlen > ST_MAX_HEADER) {
		moert_seterr(err, errlen, "%s: header length %llu exceeds the format's limit of %llu bytes", name,
		       (unsigned long long)hlen, ST_MAX_HEADER);
		goto fail;
	}
	if (hlen < 2 || b[8] != '{') {
		moert_seterr(err, errlen, "%s: header does not start with '{'; not a safetensors file", name);
		goto fail;
	}
	const unsigned char *data = b + 8 + hlen;
	uint64_t dlen = size - 8 - hlen;
	struct json j = {.p = (const char *)b + 8, .end = (const char *)b + 8 + hlen, .file = name, .err = err, .errlen = errlen};
	j.start = j.p;
	size_t cap = 0;
	uint64_t (*offs)[2] = NULL;
	size_t ocap = 0;
	int have_meta = 0;
	int r = jobject(&j);
	while (r > 0) {
		char *key = jstring(&j);
		if (!key || expect(&j, ':')) {
			free(key);
			goto jfail;
		}
		if (!strcmp(key, "__metadata__")) {
			free(key);
			if (have_meta++) {
				jerr(&j, "duplicate key '__metadata__'");
				goto jfail;
			}
			if (parse_metadata(&j, f))
				goto jfail;
		} else {
			if (grow((void **)&f->t, &cap, f->n, sizeof *f->t) || grow((void **)&offs, &ocap, f->n, sizeof *offs)) {
				free(key);
				jerr(&j, "out of memory");
				goto jfail;
			}
			struct st_tensor *t = &f->t[f->n];
			memset(t, 0, sizeof *t);
			t->name = key;
			f->n++;
			if (parse_tensor(&j, t, offs[f->n - 1]))
				goto jfail;
		}
		r = jnext(&j, '}');
	}
	if (r < 0)
		goto jfail;
	/* The reference writer pads with spaces; anything else after the object is garbage. */
	ws(&j);
	if (j.p != j.end) {
		jerr(&j, "unexpected bytes after the header object");
		goto jfail;
	}
	/* Sizes, with overflow checks: a huge shape must not wrap into a small one. */
	for (size_t i = 0; i < f->n; i++) {
		struct st_tensor *t = &f->t[i];
		char shp[256];
		shape_str(shp, sizeof shp, t->shape, t->ndim);
		uint64_t numel = 1;
		int over = 0;
		for (int d = 0; d < t->ndim; d++) {
			if (t->shape[d] && numel > UINT64_MAX / t->shape[d])
				over = 1;
			else
				numel *= t->shape[d];
		}
		uint64_t es = st_dtype_size(t->dtype);
		if (over || numel > UINT64_MAX / es || numel * es > SIZE_MAX) {
			moert_seterr(err, errlen, "%s: tensor '%s': shape %s of %s overflows a 64-bit byte count; the file is corrupt",
			       name, t->name, shp, st_dtype_name(t->dtype));
			goto ofail;
		}
		uint64_t need = numel * es, begin = offs[i][0], end = offs[i][1];
		if (end < begin) {
			moert_seterr(err, errlen, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin; the file is corrupt",
			       name, t->name, (unsigned long long)begin, (unsigned long long)end);
			goto ofail;
		}
		if (end - begin != need) {
			moert_seterr(err, errlen,
			       "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but shape %s of %s needs %llu; the file is truncated or corrupt",
			       name, t->name, (unsigned long long)begin, (unsigned long long)end,
			       (unsigned long long)(end - begin), shp, st_dtype_name(t->dtype), (unsigned long long)need);
			goto ofail;
		}
		if (end > dlen) {
			moert_seterr(err, errlen,
			       "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the data section (%llu bytes); the file is truncated",
			       name, t->name, (unsigned long long)begin, (unsigned long long)end, (unsigned long long)dlen);
			goto ofail;
		}
		t->numel = numel;
		t->nbytes = need;
		t->offset = begin;
		t->data = data + begin;
	}
	free(offs);
	offs = NULL;
	/* Tensors must tile the data section, as the reference reader demands. */
	sort(f->t, f->n, sizeof *f->t, cmp_offset);
	uint64_t at = 0;
	for (size_t i = 0; i < f->n; i++) {
		struct st_tensor *t = &f->t[i];
		if (t->offset < at) {
			moert_seterr(err, errlen, "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' [%llu, %llu]; the file is corrupt",
			       name, t->name, (unsigned long long)t->offset, (unsigned long long)(t->offset + t->nbytes),
			       f->t[i - 1].name, (unsigned long long)f->t[i - 1].offset,
			       (unsigned long long)(f->t[i - 1].offset + f->t[i - 1].nbytes));
			goto fail;
		}
		if (t->offset > at) {
			moert_seterr(err, errlen, "%s: tensor '%s': data_offsets begin at %llu, leaving a gap after byte %llu of the data section; the file is corrupt",
			       name, t->name, (unsigned long long)t->offset, (unsigned long long)at);
			goto fail;
		}
		at = t->offset + t->nbytes;
	}
	if (at != dlen) {
		moert_seterr(err, errlen, "%s: the data section holds %llu bytes but the tensors cover %llu; the file is corrupt or has trailing data",
		       name, (unsigned long long)dlen, (unsigned long long)at);
		goto fail;
	}
	f->by_name = malloc((f->n ? f->n : 1) * sizeof *f->by_name);
	if (!f->by_name) {
		moert_seterr(err, errlen, "%s: out of memory", name);
		goto fail;
	}
	for (size_t i = 0; i < f->n; i++)
		f->by_name[i] = &f->t[i];
	sort(f->by_name, f->n, sizeof *f->by_name, cmp_tensor_name);
	for (size_t i = 1; i < f->n; i++)
		if (!strcmp(f->by_name[i - 1]->name, f->by_name[i]->name)) {
			moert_seterr(err, errlen, "%s: tensor '%s' appears twice in the header; the file is corrupt", name,
			       f->by_name[i]->name);
			goto fail;
		}
	*out = f;
	return 0;
jfail:
	if (!j.failed)
		jerr(&j, "malformed JSON");
ofail:
	free(offs);
fail:
	f->mapped = 0; /* the caller owns buf; st_open unmaps on failure itself */
	st_close(f);
	return -1;
}

int st_open(const char *path, struct st_file **out, char *err, size_t errlen)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		moert_seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	struct stat sb;
	if (fstat(fd, &sb)) {
		moert_seterr(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (!S_ISREG(sb.st_mode)) {
		moert_seterr(err, errlen, "%s: not a regular file", path);
		close(fd);
		return -1;
	}
	size_t size = (size_t)sb.st_size;
	void *m = NULL;
	if (size) {
		m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (m == MAP_FAILED) {
			moert_seterr(err, errlen, "%s: cannot mmap %zu bytes: %s", path, size, strerror(errno));
			close(fd);
			return -1;
		}
	}
	close(fd);
	/* Empty file: any non-NULL pointer will do, st_open_memory rejects it by size. */
	static const unsigned char empty[1];
	if (st_open_memory(path, m ? m : empty, size, out, err, errlen)) {
		if (m)
			munmap(m, size);
		return -1;
	}
	(*out)->mapped = m != NULL;
	return 0;
}

const struct st_tensor *st_find(const struct st_file *f, const char *name)
{
	size_t lo = 0, hi = f->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(name, f->by_name[mid]->name);
		if (!c)
			return f->by_name[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

size_t st_count(const struct st_file *f)
{
	return f->n;
}

const struct st_tensor *st_tensor_at(const struct st_file *f, size_t i)
{
	return i < f->n ? &f->t[i] : NULL;
}

const char *st_metadata(const struct st_file *f, const char *key)
{
	for (size_t i = 0; i < f->nmeta; i++)
		if (!strcmp(f->meta[i].key, key))
			return f->meta[i].value;
	return NULL;
}

size_t st_metadata_count(const struct st_file *f)
{
	return f->nmeta;
}

void st_metadata_at(const struct st_file *f, size_t i, const char **key, const char **value)
{
	*key = i < f->nmeta ? f->meta[i].key : NULL;
	*value = i < f->nmeta ? f->meta[i].value : NULL;
}

/* ---- writer ---- */

struct buf {
	char *p;
	size_t n, cap;
	int oom;
};

static void bput(struct buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->n + n + 1 > b->cap) {
		size_t c = b->cap ? b->cap : 256;
		while (c < b->n + n + 1)
			c *= 2;
		char *q = realloc(b->p, c);
		if (!q) {
			b->oom = 1;
			return;
		}
		b->p = q;
		b->cap = c;
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = 0;
}

static void bputs(struct buf *b, const char *s)
{
	bput(b, s, strlen(s));
}

static void bstr(struct buf *b, const char *s)
{
	bputs(b, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char e[8];
		if (c == '"' || c == '\\') {
			e[0] = '\\';
			e[1] = (char)c;
			bput(b, e, 2);
		} else if (c < 0x20) {
			snprintf(e, sizeof e, "\\u%04x", c);
			bputs(b, e);
		} else {
			bput(b, (const char *)&c, 1);
		}
	}
	bputs(b, "\"");
}

struct wt {
	const struct st_write_tensor *t;
	uint64_t nbytes;
};

static int cmp_write(const void *a, const void *b)
{
	const struct wt *x = a, *y = b;
	size_t sx = st_dtype_size(x->t->dtype), sy = st_dtype_size(y->t->dtype);
	if (sx != sy)
		return sx > sy ? -1 : 1;
	return strcmp(x->t->name, y->t->name);
}

static int valid_utf8(const char *s)
{
	size_t n = strlen(s);
	for (size_t i = 0; i < n;) {
		size_t k = utf8_len((const unsigned char *)s + i, n - i);
		if (!k)
			return 0;
		i += k;
	}
	return 1;
}

int st_write(const char *path, const struct st_write_tensor *tensors, size_t n, const struct st_kv *meta, size_t nmeta,
             char *err, size_t errlen)
{
	struct wt *w = calloc(n ? n : 1, sizeof *w);
	struct buf h = {0};
	char *tmp = NULL;
	int fd = -1, rc = -1;
	if (!w) {
		moert_seterr(err, errlen, "%s: out of memory", path);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		const struct st_write_tensor *t = &tensors[i];
		if (!t->name || !*t->name || !strcmp(t->name, "__metadata__") || !valid_utf8(t->name)) {
			moert_seterr(err, errlen, "%s: tensor %zu: name must be non-empty UTF-8 and not '__metadata__'", path, i);
			goto out;
		}
		if (!st_dtype_name(t->dtype) || t->ndim < 0 || t->ndim > ST_MAX_DIMS || (t->ndim && !t->shape)) {
			moert_seterr(err, errlen, "%s: tensor '%s': bad dtype or more than %d dimensions", path, t->name, ST_MAX_DIMS);
			goto out;
		}
		uint64_t numel = 1;
		for (int d = 0; d < t->ndim; d++) {
			if (t->shape[d] && numel > UINT64_MAX / t->shape[d]) {
				moert_seterr(err, errlen, "%s: tensor '%s': shape overflows 64 bits", path, t->name);
				goto out;
			}
			numel *= t->shape[d];
		}
		if (numel > SIZE_MAX / st_dtype_size(t->dtype)) {
			moert_seterr(err, errlen, "%s: tensor '%s': byte count overflows", path, t->name);
			goto out;
		}
		w[i].t = t;
		w[i].nbytes = numel * st_dtype_size(t->dtype);
		if (w[i].nbytes && !t->data) {
			moert_seterr(err, errlen, "%s: tensor '%s': no data", path, t->name);
			goto out;
		}
	}
	sort(w, n, sizeof *w, cmp_write);
	for (size_t i = 1; i < n; i++)
		if (!strcmp(w[i - 1].t->name, w[i].t->name)) {
			moert_seterr(err, errlen, "%s: tensor '%s' given twice", path, w[i].t->name);
			goto out;
		}
	for (size_t i = 0; i < nmeta; i++)
		if (!meta[i].key || !meta[i].value || !valid_utf8(meta[i].key) || !valid_utf8(meta[i].value)) {
			moert_seterr(err, errlen, "%s: metadata entry %zu: key and value must be UTF-8 strings", path, i);
			goto out;
		}
	bputs(&h, "{");
	if (nmeta) {
		bputs(&h, "\"__metadata__\":{");
		for (size_t i = 0; i < nmeta; i++) {
			if (i)
				bputs(&h, ",");
			bstr(&h, meta[i].key);
			bputs(&h, ":");
			bstr(&h, meta[i].value);
		}
		bputs(&h, "}");
	}
	uint64_t at = 0;
	for (size_t i = 0; i < n; i++) {
		const struct st_write_tensor *t = w[i].t;
		char num[96];
		if (nmeta || i)
			bputs(&h, ",");
		bstr(&h, t->name);
		bputs(&h, ":{\"dtype\":\"");
		bputs(&h, st_dtype_name(t->dtype));
		bputs(&h, "\",\"shape\":[");
		for (int d = 0; d < t->ndim; d++) {
			snprintf(num, sizeof num, "%s%llu", d ? "," : "", (unsigned long long)t->shape[d]);
			bputs(&h, num);
		}
		snprintf(num, sizeof num, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)at,
		         (unsigned long long)(at + w[i].nbytes));
		bputs(&h, num);
		at += w[i].nbytes;
	}
	bputs(&h, "}");
	/* Pad to 8 so the data section, and with the ordering every tensor, is aligned. */
	while (h.n % 8)
		bputs(&h, " ");
	if (h.oom) {
		moert_seterr(err, errlen, "%s: out of memory", path);
		goto out;
	}
	size_t plen = strlen(path);
	tmp = malloc(plen + 32);
	if (!tmp) {
		moert_seterr(err, errlen, "%s: out of memory", path);
		goto out;
	}
	snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		moert_seterr(err, errlen, "%s: cannot create %s: %s", path, tmp, strerror(errno));
		goto out;
	}
	unsigned char len8[8];
	for (int i = 0; i < 8; i++)
		len8[i] = (unsigned char)((uint64_t)h.n >> (8 * i));
	int bad = moert_write_all(fd, len8, 8) || moert_write_all(fd, h.p, h.n);
	for (size_t i = 0; i < n && !bad; i++)
		bad = moert_write_all(fd, w[i].t->data, w[i].nbytes);
	if (bad || fsync(fd)) {
		moert_seterr(err, errlen, "%s: cannot write %s: %s", path, tmp, strerror(errno));
		goto out;
	}
	if (close(fd)) {
		fd = -1;
		moert_seterr(err, errlen, "%s: cannot close %s: %s", path, tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, path)) {
		moert_seterr(err, errlen, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
		goto out;
	}
	free(tmp);
	tmp = NULL;
	/* The rename is durable only once the directory entry is. */
	{
		char *dir = strdup(path);
		if (!dir) {
			moert_seterr(err, errlen, "%s: out of memory", path);
			goto out;
		}
		char *slash = strrchr(dir, '/');
		const char *d = slash ? (slash == dir ? "/" : (*slash = 0, dir)) : ".";
		int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		int e = dfd < 0 || fsync(dfd);
		if (e)
			moert_seterr(err, errlen, "%s: cannot fsync directory %s: %s", path, d, strerror(errno));
		if (dfd >= 0)
			close(dfd);
		free(dir);
		if (e)
			goto out;
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (tmp) {
		unlink(tmp);
		free(tmp);
	}
	free(h.p);
	free(w);
	return rc;
}

/* ---- sharded index ---- */

struct st_index {
	char *name, *dir;
	struct kv *map; /* name -> file, index order */
	size_t n;
	struct kv **by_name;
	struct kv *meta;
	size_t nmeta;
	struct kv *shards; /* distinct file names, key = file; value unused */
	struct st_file **open;
	size_t nshards;
};

void st_index_close(struct st_index *x)
{
	if (!x)
		return;
	for (size_t i = 0; i < x->n; i++) {
		free(x->map[i].key);
		free(x->map[i].value);
	}
	for (size_t i = 0; i < x->nmeta; i++) {
		free(x->meta[i].key);
		free(x->meta[i].value);
	}
	for (size_t i = 0; i < x->nshards; i++)
		st_close(x->open[i]);
	free(x->map);
	free(x->by_name);
	free(x->meta);
	free(x->shards);
	free(x->open);
	free(x->name);
	free(x->dir);
	free(x);
}

static int cmp_kv_key(const void *a, const void *b)
{
	return strcmp((*(struct kv *const *)a)->key, (*(struct kv *const *)b)->key);
}

static int cmp_kv_value(const void *a, const void *b)
{
	return strcmp((*(struct kv *const *)a)->value, (*(struct kv *const *)b)->value);
}

/* A shard name may name a file under the index's directory and nothing else. */
static int bad_shard_name(const char *s)
{
	if (!*s || *s == '/')
		return 1;
	for (const char *p = s; *p;) {
		const char *e = strchr(p, '/');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if ((len == 2 && p[0] == '.' && p[1] == '.') || len == 0)
			return 1;
		p += len + (e ? 1 : 0);
		if (e && !*p)
			return 1;
	}
	return 0;
}

int st_index_open_memory(const char *name, const char *dir, const void *buf, size_t size, struct st_index **out,
                         char *err, size_t errlen)
{
	*out = NULL;
	if (err && errlen)
		*err = 0;
	struct st_index *x = calloc(1, sizeof *x);
	if (!x || !(x->name = strdup(name)) || !(x->dir = strdup(dir))) {
		st_index_close(x);
		moert_seterr(err, errlen, "%s: out of memory", name);
		return -1;
	}
	struct json j = {.p = buf, .end = (const char *)buf + size, .start = buf, .file = name, .err = err, .errlen = errlen};
	size_t mcap = 0, kcap = 0;
	int have_meta = 0, have_map = 0;
	int r = jobject(&j);
	while (r > 0) {
		char *key = jstring(&j);
		if (!key || expect(&j, ':')) {
			free(key);
			goto fail;
		}
		if (!strcmp(key, "metadata")) {
			free(key);
			if (have_meta++) {
				jerr(&j, "duplicate key 'metadata'");
				goto fail;
			}
			int q = jobject(&j);
			while (q > 0) {
				if (grow((void **)&x->meta, &kcap, x->nmeta, sizeof *x->meta)) {
					jerr(&j, "out of memory");
					goto fail;
				}
				struct kv *m = &x->meta[x->nmeta];
				m->value = NULL;
				if (!(m->key = jstring(&j)))
					goto fail;
				x->nmeta++;
				if (expect(&j, ':'))
					goto fail;
				ws(&j);
				if (j.p < j.end && *j.p == '"') {
					if (!(m->value = jstring(&j)))
						goto fail;
				} else {
					/* HF writes {"total_size": N}: keep integers as their text. */
					uint64_t v;
					if (juint(&j, &v))
						goto fail;
					char num[24];
					snprintf(num, sizeof num, "%llu", (unsigned long long)v);
					if (!(m->value = strdup(num))) {
						jerr(&j, "out of memory");
						goto fail;
					}
				}
				q = jnext(&j, '}');
			}
			if (q < 0)
				goto fail;
		} else if (!strcmp(key, "weight_map")) {
			free(key);
			if (have_map++) {
				jerr(&j, "duplicate key 'weight_map'");
				goto fail;
			}
			int q = jobject(&j);
			while (q > 0) {
				if (grow((void **)&x->map, &mcap, x->n, sizeof *x->map)) {
					jerr(&j, "out of memory");
					goto fail;
				}
				struct kv *m = &x->map[x->n];
				m->value = NULL;
				if (!(m->key = jstring(&j)))
					goto fail;
				x->n++;
				if (expect(&j, ':'))
					goto fail;
				ws(&j);
				if (j.p < j.end && *j.p != '"') {
					j.failed = 1;
					moert_seterr(err, errlen, "%s: weight_map entry for tensor '%s' is not a file name string", name, m->key);
					goto fail;
				}
				if (!(m->value = jstring(&j)))
					goto fail;
				if (bad_shard_name(m->value)) {
					j.failed = 1;
					moert_seterr(err, errlen,
					       "%s: tensor '%s': shard '%s' is not a file name under the index's directory (empty, absolute or '..')",
					       name, m->key, m->value);
					goto fail;
				}
				q = jnext(&j, '}');
			}
			if (q < 0)
				goto fail;
		} else {
			j.failed = 1;
			moert_seterr(err, errlen, "%s: unknown top-level key '%.100s' (expected metadata, weight_map)", name, key);
			free(key);
			goto fail;
		}
		r = jnext(&j, '}');
	}
	if (r < 0)
		goto fail;
	ws(&j);
	if (j.p != j.end) {
		jerr(&j, "unexpected bytes after the top-level object");
		goto fail;
	}
	if (!have_map) {
		moert_seterr(err, errlen, "%s: no weight_map; not a safetensors index", name);
		goto fail;
	}
	x->by_name = malloc((x->n ? x->n : 1) * sizeof *x->by_name);
	struct kv **files = malloc((x->n ? x->n : 1) * sizeof *files);
	if (!x->by_name || !files) {
		free(files);
		moert_seterr(err, errlen, "%s: out of memory", name);
		goto fail;
	}
	for (size_t i = 0; i < x->n; i++)
		x->by_name[i] = files[i] = &x->map[i];
	sort(x->by_name, x->n, sizeof *x->by_name, cmp_kv_key);
	for (size_t i = 1; i < x->n; i++)
		if (!strcmp(x->by_name[i - 1]->key, x->by_name[i]->key)) {
			moert_seterr(err, errlen, "%s: tensor '%s' appears twice in weight_map", name, x->by_name[i]->key);
			free(files);
			goto fail;
		}
	for (size_t i = 0; i < x->nmeta; i++)
		for (size_t k = 0; k < i; k++)
			if (!strcmp(x->meta[i].key, x->meta[k].key)) {
				moert_seterr(err, errlen, "%s: metadata key '%s' appears twice", name, x->meta[i].key);
				free(files);
				goto fail;
			}
	/* Distinct shard files, so each is opened once. */
	sort(files, x->n, sizeof *files, cmp_kv_value);
	x->shards = calloc(x->n ? x->n : 1, sizeof *x->shards);
	x->open = calloc(x->n ? x->n : 1, sizeof *x->open);
	if (!x->shards || !x->open) {
		free(files);
		moert_seterr(err, errlen, "%s: out of memory", name);
		goto fail;
	}
	for (size_t i = 0; i < x->n; i++)
		if (!i || strcmp(files[i - 1]->value, files[i]->value))
			x->shards[x->nshards++].key = files[i]->value;
	free(files);
	*out = x;
	return 0;
fail:
	if (!j.failed && !(err && errlen && *err))
		jerr(&j, "malformed JSON");
	x->nshards = 0; /* nothing opened yet */
	st_index_close(x);
	return -1;
}

int st_index_open(const char *path, struct st_index **out, char *err, size_t errlen)
{
	*out = NULL;
	if (err && errlen)
		*err = 0;
	FILE *fp = fopen(path, "rb");
	if (!fp) {
		moert_seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	struct buf b = {0};
	char chunk[65536];
	size_t k;
	while ((k = fread(chunk, 1, sizeof chunk, fp)) > 0) {
		bput(&b, chunk, k);
		/* An index is a name list; one past the header limit is not an index. */
		if (b.n > ST_MAX_HEADER) {
			fclose(fp);
			free(b.p);
			moert_seterr(err, errlen, "%s: larger than %llu bytes; not a safetensors index", path, ST_MAX_HEADER);
			return -1;
		}
	}
	int rerr = ferror(fp);
	fclose(fp);
	if (rerr || b.oom) {
		free(b.p);
		moert_seterr(err, errlen, "%s: cannot read%s", path, b.oom ? ": out of memory" : "");
		return -1;
	}
	char *dir = strdup(path);
	if (!dir) {
		free(b.p);
		moert_seterr(err, errlen, "%s: out of memory", path);
		return -1;
	}
	char *slash = strrchr(dir, '/');
	const char *d = slash ? (slash == dir ? "/" : (*slash = 0, dir)) : ".";
	int rc = st_index_open_memory(path, d, b.p ? b.p : "", b.n, out, err, errlen);
	free(dir);
	free(b.p);
	return rc;
}

static struct kv *index_lookup(const struct st_index *x, const char *name)
{
	size_t lo = 0, hi = x->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(name, x->by_name[mid]->key);
		if (!c)
			return x->by_name[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

const char *st_index_shard(const struct st_index *x, const char *name)
{
	struct kv *m = index_lookup(x, name);
	return m ? m->value : NULL;
}

size_t st_index_count(const struct st_index *x)
{
	return x->n;
}

void st_index_at(const struct st_index *x, size_t i, const char **name, const char **file)
{
	*name = i < x->n ? x->map[i].key : NULL;
	*file = i < x->n ? x->map[i].value : NULL;
}

const char *st_index_metadata(const struct st_index *x, const char *key)
{
	for (size_t i = 0; i < x->nmeta; i++)
		if (!strcmp(x->meta[i].key, key))
			return x->meta[i].value;
	return NULL;
}

const struct st_tensor *st_index_find(struct st_index *x, const char *name, char *err, size_t errlen)
{
	struct kv *m = index_lookup(x, name);
	if (!m) {
		moert_seterr(err, errlen, "%s: no tensor '%s' in weight_map", x->name, name);
		return NULL;
	}
	size_t s = 0;
	while (s < x->nshards && strcmp(x->shards[s].key, m->value))
		s++;
	if (s == x->nshards) {
		moert_seterr(err, errlen, "%s: internal error: shard '%s' not listed", x->name, m->value);
		return NULL;
	}
	if (!x->open[s]) {
		size_t len = strlen(x->dir) + strlen(m->value) + 2;
		char *path = malloc(len);
		if (!path) {
			moert_seterr(err, errlen, "%s: out of memory", x->name);
			return NULL;
		}
		snprintf(path, len, "%s/%s", x->dir, m->value);
		int rc = st_open(path, &x->open[s], err, errlen);
		free(path);
		if (rc)
			return NULL;
	}
	const struct st_tensor *t = st_find(x->open[s], name);
	if (!t)
		moert_seterr(err, errlen, "%s: weight_map puts tensor '%s' in '%s' but that file has no such tensor; the checkpoint is inconsistent",
		       x->name, name, m->value);
	return t;
}
