/* fuzz_data.c - libFuzzer harness for runtime/data.c, the token shard reader.
 *
 * The first byte picks what the rest of the input is (its value also picks eod and format):
 *   % 3 == 0  a Megatron .idx, beside a small fixed .bin (so offsets can land in or past it)
 *   % 3 == 1  an llm.c shard
 *   % 3 == 2  a raw uint32 token file
 * Whatever opens is then batched a few steps, with a cursor seek, so packing runs on
 * whatever shapes the fuzzer finds. Nothing may crash, leak or read out of bounds; ASan and
 * UBSan watch. replay.c runs the same function over files with any compiler.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data.h"

static char dir[64];

static void write_file(const char *path, const uint8_t *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		abort();
	if (n)
		fwrite(p, 1, n, f);
	fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dir[0]) {
		snprintf(dir, sizeof dir, "/tmp/moec_fuzz_data_%d", (int)getpid());
		char cmd[96];
		snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
		if (system(cmd))
			abort();
		/* The fixed .bin: 64 uint16 tokens 0..63, so sequences can point anywhere in 128 bytes. */
		uint16_t bin[64];
		for (int i = 0; i < 64; i++)
			bin[i] = (uint16_t)i;
		char path[128];
		snprintf(path, sizeof path, "%s/m.bin", dir);
		write_file(path, (const uint8_t *)bin, sizeof bin);
	}
	if (size < 1)
		return 0;
	int mode = data[0] % 3;
	/* Exercise both eod splitting and whole-file documents, and auto vs forced format. */
	int64_t eod = (data[0] >> 2) & 1 ? 0 : -1;
	int force = (data[0] >> 3) & 1;
	char path[128];
	enum data_format fmt;
	switch (mode) {
	case 0:
		snprintf(path, sizeof path, "%s/m.idx", dir);
		fmt = DATA_MEGATRON;
		break;
	case 1:
		snprintf(path, sizeof path, "%s/s.shard", dir);
		fmt = DATA_LLMC;
		break;
	default:
		snprintf(path, sizeof path, "%s/r.tok", dir);
		fmt = DATA_RAW;
		break;
	}
	write_file(path, data + 1, size - 1);
	const char *paths[] = {path};
	char err[512];
	/* A small vocab so the token check rejects as well as accepts. */
	struct data *d = data_open(paths, 1, force ? fmt : DATA_AUTO, 60000, eod, err, sizeof err);
	if (!d)
		return 0;
	struct data_batcher_config c = {.seq_len = 1 + data[0] % 7, .micro_batch = 2, .dp_size = 2,
	                                .dp_rank = (data[0] >> 4) & 1, .seed = data[0], .shuffle = 1};
	struct data_batcher *b = data_batcher_new(d, &c, err, sizeof err);
	if (b) {
		int32_t in[2 * 8], lb[2 * 8], ps[2 * 8], di[2 * 8];
		for (int i = 0; i < 5; i++)
			data_batcher_next(b, in, lb, ps, di);
		struct data_cursor at = data_batcher_cursor(b);
		at.row += (uint64_t)(data[0] >> 5);
		if (data_batcher_seek(b, at, err, sizeof err) == 0)
			data_batcher_next(b, in, lb, ps, di);
		data_batcher_free(b);
	}
	data_close(d);
	return 0;
}
