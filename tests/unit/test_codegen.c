/* test_codegen.c - the code generation pieces that need no GPU and no compiler run:
 * SHA-256, the ptxas report parser, float literals and instance names, the spec-wide
 * constant dictionary, the lint-result cache format, and "not supported yet" for the
 * families this kernel set does not cover. (tests/build runs whole builds.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "diag.h"
#include "kernels.h"
#include "jit.h"
#include "lower.h"
#include "parse.h"
#include "plan.h"
#include "sha256.h"
#include "sigcache.h"
#include "testing.h"

static void hex_of(const char *text, size_t repeat, char *out)
{
	struct sha256 h;
	sha256_init(&h);
	for (size_t i = 0; i < repeat; i++)
		sha256_update_str(&h, text);
	sha256_final_hex(&h, out);
}

static void test_sha256(void)
{
	char hex[SHA256_HEX_LEN + 1];
	hex_of("", 1, hex);
	EXPECT_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	hex_of("abc", 1, hex);
	EXPECT_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	hex_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1, hex);
	EXPECT_STR(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	hex_of("a", 1000000, hex); /* one byte at a time: every buffering path */
	EXPECT_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

static const char log_simple[] =
	"ptxas info    : 0 bytes gmem\n"
	"ptxas info    : Compiling entry function 'rmsnorm_fwd_bf16_dim2048' for 'sm_90a'\n"
	"ptxas info    : Function properties for rmsnorm_fwd_bf16_dim2048\n"
	"ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
	"ptxas info    : Used 57 registers, used 1 barriers, 1024 bytes smem, 400 bytes cmem[0]\n"
	"ptxas info    : Compile time = 20.080 ms\n";

/* A kernel calling a non-inlined function that spills, older "Used" wording. */
static const char log_spills[] =
	"ptxas info    : Function properties for helper_fn\n"
	"ptxas         .     40 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads\n"
	"ptxas info    : Compiling entry function 'attention_bwd_x' for 'sm_80'\n"
	"ptxas info    : Function properties for attention_bwd_x\n"
	"ptxas         .     32 bytes stack frame, 28 bytes spill stores, 40 bytes spill loads\n"
	"ptxas info    : Used 255 registers, 16 bytes smem, 388 bytes cmem[0]\n";

static void test_ptxas(void)
{
	struct jit_result r;
	EXPECT_INT(jit_parse_ptxas(log_simple, "rmsnorm_fwd_bf16_dim2048", &r), 0);
	EXPECT_INT(r.registers, 57);
	EXPECT_INT(r.barriers, 1);
	EXPECT_INT(r.smem, 1024);
	EXPECT_INT(r.stack, 0);
	EXPECT_INT(r.spill_stores + r.spill_loads, 0);
	EXPECT_INT(jit_parse_ptxas(log_spills, "attention_bwd_x", &r), 0);
	EXPECT_INT(r.registers, 255);
	EXPECT_INT(r.barriers, 0);
	EXPECT_INT(r.smem, 16);
	EXPECT_INT(r.stack, 32);
	EXPECT_INT(r.spill_stores, 36);
	EXPECT_INT(r.spill_loads, 52);
	EXPECT_INT(jit_parse_ptxas(log_simple, "other_kernel", &r), -1);
	EXPECT_INT(jit_parse_ptxas("", "x", &r), -1);
}

static void dict_add(struct kernel_dict *d, const char *name, const char *value)
{
	snprintf(d->v[d->n].name, sizeof d->v[d->n].name, "%s", name);
	snprintf(d->v[d->n].value, sizeof d->v[d->n].value, "%s", value);
	d->n++;
}

static void test_names(void)
{
	char buf[64];
	kernels_float_literal(1e-6, buf, sizeof buf);
	EXPECT_STR(buf, "1e-06f");
	kernels_float_literal(1000000, buf, sizeof buf);
	EXPECT_STR(buf, "1000000.0f");
	kernels_float_literal(1.0, buf, sizeof buf);
	EXPECT_STR(buf, "1.0f");
	kernels_float_literal(2.5, buf, sizeof buf);
	EXPECT_STR(buf, "2.5f");

	char name[KERNEL_NAME_MAX];
	struct kernel_dict d = {0};
	dict_add(&d, "DIM", "2048");
	dict_add(&d, "EPS", "1e-06f");
	dict_add(&d, "ACT_BF16", "1");
	kernels_name_instance("rmsnorm_fwd", &d, name, sizeof name);
	EXPECT_STR(name, "rmsnorm_fwd_bf16_dim2048");
	memset(&d, 0, sizeof d);
	dict_add(&d, "E_LOCAL", "16");
	dict_add(&d, "H", "2048");
	dict_add(&d, "I", "768");
	dict_add(&d, "ACT_BF16", "1");
	kernels_name_instance("moe_gate_up_fwd", &d, name, sizeof name);
	EXPECT_STR(name, "moe_gate_up_fwd_bf16_e16_h2048_i768");
	memset(&d, 0, sizeof d);
	dict_add(&d, "NH", "32");
	dict_add(&d, "NKV", "4");
	dict_add(&d, "HD", "128");
	dict_add(&d, "ACT_BF16", "0");
	dict_add(&d, "BLOCK_M", "16");
	dict_add(&d, "BLOCK_N", "32");
	kernels_name_instance("attention_fwd", &d, name, sizeof name);
	EXPECT_STR(name, "attention_fwd_f32_nh32_nkv4_hd128_bm16_bn32");
	memset(&d, 0, sizeof d);
	dict_add(&d, "E", "128");
	dict_add(&d, "E_LOCAL", "16");
	dict_add(&d, "FOO_BAR", "3");
	kernels_name_instance("x", &d, name, sizeof name);
	EXPECT_STR(name, "x_e128_el16_foo_bar3");
	memset(&d, 0, sizeof d);
	kernels_name_instance("adamw", &d, name, sizeof name);
	EXPECT_STR(name, "adamw");
}

