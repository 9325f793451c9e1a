/* test_safetensors.c - runtime/safetensors: write/read round trips, a file written by HF's
 * own `safetensors` package (tests/fixtures/safetensors/make.py), sharded indexes, and every
 * class of corrupt header rejected with a message naming the file, the tensor and the fault. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "safetensors.h"
#include "testing.h"

static char dir[64];
static char err[1024];

#define EXPECT_ERR(want) EXPECT_CONTAINS(err, want)

/* A file image: 8-byte length, header text as given, dlen zero bytes of data. */
static unsigned char *image(const char *header, size_t dlen, size_t *size)
{
	size_t h = strlen(header);
	*size = 8 + h + dlen;
	unsigned char *b = calloc(1, *size);
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)((uint64_t)h >> (8 * i));
	memcpy(b + 8, header, h);
	return b;
}

/* Open a header image in memory: 0 if accepted. err holds the message otherwise. */
static int try_header(const char *header, size_t dlen)
{
	size_t size;
	unsigned char *b = image(header, dlen, &size);
	struct st_file *f;
	err[0] = 0;
	int rc = st_open_memory("model.safetensors", b, size, &f, err, sizeof err);
	if (!rc) {
		/* Every accepted tensor lies inside the buffer. */
		for (size_t i = 0; i < st_count(f); i++) {
			const struct st_tensor *t = st_tensor_at(f, i);
			EXPECT((const unsigned char *)t->data >= b && (const unsigned char *)t->data + t->nbytes <= b + size);
		}
		st_close(f);
	}
	free(b);
	return rc;
}

static void test_round_trip(void)
{
	float f32[6] = {1, -2, 3.5f, 4, 5, 6};
	uint16_t bf16[5] = {0x3f80, 0x4000, 0xbf80, 0, 0x7f80};
	int64_t i64 = -1234567890123LL;
	uint8_t f8[3] = {1, 2, 3};
	uint64_t s23[] = {2, 3}, s5[] = {5}, s0[] = {0}, s31[] = {3, 1};
	struct st_write_tensor t[] = {
		{"b.bf16", ST_BF16, 1, s5, bf16},
		{"a.f32", ST_F32, 2, s23, f32},
		{"scalar", ST_I64, 0, NULL, &i64},
		{"empty", ST_U8, 1, s0, NULL},
		{"f8 \"quoted\"\n", ST_F8_E4M3, 2, s31, f8},
	};
	struct st_kv meta[] = {{"format", "pt"}, {"why", "tab\there \"q\" \\ ü"}};
	char path[128];
	snprintf(path, sizeof path, "%s/rt.safetensors", dir);
	EXPECT_INT(st_write(path, t, 5, meta, 2, err, sizeof err), 0);
	struct st_file *f;
	if (st_open(path, &f, err, sizeof err)) {
		fprintf(stderr, "open: %s\n", err);
		testing_failed++;
		return;
	}
	EXPECT_INT(st_count(f), 5);
	/* HF's order: larger dtypes first, then by name. */
	EXPECT_STR(st_tensor_at(f, 0)->name, "scalar");
	EXPECT_STR(st_tensor_at(f, 1)->name, "a.f32");
	EXPECT_STR(st_tensor_at(f, 2)->name, "b.bf16");
	for (size_t i = 0; i < st_count(f); i++) {
		const struct st_tensor *x = st_tensor_at(f, i);
		EXPECT_INT((uintptr_t)x->data % st_dtype_size(x->dtype), 0);
	}
	const struct st_tensor *a = st_find(f, "a.f32");
	EXPECT(a && a->dtype == ST_F32 && a->ndim == 2 && a->shape[0] == 2 && a->shape[1] == 3 && a->nbytes == 24);
	EXPECT(a && !memcmp(a->data, f32, sizeof f32));
	const struct st_tensor *b = st_find(f, "b.bf16");
	EXPECT(b && b->dtype == ST_BF16 && b->numel == 5 && !memcmp(b->data, bf16, sizeof bf16));
	const struct st_tensor *s = st_find(f, "scalar");
	EXPECT(s && s->ndim == 0 && s->numel == 1 && !memcmp(s->data, &i64, 8));
	const struct st_tensor *e = st_find(f, "empty");
	EXPECT(e && e->numel == 0 && e->nbytes == 0);
	const struct st_tensor *q = st_find(f, "f8 \"quoted\"\n");
	EXPECT(q && q->dtype == ST_F8_E4M3 && !memcmp(q->data, f8, 3));
	EXPECT(!st_find(f, "nope"));
	EXPECT_STR(st_metadata(f, "format"), "pt");
	EXPECT_STR(st_metadata(f, "why"), "tab\there \"q\" \\ ü");
	EXPECT(!st_metadata(f, "absent"));
	EXPECT_INT(st_metadata_count(f), 2);
	st_close(f);
	/* No temporary left behind. */
	char tmp[160];
	snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
	EXPECT(access(tmp, F_OK) != 0);
	/* Writer refuses duplicates and leaves the old file alone. */
	struct st_write_tensor dup[] = {{"x", ST_U8, 1, s5, f8 - 0}, {"x", ST_U8, 1, s5, f8}};
	uint8_t five[5] = {0};
	dup[0].data = dup[1].data = five;
	EXPECT_INT(st_write(path, dup, 2, NULL, 0, err, sizeof err), -1);
	EXPECT_ERR("tensor 'x' given twice");
	if (!st_open(path, &f, err, sizeof err)) {
		EXPECT_INT(st_count(f), 5);
		st_close(f);
	}
}

