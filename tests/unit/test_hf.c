/* test_hf.c - runtime/hf: BF16 and F16 to float32 conversion against hand-checked values
 * (normals, subnormals, infinities, NaN, signed zero), tensors at unaligned offsets, the
 * shape and missing-tensor refusals naming file and tensor, sharded model directories with
 * an index written by hand, and directories that are not HF models. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hf.h"
#include "testing.h"

static char dir[64];
static char err[1024];

#define EXPECT_ERR(want) EXPECT_CONTAINS(err, want)

static const char *path_of(const char *name)
{
	static char p[4][192];
	static int k;
	k = (k + 1) % 4;
	snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
	return p[k];
}

static uint32_t bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static void write_bytes(const char *path, const void *p, size_t n)
{
	FILE *fp = fopen(path, "wb");
	if (n)
		fwrite(p, 1, n, fp);
	fclose(fp);
}

static void write_text(const char *path, const char *text)
{
	write_bytes(path, text, strlen(text));
}

static struct hf_model *open_ok(const char *path)
{
	struct hf_model *m = NULL;
	if (hf_open(path, &m, err, sizeof err)) {
		fprintf(stderr, "hf_open %s: %s\n", path, err);
		testing_failed++;
	}
	return m;
}

/* Hand-checked: BF16 is the top half of a float32; F16 has 5 exponent bits (bias 15). */
static void test_convert(void)
{
	static const uint16_t bf16[] = {0x3f80, 0xc000, 0x3fc0, 0x4049, 0x7f80, 0xff80, 0x0001, 0x8000};
	static const float bf16_want[] = {1.0f, -2.0f, 1.5f, 3.140625f, INFINITY, -INFINITY, 0x1p-133f, -0.0f};
	static const uint16_t f16[] = {0x3c00, 0xc000, 0x3555, 0x7bff, 0x0001, 0x0400, 0x03ff, 0x7c00, 0xfc00, 0x8000, 0x7e00, 0x0200};
	static const float f16_want[] = {1.0f,  -2.0f,      0.333251953125f, 65504.0f, 0x1p-24f, 0x1p-14f,
	                                  0x1.ff8p-15f, INFINITY, -INFINITY, -0.0f, NAN, 0x1p-15f};
	float f32[6] = {1, -2, 3.5f, 0x1p-149f, -0.0f, 1e30f};
	int64_t i64 = 7;
	uint64_t s24[] = {2, 4}, s12[] = {12}, s23[] = {2, 3}, s1[] = {1};
	struct st_write_tensor t[] = {
		{"w.bf16", ST_BF16, 2, s24, bf16},
		{"w.f16", ST_F16, 1, s12, f16},
		{"w.f32", ST_F32, 2, s23, f32},
		{"w.i64", ST_I64, 1, s1, &i64},
	};
	const char *p = path_of("conv.safetensors");
	EXPECT_INT(st_write(p, t, 4, NULL, 0, err, sizeof err), 0);
	struct hf_model *m = open_ok(p);
	if (!m)
		return;
	EXPECT_STR(hf_path(m), p);
	EXPECT_INT(hf_count(m), 4);
	EXPECT(hf_has(m, "w.f16") && !hf_has(m, "w"));

	float out[12];
	EXPECT_INT(hf_read_f32(m, "w.bf16", 2, s24, out, err, sizeof err), 0);
	for (int i = 0; i < 8; i++)
		EXPECT_INT(bits(out[i]), bits(bf16_want[i]));
	EXPECT_INT(hf_read_f32(m, "w.f16", 1, s12, out, err, sizeof err), 0);
	for (int i = 0; i < 12; i++)
		if (i != 10)
			EXPECT_INT(bits(out[i]), bits(f16_want[i]));
	EXPECT_INT(bits(out[10]), 0x7fc00000); /* quiet NaN, payload kept */
	EXPECT_INT(hf_read_f32(m, "w.f32", 2, s23, out, err, sizeof err), 0);
	for (int i = 0; i < 6; i++)
		EXPECT_INT(bits(out[i]), bits(f32[i]));
	/* Every F16 value converts exactly: check against a direct formula. */
	for (uint32_t h = 0; h < 0x10000; h++) {
		int e = h >> 10 & 0x1f, man = h & 0x3ff;
		if (e == 0x1f)
			continue;
		double v = e ? ldexp(1024 + man, e - 25) : ldexp(man, -24);
		if (h & 0x8000)
			v = -v;
		if (hf_f16_to_f32((uint16_t)h) != (float)v) {
			EXPECT_INT(h, -1);
			break;
		}
	}

	/* Wrong shape, wrong rank, missing tensor, unsupported dtype: -1 naming file and tensor. */
	uint64_t s42[] = {4, 2}, s8[] = {8};
	EXPECT_INT(hf_read_f32(m, "w.bf16", 2, s42, out, err, sizeof err), -1);
	EXPECT_ERR("conv.safetensors: tensor w.bf16 has shape [2, 4], this model needs [4, 2]");
	EXPECT_INT(hf_read_f32(m, "w.bf16", 1, s8, out, err, sizeof err), -1);
	EXPECT_ERR("tensor w.bf16 has shape [2, 4], this model needs [8]");
	EXPECT_INT(hf_read_f32(m, "model.layers.0.mlp.gate.weight", 1, s8, out, err, sizeof err), -1);
	EXPECT_ERR("conv.safetensors: no tensor model.layers.0.mlp.gate.weight (the checkpoint does not match this model");
	EXPECT_INT(hf_read_f32(m, "w.i64", 1, s1, out, err, sizeof err), -1);
	EXPECT_ERR("conv.safetensors: tensor w.i64 has dtype I64; only F32, BF16 and F16");
	const char *file = NULL;
	const struct st_tensor *st = hf_find(m, "w.f16", &file);
	EXPECT(st && st->dtype == ST_F16 && st->numel == 12);
	EXPECT_STR(file, p);
	hf_close(m);
}