struct job {
	struct spec spec;
	struct ir *ir;
	struct plan *plan;
};

static int job_load(struct job *j, const char *path, const char *const *sets, int nsets)
{
	struct parse_options o = {.sets = sets, .nsets = nsets};
	memset(j, 0, sizeof *j);
	if (spec_parse(&j->spec, path, &o) || spec_check(&j->spec))
		return -1;
	j->ir = lower(&j->spec);
	j->plan = j->ir ? plan_build(&j->spec, j->ir) : NULL;
	return j->plan ? 0 : -1;
}

static void job_free(struct job *j)
{
	if (j->plan)
		plan_free(j->plan);
	if (j->ir)
		ir_free(j->ir);
	spec_free(&j->spec);
}

static const char *dict_value(const struct job *j, const char *name)
{
	static struct kernel_dict d;
	kernels_fill_dict(&j->spec, j->ir, j->plan, &d);
	const char *v = kernels_dict_get(&d, name);
	return v ? v : "(unset)";
}

static void test_dict(void)
{
	struct job j;
	EXPECT_INT(job_load(&j, "examples/tiny_qwen3_moe.yaml", NULL, 0), 0);
	EXPECT_STR(dict_value(&j, "ACT_BF16"), "0");
	EXPECT_STR(dict_value(&j, "H"), "128");
	EXPECT_STR(dict_value(&j, "NH"), "4");
	EXPECT_STR(dict_value(&j, "NKV"), "2");
	EXPECT_STR(dict_value(&j, "EPS"), "1e-06f");
	EXPECT_STR(dict_value(&j, "ROPE_THETA"), "10000.0f");
	EXPECT_STR(dict_value(&j, "NORM_TOPK"), "1");
	EXPECT_STR(dict_value(&j, "CAPACITY"), "0");
	job_free(&j);

	/* 1.25 * 1024 tokens * top-2 / 8 experts = 320 rows per expert from this rank */
	const char *cap[] = {"moe.capacity_factor=1.25", "moe.drop_policy=late_tokens"};
	EXPECT_INT(job_load(&j, "examples/tiny_qwen3_moe.yaml", cap, 2), 0);
	EXPECT_STR(dict_value(&j, "CAPACITY"), "320");
	EXPECT_STR(dict_value(&j, "DROP_POLICY"), "2");
	job_free(&j);

	/* tp 2: each rank holds 64/2 query heads and 4/2 kv heads; ep 8: 16 experts */
	EXPECT_INT(job_load(&j, "examples/qwen3_235b_a22b.yaml", NULL, 0), 0);
	EXPECT_STR(dict_value(&j, "ACT_BF16"), "1");
	EXPECT_STR(dict_value(&j, "NH"), "32");
	EXPECT_STR(dict_value(&j, "NKV"), "2");
	EXPECT_STR(dict_value(&j, "E"), "128");
	EXPECT_STR(dict_value(&j, "E_LOCAL"), "16");
	EXPECT_STR(dict_value(&j, "I"), "1536");
	EXPECT_STR(dict_value(&j, "ROPE_THETA"), "1000000.0f");
	job_free(&j);
	diag_free_sources();
}

static void test_sig_format(void)
{
	struct kernel_sig k = {.name = "add_bf16", .nparams = 2, .file = "/k/add.cu", .line = 12, .col = 5};
	snprintf(k.params[0].type, sizeof k.params[0].type, "act_t *");
	snprintf(k.params[0].name, sizeof k.params[0].name, "y");
	snprintf(k.params[1].type, sizeof k.params[1].type, "int");
	struct kernel_sig t = k, k2, t2;
	snprintf(t.name, sizeof t.name, "add_bf16_cpu");
	char *text = sigcache_format(&k, &t);
	EXPECT(text != NULL);
	EXPECT_INT(sigcache_parse(text, &k2, &t2), 0);
	EXPECT_STR(k2.name, "add_bf16");
	EXPECT_STR(t2.name, "add_bf16_cpu");
	EXPECT_INT(k2.nparams, 2);
	EXPECT_STR(k2.params[0].type, "act_t *");
	EXPECT_STR(k2.params[0].name, "y");
	EXPECT_STR(k2.params[1].name, "");
	EXPECT_INT(k2.line, 12);
	free(text);
	EXPECT_INT(sigcache_parse("kernel\tonly\n", &k2, &t2), -1);
	EXPECT_INT(sigcache_parse("garbage", &k2, &t2), -1);
}

/* MLA and GPT-OSS have no kernels yet: the build stops with "not supported yet". */
static void test_unsupported(void)
{
	const char *specs[] = {"examples/deepseek_v3.yaml", "models/gpt_oss_20b.yaml"};
	for (int i = 0; i < 2; i++) {
		struct job j;
		struct kernel_set ks;
		char *out = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&out, &len);
		EXPECT_INT(job_load(&j, specs[i], NULL, 0), 0);
		diag_set_stream(f);
		diag_reset_counts();
		EXPECT(kernels_select(&j.spec, j.ir, j.plan, kernels_default_dir(), NULL, &ks) > 0);
		diag_set_stream(NULL);
		fclose(f);
		EXPECT(out && strstr(out, "not supported yet"));
		EXPECT_INT(ks.n, 0);
		kernels_free(&ks);
		free(out);
		job_free(&j);
	}
	diag_free_sources();
}

int main(void)
{
	test_sha256();
	test_ptxas();
	test_names();
	test_dict();
	test_sig_format();
	test_unsupported();
	return testing_report();
}
