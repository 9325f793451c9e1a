/* unigram_entropy.c - the entropy (nats) of the token distribution of a data set: the loss
 * of the best model that ignores context. A trained model must go below it.
 *
 *   unigram_entropy VOCAB EOD FILE...
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "data.h"

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: unigram_entropy VOCAB EOD FILE...\n");
		return 2;
	}
	long vocab = atol(argv[1]), eod = atol(argv[2]);
	char err[1024];
	struct data *d = data_open((const char *const *)argv + 3, argc - 3, DATA_AUTO, vocab, eod, err, sizeof err);
	if (!d) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	double *count = calloc((size_t)vocab, sizeof *count), total = 0;
	int32_t buf[4096];
	for (int64_t doc = 0; doc < data_num_docs(d); doc++)
		for (int64_t off = 0, len = data_doc_len(d, doc); off < len; off += 4096) {
			int64_t n = len - off < 4096 ? len - off : 4096;
			data_doc_read(d, doc, off, n, buf);
			for (int64_t i = 0; i < n; i++)
				count[buf[i]]++;
			total += (double)n;
		}
	double h = 0;
	for (long t = 0; t < vocab; t++)
		if (count[t] > 0)
			h -= count[t] / total * log(count[t] / total);
	printf("%.6f\n", h);
	free(count);
	data_close(d);
	return 0;
}