static void test_hf_fixture(void)
{
	struct st_file *f;
	const char *path = "tests/fixtures/safetensors/hf_small.safetensors";
	if (st_open(path, &f, err, sizeof err)) {
		fprintf(stderr, "open: %s\n", err);
		testing_failed++;
		return;
	}
	EXPECT_INT(st_count(f), 6);
	EXPECT_STR(st_metadata(f, "format"), "pt");
	EXPECT_STR(st_metadata(f, "note"), "moec \"fixture\"");
	const struct st_tensor *t = st_find(f, "model.embed_tokens.weight");
	EXPECT(t && t->dtype == ST_F32 && t->ndim == 2 && t->shape[0] == 4 && t->shape[1] == 8);
	if (t)
		for (int i = 0; i < 32; i++)
			EXPECT(((const float *)t->data)[i] == i * 0.5f);
	t = st_find(f, "model.layers.0.mlp.gate.weight");
	EXPECT(t && t->dtype == ST_F16 && t->numel == 16);
	/* -3 and 12 in IEEE half. */
	if (t)
		EXPECT(((const uint16_t *)t->data)[0] == 0xc200 && ((const uint16_t *)t->data)[15] == 0x4a00);
	t = st_find(f, "model.layers.0.mlp.experts.0.up_proj.weight");
	EXPECT(t && t->dtype == ST_I64 && t->shape[0] == 3 && t->shape[1] == 5);
	if (t)
		for (int i = 0; i < 15; i++)
			EXPECT(((const int64_t *)t->data)[i] == -7LL * i);
	t = st_find(f, "model.layers.0.input_layernorm.weight");
	EXPECT(t && t->dtype == ST_I32 && t->numel == 8 && ((const int32_t *)t->data)[7] == 107);
	t = st_find(f, "model.norm.weight");
	EXPECT(t && t->dtype == ST_U8 && t->ndim == 3 && ((const uint8_t *)t->data)[5] == 5);
	t = st_find(f, "scalar");
	EXPECT(t && t->dtype == ST_F64 && t->ndim == 0 && *(const double *)t->data == 2.5);
	st_close(f);
}

static void write_text(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");
	fputs(text, fp);
	fclose(fp);
}

