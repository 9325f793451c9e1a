/* fuzz_spec.c - libFuzzer harness for every parser of outside input in the front end.
 *
 * The first byte picks what the rest of the input is:
 *   0  a spec file (YAML), run through parse, check, lower, plan and both reports
 *   1  a Hugging Face config.json, imported by a spec through model.hf_config
 *   2  a --set argument, applied to a valid tiny spec
 *   3  a cluster file, named by a valid tiny spec
 * Nothing may crash, leak, read out of bounds or hang; ASan and UBSan watch. Built with
 * clang -fsanitize=fuzzer; replay.c runs the same function over files with any compiler.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "diag.h"
#include "lower.h"
#include "parse.h"
#include "plan.h"
#include "report.h"
#include "resolved.h"

static const char tiny_spec[] =
	"model: {hidden_size: 64, num_layers: 2, num_heads: 4, num_kv_heads: 2, vocab_size: 256, max_seq_len: 128}\n"
	"moe: {num_experts: 8, top_k: 2, moe_intermediate_size: 32}\n"
	"parallel: {nodes: 1, gpus_per_node: 4, ep: 4}\n"
	"train: {seq_len: 64, micro_batch: 2}\n";

static FILE *devnull;
static char dir[64];

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		abort();
	fputs(text, f);
	fclose(f);
}

static void compile(const char *spec_text, const char *const *sets, int nsets)
{
	struct parse_options opt = {.sets = sets, .nsets = nsets};
	struct spec s;
	if (!spec_parse_text(&s, "fuzz.yaml", spec_text, &opt) && !spec_check(&s)) {
		struct ir *ir = lower(&s);
		struct plan *p = plan_build(&s, ir);
		spec_print(devnull, &s);
		spec_print_json(devnull, &s);
		report_plan_text(devnull, &s, ir, p, 8);
		report_plan_json(devnull, &s, ir, p);
		report_verdict(&s, p);
		plan_free(p);
		ir_free(ir);
	}
	spec_free(&s);
	diag_free_sources();
	diag_reset_counts();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!devnull) {
		devnull = fopen("/dev/null", "w");
		snprintf(dir, sizeof dir, "/tmp/moec_fuzz_%d", (int)getpid());
		char cmd[96];
		snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
		if (system(cmd))
			abort();
		diag_set_stream(devnull);
		diag_set_error_limit(0);
	}
	if (size < 1)
		return 0;
	int mode = data[0] % 4;
	char *text = malloc(size);
	memcpy(text, data + 1, size - 1);
	text[size - 1] = 0;
	char path[128], spec[sizeof tiny_spec + 256];
	switch (mode) {
	case 0:
		compile(text, NULL, 0);
		break;
	case 1:
		snprintf(path, sizeof path, "%s/config.json", dir);
		write_file(path, text);
		snprintf(spec, sizeof spec, "model: {hf_config: %s}\n", path);
		compile(spec, NULL, 0);
		break;
	case 2: {
		const char *sets[] = {text};
		compile(tiny_spec, sets, 1);
		break;
	}
	case 3:
		snprintf(path, sizeof path, "%s/cluster.yaml", dir);
		write_file(path, text);
		snprintf(spec, sizeof spec,
		         "model: {hidden_size: 64, num_layers: 2, num_heads: 4, num_kv_heads: 2, vocab_size: 256, max_seq_len: 128}\n"
		         "moe: {num_experts: 8, top_k: 2, moe_intermediate_size: 32}\n"
		         "parallel: {nodes: 2, gpus_per_node: 4, ep: 4, cluster: %s}\n",
		         path);
		compile(spec, NULL, 0);
		break;
	}
	free(text);
	return 0;
}
