/* test_data.c - runtime/data.c: every format written here and read back, auto detection,
 * each corruption rejected with its message, packing against a hand-computed example,
 * shuffle determinism, dp sharding, cursor save/restore. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data.h"
#include "testing.h"

static char dir[64];

static const char *path_of(const char *name)
{
	static char buf[8][256];
	static int next;
	char *p = buf[next++ % 8];
	snprintf(p, 256, "%s/%s", dir, name);
	return p;
}

static void write_bytes(const char *name, const void *p, size_t n)
{
	FILE *f = fopen(path_of(name), "wb");
	if (!f)
		abort();
	fwrite(p, 1, n, f);
	fclose(f);
}

static void write_raw(const char *name, const uint32_t *t, size_t n) { write_bytes(name, t, n * 4); }

/* An llm.c shard: 256 int32 header, then uint16 (version 1) or uint32 (version 2) tokens. */
static void write_llmc(const char *name, int32_t magic, int32_t version, int32_t count, const uint32_t *t, size_t n)
{
	int es = version == 1 ? 2 : 4;
	size_t size = 1024 + n * es;
	uint8_t *b = calloc(1, size);
	int32_t h[3] = {magic, version, count};
	memcpy(b, h, sizeof h);
	for (size_t i = 0; i < n; i++) {
		if (es == 2) {
			uint16_t v = (uint16_t)t[i];
			memcpy(b + 1024 + 2 * i, &v, 2);
		} else {
			memcpy(b + 1024 + 4 * i, &t[i], 4);
		}
	}
	write_bytes(name, b, size);
	free(b);
}

/* A Megatron dataset PREFIX.idx/.bin with uint16 tokens (code 8), one sequence per doc.
 * ptr_bump moves the last pointer, for the out-of-range test. */
static void write_megatron(const char *prefix, const uint32_t *const *seqs, const int *lens, int nseq,
                           int64_t ptr_bump, uint64_t version, const char *magic)
{
	char name[128];
	snprintf(name, sizeof name, "%s.bin", prefix);
	FILE *f = fopen(path_of(name), "wb");
	int64_t ptrs[16], off = 0;
	for (int s = 0; s < nseq; s++) {
		ptrs[s] = off;
		for (int i = 0; i < lens[s]; i++) {
			uint16_t v = (uint16_t)seqs[s][i];
			fwrite(&v, 2, 1, f);
		}
		off += 2 * lens[s];
	}
	fclose(f);
	ptrs[nseq - 1] += ptr_bump;
	snprintf(name, sizeof name, "%s.idx", prefix);
	f = fopen(path_of(name), "wb");
	fwrite(magic, 1, 9, f);
	fwrite(&version, 8, 1, f);
	uint8_t code = 8;
	fwrite(&code, 1, 1, f);
	uint64_t n = (uint64_t)nseq, nd = (uint64_t)nseq + 1;
	fwrite(&n, 8, 1, f);
	fwrite(&nd, 8, 1, f);
	for (int s = 0; s < nseq; s++) {
		int32_t l = lens[s];
		fwrite(&l, 4, 1, f);
	}
	fwrite(ptrs, 8, (size_t)nseq, f);
	for (int64_t i = 0; i <= nseq; i++)
		fwrite(&i, 8, 1, f);
	fclose(f);
}

