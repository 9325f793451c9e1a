/* golden_compare.c - compare a trainer's --dump with the golden vectors Hugging Face
 * transformers produced (tests/golden/make_golden.py).
 *
 *   golden_compare DUMP GOLDEN LR [--no-logits] [--tol T] [--grads-only]
 *
 * Every golden tensor named loss, ce_loss, aux_loss, logits, grad.* or adamw.* must be in
 * the dump with the same element count, within its tolerance:
 *   loss terms, logits, gradients  max |moec - hf| <= TOL * max |hf| over the tensor
 *   weights after AdamW            max |moec - hf| <= 0.05 * LR
 * Why the second: the first AdamW step moves a weight by lr * g / (|g| + eps), about
 * lr * sign(g). Where a gradient is within float rounding of zero its sign is noise, so a
 * bound relative to the weights would be meaningless; a fraction of the step is not.
 * Prints the worst tensor of each kind; exits 1 on any failure. --no-logits: the dump of a
 * multi-rank run holds rank 0's rows only, so logits are not compared. --tol replaces TOL
 * (a bf16 step against an fp32 one); --grads-only skips the weights after AdamW, whose
 * first-step change is lr * sign(g): with bf16 noise on small gradients no bound below
 * 2 lr would hold.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

#define TOL 2e-5

struct worst {
	const char *kind;
	double err;
	char name[256];
};

static void note(struct worst *w, const char *name, double err)
{
	if (err >= w->err) {
		w->err = err;
		snprintf(w->name, sizeof w->name, "%s", name);
	}
}

static int prefixed(const char *s, const char *p)
{
	return !strncmp(s, p, strlen(p));
}

int main(int argc, char **argv)
{
	int logits = 1, adamw = 1;
	double tol = TOL;
	for (int i = 4; i < argc; i++) {
		if (!strcmp(argv[i], "--no-logits"))
			logits = 0;
		else if (!strcmp(argv[i], "--grads-only"))
			adamw = 0;
		else if (!strcmp(argv[i], "--tol") && i + 1 < argc)
			tol = atof(argv[++i]);
		else
			argc = 0;
	}
	if (argc < 4 || !(tol > 0)) {
		fprintf(stderr, "usage: golden_compare DUMP GOLDEN LR [--no-logits] [--tol T] [--grads-only]\n");
		return 2;
	}
	char err[1024];
	struct st_file *dump, *gold;
	if (st_open(argv[1], &dump, err, sizeof err) || st_open(argv[2], &gold, err, sizeof err)) {
		fprintf(stderr, "FAIL: %s\n", err);
		return 1;
	}
	double lr = atof(argv[3]);
	struct worst kinds[3] = {{"loss/logits"}, {"gradients"}, {"after AdamW"}};
	int failures = 0, compared = 0;
	for (size_t i = 0; i < st_count(gold); i++) {
		const struct st_tensor *g = st_tensor_at(gold, i);
		int kind = prefixed(g->name, "grad.") ? 1 : prefixed(g->name, "adamw.") ? 2 : 0;
		if (kind == 2 && !adamw)
			continue;
		if (!kind && strcmp(g->name, "loss") && strcmp(g->name, "ce_loss") && strcmp(g->name, "aux_loss") &&
		    (strcmp(g->name, "logits") || !logits))
			continue; /* inputs, the script's debugging tensors, and logits when asked */
		const struct st_tensor *d = st_find(dump, g->name);
		if (!d || d->numel != g->numel || d->dtype != ST_F32 || g->dtype != ST_F32) {
			printf("FAIL: %s: %s\n", g->name, d ? "element count or dtype differs" : "not in the dump");
			failures++;
			continue;
		}
		const float *a = d->data, *b = g->data;
		double max_ref = 0, max_err = 0;
		for (uint64_t j = 0; j < g->numel; j++) {
			double e = fabs((double)a[j] - (double)b[j]);
			max_err = e > max_err || isnan(e) ? e : max_err;
			max_ref = fabs(b[j]) > max_ref ? fabs(b[j]) : max_ref;
		}
		double bound = kind == 2 ? 0.05 * lr : tol * max_ref;
		double score = kind == 2 ? max_err / lr : max_err / (max_ref > 0 ? max_ref : 1);
		note(&kinds[kind], g->name, score);
		compared++;
		if (!(max_err <= bound)) {
			printf("FAIL: %s: max |moec - hf| = %.3g, allowed %.3g (max |hf| %.3g)\n", g->name, max_err, bound, max_ref);
			failures++;
		}
	}
	for (int k = 0; k < 3; k++)
		printf("%-12s worst %s %.3g (%s)\n", kinds[k].kind, k == 2 ? "|error| / lr" : "|error| / max|hf|", kinds[k].err,
		       kinds[k].name);
	printf("%s: %d tensors compared, %d failed (tolerance %g)\n", failures || compared < 4 ? "FAIL" : "PASS", compared,
	       failures, tol);
	st_close(dump);
	st_close(gold);
	return failures || compared < 4;
}
