/* make_shard.c - write an llm.c token shard with any header, for the bad-data tests.
 *
 *   make_shard OUT MAGIC VERSION TOKEN...   (VERSION 1: uint16 tokens, else uint32)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: make_shard OUT MAGIC VERSION TOKEN...\n");
		return 2;
	}
	int32_t header[256] = {0};
	header[0] = (int32_t)atol(argv[2]);
	header[1] = (int32_t)atol(argv[3]);
	header[2] = argc - 4;
	FILE *f = fopen(argv[1], "wb");
	if (!f || fwrite(header, sizeof header, 1, f) != 1)
		return 1;
	for (int i = 4; i < argc; i++) {
		uint32_t t = (uint32_t)strtoul(argv[i], NULL, 10);
		uint16_t s = (uint16_t)t;
		if (header[1] == 1 ? fwrite(&s, 2, 1, f) != 1 : fwrite(&t, 4, 1, f) != 1)
			return 1;
	}
	return fclose(f) ? 1 : 0;
}
