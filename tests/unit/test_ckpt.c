/* test_ckpt.c - runtime/ckpt: save/resume bit-identical, keep-last-N and stale temp dirs,
 * same-step replacement, damaged checkpoints skipped or refused by name, strict state
 * parsing, and crash safety: a child saving in a loop (new steps and re-saves of the same
 * step) is SIGKILLed at varied instants and every step_* dir left behind must open and
 * hold exactly what was saved. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ckpt.h"
#include "testing.h"

static char dir[64];
static char err[1024];

#define EXPECT_ERR(want) EXPECT_CONTAINS(err, want)

static const char *path_of(const char *fmt, const char *a)
{
	static char p[4][256];
	static int k;
	char rel[128];
	k = (k + 1) % 4;
	snprintf(rel, sizeof rel, fmt, a);
	snprintf(p[k], sizeof p[k], "%s/%s", dir, rel);
	return p[k];
}

static uint32_t bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

/* The entries of d other than . and .., sorted, joined by spaces. */
static const char *listing(const char *d)
{
	static char out[1024];
	char names[32][256];
	int n = 0;
	DIR *dp = opendir(d);
	out[0] = 0;
	if (!dp)
		return out;
	struct dirent *e;
	while ((e = readdir(dp)) && n < 32)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			snprintf(names[n++], sizeof names[0], "%s", e->d_name);
	closedir(dp);
	qsort(names, (size_t)n, sizeof names[0], (int (*)(const void *, const void *))strcmp);
	for (int i = 0; i < n; i++) {
		strcat(out, i ? " " : "");
		strcat(out, names[i]);
	}
	return out;
}

static long file_size(const char *p)
{
	struct stat sb;
	return stat(p, &sb) ? -1 : (long)sb.st_size;
}

static char *read_all(const char *p, size_t *n)
{
	FILE *fp = fopen(p, "rb");
	if (!fp)
		return NULL;
	char *b = malloc(1 << 16);
	*n = fread(b, 1, 1 << 16, fp);
	fclose(fp);
	return b;
}

/* A small model: two weights (F32 with awkward values, BF16), AdamW state for the first. */
static float w_embed[12], m_embed[12], v_embed[12];
static uint16_t w_norm[3] = {0x3f80, 0x8000, 0x7fc1};

static struct ckpt_save small_save(const char *ckdir, long long step, int keep, const char *seed)
{
	static struct ckpt_tensor model[2], optim[2];
	static struct st_kv state[6];
	static char stepbuf[32];
	static const char manifest[] = "{\"spec\": \"tiny\", \"bytes\": \"\\u0000\"}\n";
	static const char config[] = "{\"model_type\": \"qwen3_moe\"}";
	static struct ckpt_file files[2];
	float base = (float)step;
	for (int i = 0; i < 12; i++) {
		w_embed[i] = base + (float)i / 7;
		m_embed[i] = -base * 1e-3f * (float)i;
		v_embed[i] = base * 1e-7f;
	}
	w_embed[3] = 0x1p-149f;
	w_embed[4] = -0.0f;
	w_embed[5] = NAN;
	model[0] = (struct ckpt_tensor){"model.embed_tokens.weight", ST_F32, 2, {4, 3}, w_embed};
	model[1] = (struct ckpt_tensor){"model.norm.weight", ST_BF16, 1, {3}, w_norm};
	optim[0] = (struct ckpt_tensor){"model.embed_tokens.weight.exp_avg", ST_F32, 2, {4, 3}, m_embed};
	optim[1] = (struct ckpt_tensor){"model.embed_tokens.weight.exp_avg_sq", ST_F32, 2, {4, 3}, v_embed};
	snprintf(stepbuf, sizeof stepbuf, "%lld", step);
	state[0] = (struct st_kv){"step", stepbuf};
	state[1] = (struct st_kv){"data.epoch", "2"};
	state[2] = (struct st_kv){"data.row", "123456789012"};
	state[3] = (struct st_kv){"rng", "18446744073709551615"};
	state[4] = (struct st_kv){"loss_scale", "-5"};
	state[5] = (struct st_kv){"seed", seed};
	files[0] = (struct ckpt_file){"manifest.json", manifest, sizeof manifest - 1};
	files[1] = (struct ckpt_file){"config.json", config, sizeof config - 1};
	return (struct ckpt_save){.dir = ckdir, .step = step, .keep = keep, .model = model, .n_model = 2,
	                          .optim = optim, .n_optim = 2, .state = state, .n_state = 6, .files = files, .n_files = 2};
}