/* Tensors at odd byte offsets (a hand-made file, as a foreign writer may produce): the
 * reader must not load through misaligned pointers (UBSan would stop it). */
static void test_unaligned(void)
{
	const char *h = "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
	                "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[1,9]},"
	                "\"c\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[9,11]}}";
	size_t hl = strlen(h);
	unsigned char buf[512] = {0};
	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
	memcpy(buf + 8, h, hl);
	unsigned char *d = buf + 8 + hl;
	float b[2] = {2.5f, -7.0f};
	uint16_t c = 0x4049;
	d[0] = 9;
	memcpy(d + 1, b, 8);
	memcpy(d + 9, &c, 2);
	const char *p = path_of("odd.safetensors");
	write_bytes(p, buf, 8 + hl + 11);
	struct hf_model *m = open_ok(p);
	if (!m)
		return;
	float out[2];
	uint64_t s2[] = {2}, s1[] = {1};
	EXPECT_INT(hf_read_f32(m, "b", 1, s2, out, err, sizeof err), 0);
	EXPECT(out[0] == 2.5f && out[1] == -7.0f);
	EXPECT_INT(hf_read_f32(m, "c", 1, s1, out, err, sizeof err), 0);
	EXPECT(out[0] == 3.140625f);
	hf_close(m);
}