static const char MM[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', 0, 0};

static struct data *open1(const char *name, enum data_format f, int64_t vocab, int64_t eod, char *err)
{
	const char *paths[] = {path_of(name)};
	return data_open(paths, 1, f, vocab, eod, err, 512);
}

static void test_formats(void)
{
	char err[512] = "";
	uint32_t toks[] = {5, 6, 0, 7, 8, 9, 0, 10};
	write_raw("r.tok", toks, 8);
	struct data *d = open1("r.tok", DATA_AUTO, 100, 0, err);
	EXPECT(d != NULL);
	if (d) {
		EXPECT_INT(data_file_format(d, 0), DATA_RAW);
		EXPECT_INT(data_num_tokens(d), 8);
		EXPECT_INT(data_num_docs(d), 3); /* [5 6 0] [7 8 9 0] [10] */
		EXPECT_INT(data_doc_len(d, 1), 4);
		int32_t out[4];
		data_doc_read(d, 1, 0, 4, out);
		EXPECT_INT(out[0], 7);
		EXPECT_INT(out[3], 0);
		data_close(d);
	}
	d = open1("r.tok", DATA_RAW, 100, -1, err);
	EXPECT(d && data_num_docs(d) == 1);
	data_close(d);

	for (int v = 1; v <= 2; v++) {
		const char *name = v == 1 ? "s1.bin" : "s2.bin";
		write_llmc(name, 20240520, v, 8, toks, 8);
		d = open1(name, DATA_AUTO, 100, 0, err);
		EXPECT(d != NULL);
		if (d) {
			EXPECT_INT(data_file_format(d, 0), DATA_LLMC);
			EXPECT_INT(data_num_tokens(d), 8);
			EXPECT_INT(data_num_docs(d), 3);
			int32_t out[1];
			data_doc_read(d, 2, 0, 1, out);
			EXPECT_INT(out[0], 10);
			data_close(d);
		}
	}

	const uint32_t a[] = {1, 2, 3}, b[] = {4, 5}, c[] = {60000};
	const uint32_t *seqs[] = {a, b, c};
	int lens[] = {3, 2, 1};
	write_megatron("m", seqs, lens, 3, 0, 1, MM);
	/* By prefix, by .idx and by .bin: all auto-detected as Megatron. */
	const char *names[] = {"m", "m.idx", "m.bin"};
	for (int i = 0; i < 3; i++) {
		d = open1(names[i], DATA_AUTO, 65536, -1, err);
		EXPECT(d != NULL);
		if (!d) {
			fprintf(stderr, "%s\n", err);
			continue;
		}
		EXPECT_INT(data_file_format(d, 0), DATA_MEGATRON);
		EXPECT_INT(data_num_docs(d), 3);
		EXPECT_INT(data_num_tokens(d), 6);
		int32_t out[2];
		data_doc_read(d, 1, 0, 2, out);
		EXPECT_INT(out[0], 4);
		EXPECT_INT(out[1], 5);
		data_doc_read(d, 2, 0, 1, out);
		EXPECT_INT(out[0], 60000);
		data_close(d);
	}

	/* Several files of mixed formats make one dataset. */
	const char *paths[] = {path_of("m"), path_of("s1.bin"), path_of("r.tok")};
	d = data_open(paths, 3, DATA_AUTO, 65536, 0, err, sizeof err);
	EXPECT(d && data_num_docs(d) == 3 + 3 + 3 && data_num_tokens(d) == 6 + 8 + 8);
	data_close(d);

	enum data_format f;
	EXPECT(data_format_parse("llmc", &f) == 0 && f == DATA_LLMC);
	EXPECT(data_format_parse("bogus", &f) == -1);
}

static void expect_err(struct data *d, const char *err, const char *want)
{
	EXPECT(d == NULL);
	data_close(d);
	EXPECT_STR(err, want);
}

static void test_corruption(void)
{
	char err[512], want[512];
	uint32_t toks[] = {5, 6, 7, 8};

	write_llmc("bad.bin", 20240521, 1, 4, toks, 4);
	snprintf(want, sizeof want, "%s: wrong magic 20240521, an llm.c shard starts with 20240520", path_of("bad.bin"));
	expect_err(open1("bad.bin", DATA_LLMC, 100, -1, err), err, want);

	write_llmc("bad.bin", 20240520, 3, 4, toks, 4);
	snprintf(want, sizeof want, "%s: unsupported llm.c shard version 3 (1 = uint16 tokens, 2 = uint32 tokens)",
	         path_of("bad.bin"));
	expect_err(open1("bad.bin", DATA_AUTO, 100, -1, err), err, want);

	write_llmc("bad.bin", 20240520, 1, 5, toks, 4);
	snprintf(want, sizeof want,
	         "%s: truncated: the header declares 5 tokens (1034 bytes) but the file has 1032 bytes", path_of("bad.bin"));
	expect_err(open1("bad.bin", DATA_AUTO, 100, -1, err), err, want);

	write_bytes("bad.bin", toks, 12); /* forced llmc: shorter than the header */
	snprintf(want, sizeof want, "%s: truncated: 12 bytes, the llm.c header alone is 1024", path_of("bad.bin"));
	expect_err(open1("bad.bin", DATA_LLMC, 100, -1, err), err, want);

	write_bytes("bad.raw", toks, 7);
	snprintf(want, sizeof want, "%s: size 7 is not a multiple of 4 (raw uint32 tokens)", path_of("bad.raw"));
	expect_err(open1("bad.raw", DATA_AUTO, 100, -1, err), err, want);

	/* The message the brief asks for: file, position, token, vocab and the likely cause. */
	uint32_t big[1240];
	for (int i = 0; i < 1240; i++)
		big[i] = (uint32_t)i % 100;
	big[1234] = 70000;
	write_raw("x.bin", big, 1240);
	snprintf(want, sizeof want,
	         "%s: token 70000 at position 1234 is >= vocab_size 65536 (was the data tokenized for another model?)",
	         path_of("x.bin"));
	expect_err(open1("x.bin", DATA_AUTO, 65536, -1, err), err, want);

	write_llmc("big.bin", 20240520, 2, 4, (uint32_t[]){1, 2, 3, 99}, 4);
	snprintf(want, sizeof want,
	         "%s: token 99 at position 3 is >= vocab_size 50 (was the data tokenized for another model?)",
	         path_of("big.bin"));
	expect_err(open1("big.bin", DATA_AUTO, 50, -1, err), err, want);

	const uint32_t a[] = {1, 2, 3}, b[] = {4, 5};
	const uint32_t *seqs[] = {a, b};
	int lens[] = {3, 2};
	write_megatron("mb", seqs, lens, 2, 0, 1, "MMIDIDY\0\0");
	snprintf(want, sizeof want, "%s: wrong magic, a Megatron index starts with \"MMIDIDX\\0\\0\"", path_of("mb.idx"));
	expect_err(open1("mb", DATA_MEGATRON, 100, -1, err), err, want);

	write_megatron("mb", seqs, lens, 2, 0, 2, MM);
	snprintf(want, sizeof want, "%s: unsupported Megatron index version 2 (only 1)", path_of("mb.idx"));
	expect_err(open1("mb.idx", DATA_AUTO, 100, -1, err), err, want);

	write_megatron("mb", seqs, lens, 2, 2, 1, MM);
	snprintf(want, sizeof want, "%s: sequence 1 at byte 8 with 2 tokens runs past the end of %s (10 bytes)",
	         path_of("mb.idx"), path_of("mb.bin"));
	expect_err(open1("mb", DATA_AUTO, 100, -1, err), err, want);

	write_megatron("mb", seqs, lens, 2, 0, 1, MM);
	snprintf(want, sizeof want, "%s: token 5 at position 4 is >= vocab_size 5 (was the data tokenized for another model?)",
	         path_of("mb.bin"));
	expect_err(open1("mb", DATA_AUTO, 5, -1, err), err, want);

	/* A truncated index: cut the good one short. */
	FILE *f = fopen(path_of("mb.idx"), "rb");
	uint8_t buf[256];
	size_t n = fread(buf, 1, sizeof buf, f);
	fclose(f);
	write_bytes("mb.idx", buf, n - 8);
	snprintf(want, sizeof want, "%s: truncated: 2 sequences and 3 documents need more than the %zu bytes present",
	         path_of("mb.idx"), n - 8);
	expect_err(open1("mb", DATA_AUTO, 100, -1, err), err, want);
	write_bytes("mb.idx", buf, 20);
	snprintf(want, sizeof want, "%s: truncated: 20 bytes, the Megatron index header alone is 34", path_of("mb.idx"));
	expect_err(open1("mb", DATA_MEGATRON, 100, -1, err), err, want);
	/* A float dtype cannot hold token ids. */
	buf[17] = 6;
	write_bytes("mb.idx", buf, n);
	snprintf(want, sizeof want,
	         "%s: dtype code 6 is not an integer token type (1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 8 uint16)",
	         path_of("mb.idx"));
	expect_err(open1("mb", DATA_MEGATRON, 100, -1, err), err, want);

	snprintf(want, sizeof want, "%s: cannot open: No such file or directory", path_of("nope.bin"));
	expect_err(open1("nope.bin", DATA_AUTO, 100, -1, err), err, want);
}

static void test_packing(void)
{
	/* Docs (eod 0): [1 2 0] [3 4 5 0] [6 0] [7 8 9 10 0]; S = 4, B = 2, no shuffle.
	 * Row k = stream[4k, 4k + 5): row 0 = 1 2 0 3 4, row 1 = 4 5 0 6 0. */
	uint32_t toks[] = {1, 2, 0, 3, 4, 5, 0, 6, 0, 7, 8, 9, 10, 0};
	write_raw("p.tok", toks, 14);
	char err[512];
	struct data *d = open1("p.tok", DATA_RAW, 100, 0, err);
	struct data_batcher_config c = {.seq_len = 4, .micro_batch = 2, .dp_size = 1, .seed = 1, .shuffle = 0};
	struct data_batcher *b = data_batcher_new(d, &c, err, sizeof err);
	EXPECT(b != NULL);
	if (!b)
		return;
	EXPECT_INT(data_batcher_rows_per_epoch(b), 2); /* (14 - 1) / 4 = 3, rounded down to B * dp */
	int32_t in[8], lb[8], ps[8], di[8];
	struct data_cursor at = data_batcher_next(b, in, lb, ps, di);
	EXPECT(at.epoch == 0 && at.row == 0);
	const int32_t w_in[] = {1, 2, 0, 3, 4, 5, 0, 6}, w_lb[] = {2, 0, -100, 4, 5, 0, -100, 0},
	              w_ps[] = {0, 1, 2, 0, 0, 1, 2, 0}, w_di[] = {0, 0, 0, 1, 2, 2, 2, 3};
	for (int i = 0; i < 8; i++) {
		EXPECT_INT(in[i], w_in[i]);
		EXPECT_INT(lb[i], w_lb[i]);
		EXPECT_INT(ps[i], w_ps[i]);
		EXPECT_INT(di[i], w_di[i]);
	}
	/* The epoch is used up: the next batch starts epoch 1 (same order, no shuffle). */
	at = data_batcher_next(b, in, lb, ps, di);
	EXPECT(at.epoch == 1 && at.row == 0);
	EXPECT_INT(in[0], 1);
	data_batcher_free(b);

	/* Too little data for one global batch. */
	c.micro_batch = 4;
	EXPECT(data_batcher_new(d, &c, err, sizeof err) == NULL);
	EXPECT_STR(err, "the data has 14 tokens, too few for one global batch of 4 rows of 4 tokens (micro_batch 4 x dp 1)");
	data_close(d);
}

/* Documents of varied length with distinct tokens, eod 0. */
static struct data *make_big(char *err)
{
	uint32_t t[4000];
	int n = 0;
	for (int doc = 0; n < 3990; doc++) {
		int len = 3 + (doc * 7) % 23;
		for (int i = 0; i < len - 1 && n < 3999; i++) {
			t[n] = 1 + (uint32_t)(n % 999);
			n++;
		}
		t[n++] = 0;
	}
	write_raw("big.tok", t, (size_t)n);
	return open1("big.tok", DATA_RAW, 1000, 0, err);
}

enum { S = 16 };

static void batch(struct data_batcher *b, int B, int32_t *in, int32_t *lb, int32_t *ps)
{
	int32_t di[64 * S];
	data_batcher_next(b, in, lb, ps, di);
	(void)B;
}

static void test_shuffle_shard_cursor(void)
{
	char err[512];
	struct data *d = make_big(err);
	EXPECT(d != NULL);
	if (!d)
		return;
	struct data_batcher_config c = {.seq_len = S, .micro_batch = 4, .dp_size = 1, .seed = 42, .shuffle = 1};
	struct data_batcher *a = data_batcher_new(d, &c, err, sizeof err), *a2 = data_batcher_new(d, &c, err, sizeof err);
	c.seed = 43;
	struct data_batcher *o = data_batcher_new(d, &c, err, sizeof err);
	int32_t in1[4 * S], lb1[4 * S], ps1[4 * S], in2[4 * S], lb2[4 * S], ps2[4 * S];
	/* Same seed, same batches; another seed, another order. */
	batch(a, 4, in1, lb1, ps1);
	batch(a2, 4, in2, lb2, ps2);
	EXPECT(!memcmp(in1, in2, sizeof in1) && !memcmp(lb1, lb2, sizeof lb1) && !memcmp(ps1, ps2, sizeof ps1));
	batch(o, 4, in2, lb2, ps2);
	EXPECT(memcmp(in1, in2, sizeof in1) != 0);
	/* Epochs are shuffled differently: the first batch of epoch 1 differs from epoch 0's. */
	uint64_t steps = data_batcher_rows_per_epoch(a2) / 4;
	for (uint64_t s = 1; s < steps; s++)
		batch(a2, 4, in2, lb2, ps2);
	struct data_cursor at = data_batcher_next(a2, in2, lb2, ps2, (int32_t[4 * S]){0});
	EXPECT(at.epoch == 1 && at.row == 0);
	EXPECT(memcmp(in1, in2, sizeof in1) != 0);
	data_batcher_free(o);

	/* dp = 2, B = 2: rank r's rows are rows r and r + 2 of the dp = 1, B = 4 batch, and the
	 * two ranks together cover it exactly, step after step. */
	c.seed = 42;
	c.micro_batch = 2;
	c.dp_size = 2;
	struct data_batcher *r0, *r1;
	c.dp_rank = 0;
	r0 = data_batcher_new(d, &c, err, sizeof err);
	c.dp_rank = 1;
	r1 = data_batcher_new(d, &c, err, sizeof err);
	data_batcher_free(a);
	c.micro_batch = 4, c.dp_size = 1, c.dp_rank = 0;
	a = data_batcher_new(d, &c, err, sizeof err);
	int ok = 1;
	for (int step = 0; step < 3 * (int)steps; step++) {
		int32_t x0[2 * S], x1[2 * S], l0[2 * S], l1[2 * S], p0[2 * S], p1[2 * S];
		batch(a, 4, in1, lb1, ps1);
		batch(r0, 2, x0, l0, p0);
		batch(r1, 2, x1, l1, p1);
		for (int r = 0; r < 4; r++) {
			int32_t *x = r % 2 ? x1 : x0, *l = r % 2 ? l1 : l0, *p = r % 2 ? p1 : p0;
			int row = r / 2;
			ok &= !memcmp(in1 + r * S, x + row * S, S * 4) && !memcmp(lb1 + r * S, l + row * S, S * 4) &&
			      !memcmp(ps1 + r * S, p + row * S, S * 4);
		}
	}
	EXPECT(ok);
	EXPECT(data_batcher_cursor(r0).row == data_batcher_cursor(r1).row);
	data_batcher_free(r0);
	data_batcher_free(r1);

	/* Save the cursor mid-epoch, run on; a fresh batcher seeked there gives the same batches. */
	data_batcher_free(a);
	a = data_batcher_new(d, &c, err, sizeof err);
	for (uint64_t s = 0; s < steps + 3; s++)
		batch(a, 4, in1, lb1, ps1);
	struct data_cursor saved = data_batcher_cursor(a);
	EXPECT_INT(saved.epoch, 1);
	struct data_batcher *resumed = data_batcher_new(d, &c, err, sizeof err);
	EXPECT(data_batcher_seek(resumed, saved, err, sizeof err) == 0);
	ok = 1;
	for (uint64_t s = 0; s < steps + 2; s++) {
		batch(a, 4, in1, lb1, ps1);
		batch(resumed, 4, in2, lb2, ps2);
		ok &= !memcmp(in1, in2, sizeof in1) && !memcmp(lb1, lb2, sizeof lb1) && !memcmp(ps1, ps2, sizeof ps1);
	}
	EXPECT(ok);
	/* A cursor off the step grid is refused rather than silently shifting the data. */
	EXPECT(data_batcher_seek(resumed, (struct data_cursor){0, 3}, err, sizeof err) == -1);
	EXPECT(strstr(err, "data cursor row 3 does not fit this data") != NULL);
	data_batcher_free(resumed);
	data_batcher_free(a);
	data_batcher_free(a2);
	data_close(d);
}

int main(void)
{
	snprintf(dir, sizeof dir, "/tmp/moec_test_data_XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	test_formats();
	test_corruption();
	test_packing();
	test_shuffle_shard_cursor();
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd))
		fprintf(stderr, "could not remove %s\n", dir);
	return testing_report();
}