static struct ckpt *open_ok(const char *p)
{
	struct ckpt *c = NULL;
	if (ckpt_open(p, &c, err, sizeof err)) {
		fprintf(stderr, "ckpt_open %s: %s\n", p, err);
		testing_failed++;
	}
	return c;
}

static void test_round_trip(void)
{
	char ck[128];
	snprintf(ck, sizeof ck, "%s", path_of("rt/a/b", ""));
	struct ckpt_save s = small_save(ck, 100, 3, "abc");
	EXPECT_INT(ckpt_write(&s, err, sizeof err), 0);
	EXPECT_STR(err, "");
	char latest[256];
	EXPECT_INT(ckpt_latest(ck, latest, sizeof latest, err, sizeof err), 1);
	EXPECT_STR(latest, path_of("rt/a/b/step_%s", "00000100"));
	char want[256];
	EXPECT_INT(ckpt_step_path(ck, 100, want, sizeof want), 0);
	EXPECT_STR(latest, want);
	EXPECT_STR(listing(ck), "step_00000100");
	EXPECT_STR(listing(latest), "config.json manifest.json model.safetensors optimizer.safetensors");
	struct ckpt *c = open_ok(latest);
	if (!c)
		return;
	EXPECT_STR(ckpt_path(c), latest);

	/* Every value bit-identical: NaN, -0 and a subnormal included. */
	float out[12];
	uint64_t s43[] = {4, 3}, s3[] = {3};
	struct hf_model *m = ckpt_model(c);
	EXPECT_INT(hf_read_f32(m, "model.embed_tokens.weight", 2, s43, out, err, sizeof err), 0);
	for (int i = 0; i < 12; i++)
		EXPECT_INT(bits(out[i]), bits(w_embed[i]));
	const struct st_tensor *t = hf_find(m, "model.norm.weight", NULL);
	EXPECT(t && t->dtype == ST_BF16 && !memcmp(t->data, w_norm, sizeof w_norm));
	EXPECT_INT(hf_read_f32(m, "model.norm.weight", 1, s3, out, err, sizeof err), 0);
	EXPECT_INT(bits(out[2]), 0x7fc10000);
	EXPECT_INT(ckpt_read_optim(c, "model.embed_tokens.weight.exp_avg", 2, s43, out, err, sizeof err), 0);
	EXPECT(!memcmp(out, m_embed, sizeof m_embed));
	EXPECT_INT(ckpt_read_optim(c, "model.embed_tokens.weight.exp_avg_sq", 2, s43, out, err, sizeof err), 0);
	EXPECT(!memcmp(out, v_embed, sizeof v_embed));
	EXPECT(ckpt_find_optim(c, "model.embed_tokens.weight.exp_avg") != NULL);

	/* Optimizer refusals name the optimizer file and the tensor. */
	EXPECT_INT(ckpt_read_optim(c, "model.norm.weight.exp_avg", 1, s3, out, err, sizeof err), -1);
	EXPECT_ERR("step_00000100/optimizer.safetensors: no tensor model.norm.weight.exp_avg (the checkpoint does not match");
	EXPECT_INT(ckpt_read_optim(c, "model.embed_tokens.weight.exp_avg", 1, s3, out, err, sizeof err), -1);
	EXPECT_ERR("step_00000100/optimizer.safetensors: tensor model.embed_tokens.weight.exp_avg has shape [4, 3], this model needs [3]");
	EXPECT_INT(hf_read_f32(m, "model.norm.weight", 1, s43, out, err, sizeof err), -1);
	EXPECT_ERR("step_00000100/model.safetensors: tensor model.norm.weight has shape [3], this model needs [4]");

	/* State, raw and parsed. */
	EXPECT_STR(ckpt_state(c, "step"), "100");
	EXPECT_STR(ckpt_state(c, "seed"), "abc");
	EXPECT(ckpt_state(c, "format") == NULL);
	long long i;
	unsigned long long u;
	EXPECT_INT(ckpt_state_i64(c, "step", &i, err, sizeof err), 0);
	EXPECT_INT(i, 100);
	EXPECT_INT(ckpt_state_i64(c, "data.row", &i, err, sizeof err), 0);
	EXPECT_INT(i, 123456789012LL);
	EXPECT_INT(ckpt_state_i64(c, "loss_scale", &i, err, sizeof err), 0);
	EXPECT_INT(i, -5);
	EXPECT_INT(ckpt_state_u64(c, "rng", &u, err, sizeof err), 0);
	EXPECT(u == 18446744073709551615ULL);
	EXPECT_INT(ckpt_state_i64(c, "rng", &i, err, sizeof err), -1);
	EXPECT_ERR("optimizer.safetensors: state rng = '18446744073709551615' is not a signed 64-bit integer");
	EXPECT_INT(ckpt_state_u64(c, "loss_scale", &u, err, sizeof err), -1);
	EXPECT_ERR("state loss_scale = '-5' is not an unsigned 64-bit integer");
	EXPECT_INT(ckpt_state_i64(c, "data.cursor", &i, err, sizeof err), -1);
	EXPECT_ERR("optimizer.safetensors: no state data.cursor");
	ckpt_close(c);

	/* The extra files byte for byte; the model file carries format=pt for transformers. */
	size_t n;
	char *b = read_all(path_of("rt/a/b/step_00000100/%s", "manifest.json"), &n);
	EXPECT(b && n == 36 && !memcmp(b, "{\"spec\": \"tiny\", \"bytes\": \"\\u0000\"}\n", 36));
	free(b);
	struct st_file *f;
	EXPECT_INT(st_open(path_of("rt/a/b/step_00000100/%s", "model.safetensors"), &f, err, sizeof err), 0);
	if (f) {
		EXPECT_STR(st_metadata(f, "format"), "pt");
		st_close(f);
	}
	/* And the step dir is itself an HF model directory. */
	struct hf_model *hm;
	EXPECT_INT(hf_open(latest, &hm, err, sizeof err), 0);
	if (hm) {
		EXPECT(hf_has(hm, "model.norm.weight"));
		hf_close(hm);
	}
}

