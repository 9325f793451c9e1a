/* fuzz_safetensors.c - libFuzzer harness for runtime/safetensors, the parser of checkpoint
 * files that may come from anywhere.
 *
 * The first byte picks what the rest of the input is:
 *   0  a safetensors file, parsed from memory; every tensor handed out is read end to end
 *   1  a model.safetensors.index.json, whose entries are resolved against a directory
 *      holding one valid shard (a.safetensors), so shard opening and lookup run too
 * Nothing may crash, leak, read out of bounds or hang; ASan and UBSan watch. Built with
 * clang -fsanitize=fuzzer; replay.c runs the same function over files with any compiler.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "safetensors.h"

static char dir[64];
static volatile uint8_t sink;

/* Touch every byte so ASan sees any pointer past the buffer. */
static void touch(const void *p, uint64_t n)
{
	const uint8_t *b = p;
	uint8_t x = 0;
	for (uint64_t i = 0; i < n; i++)
		x ^= b[i];
	sink = x;
}

static void setup(void)
{
	snprintf(dir, sizeof dir, "/tmp/moec_fuzz_st_%d", (int)getpid());
	char cmd[96];
	snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
	if (system(cmd))
		abort();
	float v[2] = {1, 2};
	uint64_t s[] = {2};
	struct st_write_tensor t = {"a", ST_F32, 1, s, v};
	char path[128], err[512];
	snprintf(path, sizeof path, "%s/a.safetensors", dir);
	if (st_write(path, &t, 1, NULL, 0, err, sizeof err)) {
		fprintf(stderr, "%s\n", err);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dir[0])
		setup();
	if (size < 1)
		return 0;
	char err[1024];
	/* A private copy, so reads past the input's end are caught at exactly that end. */
	uint8_t *buf = malloc(size - 1 ? size - 1 : 1);
	memcpy(buf, data + 1, size - 1);
	if (data[0] % 2 == 0) {
		struct st_file *f;
		if (!st_open_memory("fuzz.safetensors", buf, size - 1, &f, err, sizeof err)) {
			for (size_t i = 0; i < st_count(f); i++) {
				const struct st_tensor *t = st_tensor_at(f, i);
				if (st_find(f, t->name) != t)
					abort();
				if (t->nbytes != t->numel * st_dtype_size(t->dtype))
					abort();
				touch(t->data, t->nbytes);
			}
			for (size_t i = 0; i < st_metadata_count(f); i++) {
				const char *k, *v;
				st_metadata_at(f, i, &k, &v);
				if (st_metadata(f, k) != v)
					abort();
			}
			st_close(f);
		} else if (!err[0]) {
			abort(); /* every rejection explains itself */
		}
	} else {
		struct st_index *x;
		if (!st_index_open_memory("fuzz.index.json", dir, buf, size - 1, &x, err, sizeof err)) {
			for (size_t i = 0; i < st_index_count(x); i++) {
				const char *name, *file;
				st_index_at(x, i, &name, &file);
				if (strcmp(st_index_shard(x, name), file))
					abort();
				const struct st_tensor *t = st_index_find(x, name, err, sizeof err);
				if (t)
					touch(t->data, t->nbytes);
			}
			st_index_close(x);
		} else if (!err[0]) {
			abort();
		}
	}
	free(buf);
	return 0;
}