static void test_index(void)
{
	char p[192];
	float v1[2] = {1, 2}, v2[3] = {3, 4, 5};
	uint64_t s2[] = {2}, s3[] = {3};
	struct st_write_tensor a = {"layer.0.w", ST_F32, 1, s2, v1}, b = {"layer.1.w", ST_F32, 1, s3, v2};
	snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
	EXPECT_INT(st_write(p, &a, 1, NULL, 0, err, sizeof err), 0);
	snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
	EXPECT_INT(st_write(p, &b, 1, NULL, 0, err, sizeof err), 0);
	snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
	write_text(p, "{\n  \"metadata\": {\"total_size\": 20, \"format\": \"pt\"},\n  \"weight_map\": {\n"
	              "    \"layer.0.w\": \"model-00001-of-00002.safetensors\",\n"
	              "    \"layer.1.w\": \"model-00002-of-00002.safetensors\",\n"
	              "    \"layer.2.w\": \"model-00002-of-00002.safetensors\",\n"
	              "    \"layer.3.w\": \"missing.safetensors\"\n  }\n}\n");
	struct st_index *x;
	if (st_index_open(p, &x, err, sizeof err)) {
		fprintf(stderr, "index: %s\n", err);
		testing_failed++;
		return;
	}
	EXPECT_INT(st_index_count(x), 4);
	EXPECT_STR(st_index_metadata(x, "total_size"), "20");
	EXPECT_STR(st_index_shard(x, "layer.1.w"), "model-00002-of-00002.safetensors");
	EXPECT(!st_index_shard(x, "nope"));
	const struct st_tensor *t = st_index_find(x, "layer.0.w", err, sizeof err);
	EXPECT(t && t->numel == 2 && ((const float *)t->data)[1] == 2);
	t = st_index_find(x, "layer.1.w", err, sizeof err);
	EXPECT(t && t->numel == 3 && ((const float *)t->data)[2] == 5);
	EXPECT(!st_index_find(x, "layer.2.w", err, sizeof err));
	EXPECT_ERR("weight_map puts tensor 'layer.2.w' in 'model-00002-of-00002.safetensors' but that file has no such tensor");
	EXPECT(!st_index_find(x, "layer.3.w", err, sizeof err));
	EXPECT_ERR("missing.safetensors: cannot open");
	EXPECT(!st_index_find(x, "nope", err, sizeof err));
	EXPECT_ERR("no tensor 'nope' in weight_map");
	st_index_close(x);

	/* Bad indexes. */
	static const struct {
		const char *json, *want;
	} bad[] = {
		{"{\"weight_map\": {\"a\": \"../etc/x.safetensors\"}}", "tensor 'a': shard '../etc/x.safetensors' is not a file name"},
		{"{\"weight_map\": {\"a\": \"/abs.safetensors\"}}", "shard '/abs.safetensors' is not a file name"},
		{"{\"weight_map\": {\"a\": \"s1\", \"a\": \"s2\"}}", "tensor 'a' appears twice in weight_map"},
		{"{\"metadata\": {}}", "no weight_map"},
		{"{\"weight_map\": {\"a\": 3}}", "weight_map entry for tensor 'a' is not a file name string"},
		{"{\"weight_map\": {}, \"extra\": 1}", "unknown top-level key 'extra'"},
		{"{\"weight_map\": {\"a\": \"s\"}", "expected ',' or '}'"},
		{"{\"metadata\": {\"total_size\": -1}, \"weight_map\": {}}", "negative number"},
		{"", "expected '{' but the header ends"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		err[0] = 0;
		EXPECT_INT(st_index_open_memory("idx.json", ".", bad[i].json, strlen(bad[i].json), &x, err, sizeof err), -1);
		EXPECT_ERR(bad[i].want);
		EXPECT_ERR("idx.json");
	}
}

static void test_corrupt(void)
{
	/* The example from the design: the size check names file, tensor and both sizes. */
	EXPECT_INT(try_header("{\"model.layers.0.mlp.gate.weight\":{\"dtype\":\"F32\",\"shape\":[128,2048],\"data_offsets\":[0,100]}}", 100), -1);
	EXPECT_STR(err, "model.safetensors: tensor 'model.layers.0.mlp.gate.weight': data_offsets [0, 100] hold 100 bytes but shape "
	                "[128, 2048] of F32 needs 1048576; the file is truncated or corrupt");

	static const struct {
		const char *header;
		size_t dlen;
		const char *want;
	} bad[] = {
		/* offsets out of range (truncated data) */
		{"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "tensor 'w': data_offsets [0, 8] run past the end of the data section (4 bytes)"},
		/* bad JSON */
		{"{\"w\":{\"dtype\":\"F32\",}}", 0, "header JSON at byte 20"},
		{"{\"w\" {}}", 0, "expected ':'"},
		{"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}xx", 4, "unexpected bytes after the header object"},
		{"{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "fraction or exponent"},
		{"{\"w\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 4, "leading zero"},
		{"{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "negative number"},
		{"{\"w\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", 4, "does not fit in 64 bits"},
		{"{\"w\\u0000\":{}}", 0, "NUL character"},
		{"{\"w\\ud800\":{}}", 0, "unpaired surrogate"},
		{"{\"w\\q\":{}}", 0, "bad escape"},
		{"{\"w\xff\":{}}", 0, "invalid UTF-8"},
		{"{\"w\n\":{}}", 0, "control character"},
		{"{\"w", 0, "unterminated string"},
		{"[]", 0, "does not start with '{'"},
		/* unknown dtype, keys */
		{"{\"w\":{\"dtype\":\"F12\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'w': unknown dtype \"F12\""},
		{"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, "tensor 'w': unknown key 'x'"},
		{"{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'w': missing 'shape'"},
		{"{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\"}}", 4, "duplicate key 'dtype'"},
		{"{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "more than 8 dimensions"},
		{"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, "more than 2 numbers"},
		{"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", 4, "must be [begin, end]"},
		/* sizes */
		{"{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "tensor 'w': data_offsets [4, 0] end before they begin"},
		{"{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
		 "tensor 'w': shape [4294967296, 4294967296] of F32 overflows"},
		{"{\"w\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,0]}}", 0, "overflows"},
		/* layout */
		{"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
		 "tensor 'b': data_offsets [4, 12] overlap tensor 'a' [0, 8]"},
		{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12,
		 "tensor 'b': data_offsets begin at 8, leaving a gap after byte 4"},
		{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12, "the data section holds 12 bytes but the tensors cover 4"},
		{"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
		 "tensor 'a' appears twice"},
		/* metadata */
		{"{\"__metadata__\":{\"k\":1}}", 0, "__metadata__ value for 'k' is not a string"},
		{"{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, "__metadata__ key 'k' appears twice"},
		{"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate key '__metadata__'"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		int rc = try_header(bad[i].header, bad[i].dlen);
		EXPECT_INT(rc, -1);
		EXPECT_ERR(bad[i].want);
		EXPECT_ERR("model.safetensors: ");
	}
	/* Accepted edge cases: empty header object, padding, scalar, zero-size tensor. */
	EXPECT_INT(try_header("{}      ", 0), 0);
	EXPECT_INT(try_header("{\"s\":{\"shape\":[],\"data_offsets\":[0,2],\"dtype\":\"BF16\"},\"z\":{\"dtype\":\"U8\",\"shape\":[0,5],\"data_offsets\":[2,2]}}", 2), 0);

	/* File-level faults. */
	unsigned char small[5] = {0};
	struct st_file *f;
	EXPECT_INT(st_open_memory("model.safetensors", small, 5, &f, err, sizeof err), -1);
	EXPECT_ERR("model.safetensors: 5 bytes is too short");
	size_t size;
	unsigned char *b = image("{}", 0, &size);
	b[0] = 200;
	EXPECT_INT(st_open_memory("model.safetensors", b, size, &f, err, sizeof err), -1);
	EXPECT_ERR("model.safetensors: header length 200 runs past the end of the file (10 bytes)");
	b[7] = 0x80;
	EXPECT_INT(st_open_memory("model.safetensors", b, size, &f, err, sizeof err), -1);
	EXPECT_ERR("runs past the end of the file");
	free(b);

	/* A real file cut short on disk. */
	char path[128], cut[128];
	float v[4] = {1, 2, 3, 4};
	uint64_t s4[] = {4};
	struct st_write_tensor t = {"model.layers.0.mlp.gate.weight", ST_F32, 1, s4, v};
	snprintf(path, sizeof path, "%s/full.safetensors", dir);
	snprintf(cut, sizeof cut, "%s/cut.safetensors", dir);
	EXPECT_INT(st_write(path, &t, 1, NULL, 0, err, sizeof err), 0);
	FILE *in = fopen(path, "rb"), *out = fopen(cut, "wb");
	char buf[4096];
	size_t n = fread(buf, 1, sizeof buf, in);
	fwrite(buf, 1, n - 3, out);
	fclose(in);
	fclose(out);
	EXPECT_INT(st_open(cut, &f, err, sizeof err), -1);
	EXPECT_ERR("cut.safetensors: tensor 'model.layers.0.mlp.gate.weight': data_offsets [0, 16] run past the end of the data section (13 bytes); the file is truncated");
	out = fopen(cut, "wb");
	fclose(out);
	EXPECT_INT(st_open(cut, &f, err, sizeof err), -1);
	EXPECT_ERR("0 bytes is too short");
	EXPECT_INT(st_open("/nonexistent/x.safetensors", &f, err, sizeof err), -1);
	EXPECT_ERR("/nonexistent/x.safetensors: cannot open");
	EXPECT(f == NULL);
}

int main(void)
{
	snprintf(dir, sizeof dir, "/tmp/moec_st_test_%d", (int)getpid());
	char cmd[2 * sizeof dir + 32];
	snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
	if (system(cmd))
		return 1;
	test_round_trip();
	test_hf_fixture();
	test_index();
	test_corrupt();
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd))
		return 1;
	return testing_report();
}