/* A sharded HF directory, index written by hand as HF writes it. */
static void test_sharded(void)
{
	char sd[128];
	snprintf(sd, sizeof sd, "%s/sharded", dir);
	mkdir(sd, 0755);
	float a[6] = {1, 2, 3, 4, 5, 6};
	uint16_t b[2] = {0x3f80, 0xc040}; /* 1, -3 */
	uint16_t c[1] = {0x3800};         /* F16 0.5 */
	uint64_t s23[] = {2, 3}, s2[] = {2}, s1[] = {1};
	struct st_write_tensor t1 = {"model.embed_tokens.weight", ST_F32, 2, s23, a};
	struct st_write_tensor t2[] = {{"model.norm.weight", ST_BF16, 1, s2, b}, {"lm_head.weight", ST_F16, 1, s1, c}};
	struct st_kv pt = {"format", "pt"};
	EXPECT_INT(st_write(path_of("sharded/model-00001-of-00002.safetensors"), &t1, 1, &pt, 1, err, sizeof err), 0);
	EXPECT_INT(st_write(path_of("sharded/model-00002-of-00002.safetensors"), t2, 2, &pt, 1, err, sizeof err), 0);
	write_text(path_of("sharded/model.safetensors.index.json"),
	           "{\n  \"metadata\": {\"total_size\": 30},\n  \"weight_map\": {\n"
	           "    \"lm_head.weight\": \"model-00002-of-00002.safetensors\",\n"
	           "    \"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\",\n"
	           "    \"model.norm.weight\": \"model-00002-of-00002.safetensors\"\n  }\n}\n");
	struct hf_model *m = open_ok(sd);
	if (!m)
		return;
	EXPECT_STR(hf_path(m), sd);
	EXPECT_INT(hf_count(m), 3);
	EXPECT_STR(hf_name_at(m, 1), "model.embed_tokens.weight");
	EXPECT(!hf_name_at(m, 3));
	float out[6];
	EXPECT_INT(hf_read_f32(m, "model.embed_tokens.weight", 2, s23, out, err, sizeof err), 0);
	EXPECT(!memcmp(out, a, sizeof a));
	EXPECT_INT(hf_read_f32(m, "model.norm.weight", 1, s2, out, err, sizeof err), 0);
	EXPECT(out[0] == 1.0f && out[1] == -3.0f);
	EXPECT_INT(hf_read_f32(m, "lm_head.weight", 1, s1, out, err, sizeof err), 0);
	EXPECT(out[0] == 0.5f);
	/* The message names the shard holding the tensor, and the directory for a missing one. */
	EXPECT_INT(hf_read_f32(m, "model.norm.weight", 1, s1, out, err, sizeof err), -1);
	EXPECT_ERR("sharded/model-00002-of-00002.safetensors: tensor model.norm.weight has shape [2], this model needs [1]");
	EXPECT_INT(hf_read_f32(m, "model.layers.0.self_attn.q_proj.weight", 1, s1, out, err, sizeof err), -1);
	EXPECT_ERR("sharded: no tensor model.layers.0.self_attn.q_proj.weight (the checkpoint does not match this model");
	const char *file;
	EXPECT(hf_find(m, "model.embed_tokens.weight", &file) != NULL);
	EXPECT(strstr(file, "sharded/model-00001-of-00002.safetensors") != NULL);
	hf_close(m);

	/* The index file itself is a path too. */
	m = open_ok(path_of("sharded/model.safetensors.index.json"));
	if (m) {
		EXPECT(hf_has(m, "lm_head.weight"));
		hf_close(m);
	}

	/* A broken shard fails hf_open, not a read hours later; the shard is named. */
	write_text(path_of("sharded/model.safetensors.index.json"),
	           "{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", \"b\": \"model-00003-of-00003.safetensors\"}}");
	EXPECT_INT(hf_open(sd, &m, err, sizeof err), -1);
	EXPECT(m == NULL);
	EXPECT_ERR("weight_map puts tensor 'a' in 'model-00001-of-00002.safetensors' but that file has no such tensor");
	write_text(path_of("sharded/model.safetensors.index.json"),
	           "{\"weight_map\": {\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\", \"b\": \"model-00003-of-00003.safetensors\"}}");
	EXPECT_INT(hf_open(sd, &m, err, sizeof err), -1);
	EXPECT_ERR("sharded/model-00003-of-00003.safetensors: cannot open");
	EXPECT_ERR("(checking the shards of");
	write_bytes(path_of("sharded/model-00003-of-00003.safetensors"), "\x10\0\0\0\0\0\0\0{", 9);
	EXPECT_INT(hf_open(sd, &m, err, sizeof err), -1);
	EXPECT_ERR("sharded/model-00003-of-00003.safetensors: header length 16 runs past the end of the file");

	/* model.safetensors beside an index wins, as in transformers. */
	EXPECT_INT(st_write(path_of("sharded/model.safetensors"), t2, 2, NULL, 0, err, sizeof err), 0);
	m = open_ok(sd);
	if (m) {
		EXPECT_INT(hf_count(m), 2);
		hf_close(m);
	}
}

static void test_not_a_model(void)
{
	struct hf_model *m;
	char empty[128];
	snprintf(empty, sizeof empty, "%s/empty", dir);
	mkdir(empty, 0755);
	EXPECT_INT(hf_open(empty, &m, err, sizeof err), -1);
	EXPECT_ERR("empty: no model.safetensors or model.safetensors.index.json; not a Hugging Face model directory");
	EXPECT_INT(hf_open(path_of("nope"), &m, err, sizeof err), -1);
	EXPECT_ERR("nope: cannot open: No such file or directory");
	write_text(path_of("text.safetensors"), "hello");
	EXPECT_INT(hf_open(path_of("text.safetensors"), &m, err, sizeof err), -1);
	EXPECT_ERR("text.safetensors: 5 bytes is too short");
}

int main(void)
{
	if (testing_tmpdir(dir, sizeof dir, "hf"))
		return 1;
	test_convert();
	test_unaligned();
	test_sharded();
	test_not_a_model();
	testing_rmdir(dir);
	return testing_report();
}
