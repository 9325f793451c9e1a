/* fuzz_ckpt.c - libFuzzer harness for runtime/ckpt.c and runtime/hf.c: what a trainer does
 * with a checkpoint or HF model downloaded from anywhere, on top of the header parser that
 * fuzz_safetensors covers.
 *
 * The first byte picks what the rest of the input is (seeds_safetensors fits: 0 and 1):
 *   % 3 == 0  optimizer.safetensors of a step dir beside a valid model: ckpt_open, every
 *             state value through the strict integer parsers (checked against strtoll and
 *             strtoull), every tensor through ckpt_read_optim with its own and a wrong shape
 *   % 3 == 1  a model.safetensors.index.json beside two valid shards: hf_open validates
 *             every entry, then every tensor is read as float32
 *   % 3 == 2  model.safetensors of the newest of two step dirs: ckpt_latest must pick it or
 *             fall back to the older, valid one; whatever it picks must open and read
 * Nothing may crash, leak, read out of bounds or misalign a load; every failure explains
 * itself. replay.c runs the same function over files with any compiler.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ckpt.h"
#include "hf.h"

static char root[64];
static char err[1024];
/* Step 2's valid files, put back after every input so each mode starts from a good dir. */
static uint8_t *good_model, *good_optim;
static size_t good_model_n, good_optim_n;

static void write_file(const char *path, const uint8_t *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		abort();
	if (n)
		fwrite(p, 1, n, f);
	fclose(f);
}

static uint8_t *read_file(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		abort();
	fseek(f, 0, SEEK_END);
	*n = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *b = malloc(*n);
	if (fread(b, 1, *n, f) != *n)
		abort();
	fclose(f);
	return b;
}

static void must(int ok)
{
	if (!ok) {
		fprintf(stderr, "fuzz_ckpt: %s\n", err);
		abort();
	}
}

/* Fixed valid files: ck/step_00000001 (complete), ck/step_00000002/optimizer.safetensors,
 * hf/a.safetensors and hf/b.safetensors. */
static void setup(void)
{
	snprintf(root, sizeof root, "/tmp/moec_fuzz_ckpt_%d", (int)getpid());
	char p[160];
	float w[4] = {1, 2, 3, 4};
	uint16_t h[2] = {0x3f80, 0xc000};
	struct ckpt_tensor model[] = {{"w", ST_F32, 2, {2, 2}, w}, {"h", ST_BF16, 1, {2}, h}};
	struct ckpt_tensor optim[] = {{"w.exp_avg", ST_F32, 2, {2, 2}, w}};
	struct st_kv state[] = {{"step", "1"}};
	snprintf(p, sizeof p, "%s/ck", root);
	for (long long step = 1; step <= 2; step++) {
		struct ckpt_save s = {.dir = p, .step = step, .model = model, .n_model = 2, .optim = optim, .n_optim = 1,
		                      .state = state, .n_state = 1};
		must(!ckpt_write(&s, err, sizeof err));
	}
	snprintf(p, sizeof p, "%s/ck/step_00000002/model.safetensors", root);
	good_model = read_file(p, &good_model_n);
	snprintf(p, sizeof p, "%s/ck/step_00000002/optimizer.safetensors", root);
	good_optim = read_file(p, &good_optim_n);
	snprintf(p, sizeof p, "%s/hf", root);
	mkdir(p, 0755);
	uint64_t s2[] = {2}, s22[] = {2, 2};
	struct st_write_tensor a = {"a", ST_F32, 2, s22, w}, b = {"b", ST_F16, 1, s2, h};
	snprintf(p, sizeof p, "%s/hf/a.safetensors", root);
	must(!st_write(p, &a, 1, NULL, 0, err, sizeof err));
	snprintf(p, sizeof p, "%s/hf/b.safetensors", root);
	must(!st_write(p, &b, 1, NULL, 0, err, sizeof err));
}

/* Read t as float32 with its own shape (must work for F32/BF16/F16 and match the bytes) and
 * with a wrong one (must fail). */