/* Strict parsing: anything but a plain decimal in range is refused with the key named. */
static void test_state_parse(void)
{
	static const struct {
		const char *text;
		int i64_ok, u64_ok;
		long long i;
	} cases[] = {
		{"12x", 0, 0, 0},          {"", 0, 0, 0},    {" 1", 0, 0, 0},     {"1 ", 0, 0, 0},
		{"+1", 0, 0, 0},           {"-", 0, 0, 0},   {"0x10", 0, 0, 0},   {"1e3", 0, 0, 0},
		{"0", 1, 1, 0},            {"-0", 1, 0, 0},  {"007", 1, 1, 7},    {"9223372036854775807", 1, 1, 9223372036854775807LL},
		{"-9223372036854775808", 1, 0, -9223372036854775807LL - 1},
		{"9223372036854775808", 0, 1, 0}, {"18446744073709551616", 0, 0, 0}, {"--1", 0, 0, 0},
	};
	char ck[128];
	snprintf(ck, sizeof ck, "%s", path_of("state", ""));
	for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
		struct ckpt_save s = small_save(ck, 1, 1, cases[k].text);
		if (ckpt_write(&s, err, sizeof err)) {
			fprintf(stderr, "write: %s\n", err);
			testing_failed++;
			continue;
		}
		struct ckpt *c = open_ok(path_of("state/step_%s", "00000001"));
		if (!c)
			continue;
		long long i = 42;
		unsigned long long u;
		err[0] = 0;
		int ri = ckpt_state_i64(c, "seed", &i, err, sizeof err);
		EXPECT_INT(ri, cases[k].i64_ok ? 0 : -1);
		if (ri) {
			char want[128];
			snprintf(want, sizeof want, "optimizer.safetensors: state seed = '%s' is not", cases[k].text);
			EXPECT_ERR(want);
		} else {
			EXPECT_INT(i, cases[k].i);
		}
		EXPECT_INT(ckpt_state_u64(c, "seed", &u, err, sizeof err), cases[k].u64_ok ? 0 : -1);
		ckpt_close(c);
	}
}

/* A pid that is certainly dead: a child that has exited and been reaped. */
static pid_t dead_pid(void)
{
	pid_t p = fork();
	if (p == 0)
		_exit(0);
	waitpid(p, NULL, 0);
	return p;
}

static void test_keep(void)
{
	char ck[128];
	snprintf(ck, sizeof ck, "%s", path_of("keep", ""));
	char stale[512], live[512], p[600];
	for (long long step = 1; step <= 5; step++) {
		if (step == 4) {
			/* Leftovers of a writer killed mid-save, and of one still writing. */
			snprintf(stale, sizeof stale, "%s/.tmp-step_00000009-%ld", ck, (long)dead_pid());
			mkdir(stale, 0755);
			snprintf(p, sizeof p, "%s/model.safetensors", stale);
			fclose(fopen(p, "w"));
			snprintf(live, sizeof live, "%s/.tmp-step_00000009-%ld", ck, (long)getppid());
			mkdir(live, 0755);
		}
		struct ckpt_save s = small_save(ck, step, 2, "k");
		EXPECT_INT(ckpt_write(&s, err, sizeof err), 0);
	}
	struct stat sb;
	EXPECT(stat(stale, &sb) != 0);
	EXPECT(stat(live, &sb) == 0);
	rmdir(live);
	EXPECT_STR(listing(ck), "step_00000004 step_00000005");

	/* A re-save of the same step replaces it whole, leaving nothing behind. */
	struct ckpt_save s = small_save(ck, 5, 2, "again");
	w_embed[0] = 555;
	EXPECT_INT(ckpt_write(&s, err, sizeof err), 0);
	EXPECT_STR(listing(ck), "step_00000004 step_00000005");
	struct ckpt *c = open_ok(path_of("keep/step_%s", "00000005"));
	if (c) {
		float out[12];
		uint64_t s43[] = {4, 3};
		EXPECT_STR(ckpt_state(c, "seed"), "again");
		EXPECT_INT(hf_read_f32(ckpt_model(c), "model.embed_tokens.weight", 2, s43, out, err, sizeof err), 0);
		EXPECT(out[0] == 555);
		ckpt_close(c);
	}

	/* After a rollback a lower step is saved: it is kept (it was just written) and the newest
	 * others fill the rest of keep. */
	s = small_save(ck, 3, 2, "rollback");
	EXPECT_INT(ckpt_write(&s, err, sizeof err), 0);
	EXPECT_STR(listing(ck), "step_00000003 step_00000005");

	/* keep <= 0 keeps everything. */
	for (long long step = 6; step <= 7; step++) {
		s = small_save(ck, step, 0, "all");
		EXPECT_INT(ckpt_write(&s, err, sizeof err), 0);
	}
	EXPECT_STR(listing(ck), "step_00000003 step_00000005 step_00000006 step_00000007");

	/* Bad requests name the problem. */
	s = small_save(ck, -1, 2, "x");
	EXPECT_INT(ckpt_write(&s, err, sizeof err), -1);
	EXPECT_ERR("step -1 is negative");
	s = small_save(ck, 8, 2, "x");
	struct ckpt_file bad = {"../escape.json", "x", 1};
	s.files = &bad;
	s.n_files = 1;
	EXPECT_INT(ckpt_write(&s, err, sizeof err), -1);
	EXPECT_ERR("extra file 0 ('../escape.json') needs a plain file name");
	s = small_save(ck, 8, 2, "x");
	struct st_kv dup[] = {{"step", "8"}, {"step", "9"}};
	s.state = dup;
	s.n_state = 2;
	EXPECT_INT(ckpt_write(&s, err, sizeof err), -1);
	EXPECT_ERR("state key 'step' given twice");
	s = small_save(ck, 8, 2, "x");
	struct ckpt_tensor twice[2] = {{"a", ST_F32, 1, {1}, w_embed}, {"a", ST_F32, 1, {1}, w_embed}};
	s.model = twice;
	EXPECT_INT(ckpt_write(&s, err, sizeof err), -1);
	EXPECT_ERR("tensor 'a' given twice");
	/* Failed writes leave nothing. */
	EXPECT_STR(listing(ck), "step_00000003 step_00000005 step_00000006 step_00000007");
	s = small_save(path_of("keep/step_00000003/%s", "model.safetensors"), 1, 2, "x");
	EXPECT_INT(ckpt_write(&s, err, sizeof err), -1);
	EXPECT_ERR("model.safetensors");
}

static void truncate_to(const char *p, long size)
{
	EXPECT_INT(truncate(p, size), 0);
}

static void poke(const char *p, long at, char c)
{
	FILE *fp = fopen(p, "r+b");
	fseek(fp, at, SEEK_SET);
	fputc(c, fp);
	fclose(fp);
}