static void read_tensor(const char *file, const struct st_tensor *t)
{
	float *dst = malloc(t->numel ? t->numel * sizeof(float) : 1);
	int rc = hf_tensor_f32(file, t, t->ndim, t->shape, dst, err, sizeof err);
	int convertible = t->dtype == ST_F32 || t->dtype == ST_BF16 || t->dtype == ST_F16;
	must(rc == (convertible ? 0 : -1) && (rc == 0 || err[0]));
	const unsigned char *p = t->data;
	for (uint64_t i = 0; i < t->numel && !rc; i++) {
		float want;
		uint16_t v;
		if (t->dtype == ST_F32) {
			memcpy(&want, p + 4 * i, 4);
		} else {
			memcpy(&v, p + 2 * i, 2);
			want = t->dtype == ST_BF16 ? hf_bf16_to_f32(v) : hf_f16_to_f32(v);
		}
		if (memcmp(&want, &dst[i], 4))
			abort();
	}
	if (t->ndim < ST_MAX_DIMS) {
		uint64_t wrong[ST_MAX_DIMS + 1];
		memcpy(wrong, t->shape, sizeof t->shape);
		wrong[t->ndim] = 1;
		err[0] = 0;
		if (!hf_tensor_f32(file, t, t->ndim + 1, wrong, dst, err, sizeof err) || !err[0])
			abort();
	}
	free(dst);
}

/* The strict parsers agree with strtoll/strtoull on plain decimal text, refuse the rest. */
static void check_state(struct ckpt *c, const char *key, const char *text)
{
	long long i;
	unsigned long long u;
	size_t n = strlen(text), neg = text[0] == '-';
	int digits = n > neg && strspn(text + neg, "0123456789") == n - neg;
	errno = 0;
	long long ri = strtoll(text, NULL, 10);
	int i_ok = digits && !errno;
	errno = 0;
	unsigned long long ru = strtoull(text, NULL, 10);
	int u_ok = digits && !neg && !errno;
	err[0] = 0;
	int r = ckpt_state_i64(c, key, &i, err, sizeof err);
	if (r != (i_ok ? 0 : -1) || (!r && i != ri) || (r && !err[0]))
		abort();
	r = ckpt_state_u64(c, key, &u, err, sizeof err);
	if (r != (u_ok ? 0 : -1) || (!r && u != ru) || (r && !err[0]))
		abort();
}

static void read_ckpt(const char *stepdir)
{
	struct ckpt *c;
	err[0] = 0;
	if (ckpt_open(stepdir, &c, err, sizeof err)) {
		must(err[0] != 0);
		return;
	}
	struct hf_model *m = ckpt_model(c);
	for (size_t i = 0; i < hf_count(m); i++) {
		const char *file;
		const struct st_tensor *t = hf_find(m, hf_name_at(m, i), &file);
		must(t != NULL);
		read_tensor(file, t);
	}
	char p[160];
	snprintf(p, sizeof p, "%s/optimizer.safetensors", stepdir);
	struct st_file *f;
	must(!st_open(p, &f, err, sizeof err));
	for (size_t i = 0; i < st_count(f); i++)
		read_tensor(p, ckpt_find_optim(c, st_tensor_at(f, i)->name));
	for (size_t i = 0; i < st_metadata_count(f); i++) {
		const char *k, *v;
		st_metadata_at(f, i, &k, &v);
		if (strcmp(ckpt_state(c, k), v))
			abort();
		check_state(c, k, v);
	}
	st_close(f);
	ckpt_close(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!root[0])
		setup();
	if (size < 1)
		return 0;
	char p[160], latest[160];
	switch (data[0] % 3) {
	case 0:
		snprintf(p, sizeof p, "%s/ck/step_00000002/optimizer.safetensors", root);
		write_file(p, data + 1, size - 1);
		snprintf(p, sizeof p, "%s/ck/step_00000002", root);
		read_ckpt(p);
		break;
	case 1: {
		snprintf(p, sizeof p, "%s/hf/model.safetensors.index.json", root);
		write_file(p, data + 1, size - 1);
		snprintf(p, sizeof p, "%s/hf", root);
		struct hf_model *m;
		err[0] = 0;
		if (hf_open(p, &m, err, sizeof err)) {
			must(err[0] != 0);
			break;
		}
		for (size_t i = 0; i < hf_count(m); i++) {
			const char *file;
			const struct st_tensor *t = hf_find(m, hf_name_at(m, i), &file);
			must(t && hf_has(m, hf_name_at(m, i)));
			read_tensor(file, t);
		}
		hf_close(m);
		break;
	}
	default:
		snprintf(p, sizeof p, "%s/ck/step_00000002/model.safetensors", root);
		write_file(p, data + 1, size - 1);
		snprintf(p, sizeof p, "%s/ck", root);
		must(ckpt_latest(p, latest, sizeof latest, err, sizeof err) == 1);
		read_ckpt(latest);
		break;
	}
	snprintf(p, sizeof p, "%s/ck/step_00000002/model.safetensors", root);
	write_file(p, good_model, good_model_n);
	snprintf(p, sizeof p, "%s/ck/step_00000002/optimizer.safetensors", root);
	write_file(p, good_optim, good_optim_n);
	return 0;
}