static void test_bad_input(void)
{
	char ck[128];
	snprintf(ck, sizeof ck, "%s", path_of("bad", ""));
	char latest[256];
	EXPECT_INT(ckpt_latest(path_of("bad/%s", "missing"), latest, sizeof latest, err, sizeof err), 0);
	EXPECT_STR(err, "");
	mkdir(ck, 0755);
	EXPECT_INT(ckpt_latest(ck, latest, sizeof latest, err, sizeof err), 0);
	for (long long step = 1; step <= 3; step++) {
		struct ckpt_save s = small_save(ck, step, 0, "b");
		EXPECT_INT(ckpt_write(&s, err, sizeof err), 0);
	}
	/* Not checkpoints: a file named like one, a temp dir, a name with trailing text. */
	fclose(fopen(path_of("bad/%s", "step_00000009"), "w"));
	mkdir(path_of("bad/%s", ".tmp-step_00000010-1"), 0755);
	mkdir(path_of("bad/%s", "step_00000011.old"), 0755);
	EXPECT_INT(symlink("nowhere", path_of("bad/%s", "step_00000012")), 0);
	EXPECT_INT(ckpt_latest(ck, latest, sizeof latest, err, sizeof err), 1);
	EXPECT_STR(latest, path_of("bad/%s", "step_00000003"));

	/* Missing optimizer file: named; the newest is skipped for the next. */
	struct ckpt *c;
	unlink(path_of("bad/step_00000003/%s", "optimizer.safetensors"));
	EXPECT_INT(ckpt_open(path_of("bad/%s", "step_00000003"), &c, err, sizeof err), -1);
	EXPECT(c == NULL);
	EXPECT_ERR("step_00000003/optimizer.safetensors: missing (checkpoint");
	EXPECT_ERR("is damaged or incomplete; resume from another step_* dir)");
	EXPECT_INT(ckpt_latest(ck, latest, sizeof latest, err, sizeof err), 1);
	EXPECT_STR(latest, path_of("bad/%s", "step_00000002"));
	EXPECT_STR(err, "");

	/* Truncated model file. */
	const char *m2 = path_of("bad/step_00000002/%s", "model.safetensors");
	truncate_to(m2, file_size(m2) - 4);
	EXPECT_INT(ckpt_open(path_of("bad/%s", "step_00000002"), &c, err, sizeof err), -1);
	EXPECT_ERR("step_00000002/model.safetensors: ");
	EXPECT_ERR("truncated");
	EXPECT_ERR("resume from another step_* dir");
	EXPECT_INT(ckpt_latest(ck, latest, sizeof latest, err, sizeof err), 1);
	EXPECT_STR(latest, path_of("bad/%s", "step_00000001"));

	/* A corrupted header byte in the last good one: none valid is an error, not a fresh start. */
	const char *o1 = path_of("bad/step_00000001/%s", "optimizer.safetensors");
	poke(o1, 20, '\x01');
	EXPECT_INT(ckpt_open(path_of("bad/%s", "step_00000001"), &c, err, sizeof err), -1);
	EXPECT_ERR("step_00000001/optimizer.safetensors: header JSON at byte");
	EXPECT_INT(ckpt_latest(ck, latest, sizeof latest, err, sizeof err), -1);
	EXPECT_ERR("step_00000003/optimizer.safetensors: missing (and none of the 3 step_* dirs in");
	EXPECT_ERR("is a valid checkpoint; restore one");
}

/* ---- crash safety ---- */

#define CRASH_N (256 * 1024) /* floats per tensor: 4 tensors, 4 MiB a save */

static float *crash_buf[4];

static struct ckpt_save crash_save(const char *ck, long long step)
{
	static struct ckpt_tensor model[2], optim[2];
	static struct st_kv state[1];
	static char stepbuf[32];
	static const char *names[4] = {"model.layers.0.mlp.experts.0.up_proj.weight", "model.layers.0.mlp.experts.1.up_proj.weight",
	                               "model.layers.0.mlp.experts.0.up_proj.weight.exp_avg",
	                               "model.layers.0.mlp.experts.0.up_proj.weight.exp_avg_sq"};
	for (int k = 0; k < 4; k++) {
		for (int i = 0; i < CRASH_N; i++)
			crash_buf[k][i] = (float)step;
		struct ckpt_tensor t = {names[k], ST_F32, 2, {CRASH_N / 512, 512}, crash_buf[k]};
		if (k < 2)
			model[k] = t;
		else
			optim[k - 2] = t;
	}
	snprintf(stepbuf, sizeof stepbuf, "%lld", step);
	state[0] = (struct st_kv){"step", stepbuf};
	return (struct ckpt_save){.dir = ck, .step = step, .keep = 3, .model = model, .n_model = 2, .optim = optim,
	                          .n_optim = 2, .state = state, .n_state = 1};
}

/* Every value of every tensor equals the step the dir is named for. */
static int verify_step_dir(const char *p, long long step, float *buf)
{
	struct ckpt *c;
	if (ckpt_open(p, &c, err, sizeof err)) {
		fprintf(stderr, "crash: %s\n", err);
		return -1;
	}
	uint64_t shape[] = {CRASH_N / 512, 512};
	long long s = -1;
	int bad = ckpt_state_i64(c, "step", &s, err, sizeof err) || s != step;
	for (int k = 0; k < 4 && !bad; k++) {
		struct ckpt_save ref = crash_save("", 0);
		const char *name = k < 2 ? ref.model[k].name : ref.optim[k - 2].name;
		bad = k < 2 ? hf_read_f32(ckpt_model(c), name, 2, shape, buf, err, sizeof err)
		            : ckpt_read_optim(c, name, 2, shape, buf, err, sizeof err);
		for (int i = 0; i < CRASH_N && !bad; i++)
			bad = buf[i] != (float)step;
	}
	ckpt_close(c);
	if (bad)
		fprintf(stderr, "crash: %s does not hold step %lld (%s)\n", p, step, err);
	return bad ? -1 : 0;
}

static int verify_all(const char *ck, float *buf)
{
	DIR *d = opendir(ck);
	struct dirent *e;
	int bad = 0;
	while ((e = readdir(d))) {
		char p[512];
		long long step;
		if (sscanf(e->d_name, "step_%lld", &step) != 1)
			continue;
		snprintf(p, sizeof p, "%s/%s", ck, e->d_name);
		bad |= verify_step_dir(p, step, buf);
	}
	closedir(d);
	return bad;
}

static int count_tmp(const char *ck)
{
	DIR *d = opendir(ck);
	struct dirent *e;
	int n = 0;
	while ((e = readdir(d)))
		n += !strncmp(e->d_name, ".tmp-", 5);
	closedir(d);
	return n;
}

static void test_crash(void)
{
	char ck[128];
	snprintf(ck, sizeof ck, "%s/crash", dir);
	for (int k = 0; k < 4; k++)
		crash_buf[k] = malloc(CRASH_N * sizeof(float));
	float *buf = malloc(CRASH_N * sizeof(float));
	struct ckpt_save s0 = crash_save(ck, 1);
	EXPECT_INT(ckpt_write(&s0, err, sizeof err), 0);
	long long last = 1;
	int torn = 0, kills = 21;
	for (int round = 0; round < kills; round++) {
		pid_t pid = fork();
		if (pid == 0) {
			/* Save from the next step on until killed; every step twice, so kills also
			 * land in the replacement of a committed step dir. */
			for (long long k = 2 * (last + 1); k < 2 * (last + 1000); k++) {
				struct ckpt_save s = crash_save(ck, k / 2);
				if (ckpt_write(&s, err, sizeof err)) {
					fprintf(stderr, "child: %s\n", err);
					_exit(2);
				}
			}
			_exit(0);
		}
		/* 0 .. 60 ms, over a save's duration (5 to 40 ms with fsync on a disk) and not a
		 * multiple of it; the last round runs long enough for several commits, replacements
		 * and prunes whatever the machine's load. */
		struct timespec ts = {0, round == kills - 1 ? 250000000L : (long)round * 3000000L + 370000L * (round % 3)};
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		int status;
		waitpid(pid, &status, 0);
		EXPECT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
		torn += count_tmp(ck) > 0;
		char latest[256];
		EXPECT_INT(ckpt_latest(ck, latest, sizeof latest, err, sizeof err), 1);
		long long step = -1;
		sscanf(strrchr(latest, '/'), "/step_%lld", &step);
		EXPECT(step >= last);
		last = step;
		EXPECT_INT(verify_all(ck, buf), 0);
	}
	/* The next save cleans up after the dead. */
	struct ckpt_save s = crash_save(ck, last + 1);
	EXPECT_INT(ckpt_write(&s, err, sizeof err), 0);
	EXPECT_INT(count_tmp(ck), 0);
	EXPECT_INT(verify_all(ck, buf), 0);
	printf("crash: %d kills, %d mid-save, reached step %lld\n", kills, torn, last);
	EXPECT(last > 1);
	for (int k = 0; k < 4; k++)
		free(crash_buf[k]);
	free(buf);
}

int main(void)
{
	if (testing_tmpdir(dir, sizeof dir, "ckpt"))
		return 1;
	test_round_trip();
	test_state_parse();
	test_keep();
	test_bad_input();
	test_crash();
	testing_rmdir(dir);
	return testing_report();
}
