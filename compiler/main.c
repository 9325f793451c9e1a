/* main.c - the moec command line, and the one place that knows the order of the passes:
 *
 *   parse  (parse.c)   spec YAML + presets + HF config + cluster + --set -> struct spec
 *   check  (check.c)   rules between fields, derived values
 *   lower  (lower.c)   spec -> IR: layers, every tensor's shape, dtype, owner, trainability
 *   plan   (plan.c)    rank layout, parameter counts, per-rank memory, FLOPs, communication
 *   report (report.c)  the plan as text or JSON
 *
 * and for `moec build`, after plan:
 *   kernels (kernels.c)  the kernel instances one training step needs, their constants
 *   emit    (emit.c)     DIR/gen: instance sources, twins, model.h; plan.txt
 *   lint    (lint.c)     libclang over every instance: template errors, signatures
 *                        (sigcache.c reuses clean results); emit writes launch.h from them
 *   jit     (jit.c)      NVRTC -> DIR/cubin, through the kernel cache (cache.c)
 *           (emit.c)     manifest.json
 *           (hfconfig.c) config.json, the model for Hugging Face transformers
 *
 * and `moec export` (export.c): a trainer's checkpoint as a Hugging Face model directory.
 *
 * Exit codes: 0 ok, 1 the spec (or a file it names) is wrong or the job does not fit,
 * 2 usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cache.h"
#include "check.h"
#include "diag.h"
#include "emit.h"
#include "export.h"
#include "files.h"
#include "hfconfig.h"
#include "inspect.h"
#include "jit.h"
#include "kernels.h"
#include "link.h"
#include "lower.h"
#include "parse.h"
#include "plan.h"
#include "report.h"
#include "resolved.h"
#include "schema.h"
#include "sigcache.h"
#include "step.h"

#define EXIT_SPEC 1
#define EXIT_USAGE 2

static const char usage_main[] =
	"usage: moec <command> [options]\n"
	"\n"
	"moec compiles a Mixture-of-Experts training job (model + parallel layout + recipe,\n"
	"one YAML spec) into a trainer specialized to it.\n"
	"\n"
	"commands:\n"
	"  check SPEC   validate the spec and prove the job fits the GPUs' memory\n"
	"  plan SPEC    print the resolved spec, rank layout, parameter counts, per-rank\n"
	"               memory, FLOPs and communication volume\n"
	"  build SPEC   check, then generate and compile the job's kernels into a build dir\n"
	"  inspect DIR  a build's kernels: constants, registers, smem, spills, source, PTX, SASS\n"
	"  export BUILD CKPT -o OUT\n"
	"               a trainer's checkpoint as a Hugging Face model directory\n"
	"  help [CMD]   show help for a command\n"
	"\n"
	"options:\n"
	"  -h, --help   show help\n"
	"  --version    print the version\n"
	"\n"
	"Run 'moec CMD --help' for a command's options. Spec reference: docs/spec.md.\n";

static const char usage_check[] =
	"usage: moec check SPEC [--set KEY=VALUE]... [--cluster FILE] [--print]\n"
	"       moec check --keys\n"
	"\n"
	"Parse SPEC, check every rule, lower the model and plan its memory: exits 0 when the\n"
	"job is valid and fits, 1 with file:line:col errors otherwise.\n"
	"\n"
	"  --set KEY=VALUE  override a value (e.g. --set moe.top_k=4, --set parallel.ep=8)\n"
	"  --cluster FILE   cluster file (NVLink domain, bandwidths); replaces parallel.cluster\n"
	"  --print          print the resolved spec with where each value came from\n"
	"  --keys           list every spec key with its type, default and meaning\n";

static const char usage_plan[] =
	"usage: moec plan SPEC [--set KEY=VALUE]... [--cluster FILE] [--json] [--ranks N]\n"
	"\n"
	"Print (a) the resolved spec and where each value came from, (b) the rank layout and\n"
	"groups, (c) parameter counts, (d) per-rank memory with the verdict against the GPU,\n"
	"(e) FLOPs and communication bytes per step. Exits 0 whether or not the job fits\n"
	"(the verdict says); `moec check` fails when it does not.\n"
	"\n"
	"  --set KEY=VALUE  override a value\n"
	"  --cluster FILE   cluster file; replaces parallel.cluster\n"
	"  --json           machine-readable output\n"
	"  --ranks N        list at most N ranks in the layout (default 64; 0 = all)\n";

static const char usage_build[] =
	"usage: moec build SPEC [-o DIR] [--arch ARCH] [-j N] [--kernels-only] [--set KEY=VALUE]...\n"
	"                  [--cluster FILE] [--kernel-const TEMPLATE:NAME=VALUE]...\n"
	"\n"
	"Check SPEC and prove the job fits (as `moec check`), select the kernels one training\n"
	"step needs, write them specialized to the spec (DIR/gen/: one .cu per kernel, its CPU\n"
	"twin, model.h, launch.h), lint them with libclang, and compile each with NVRTC to\n"
	"DIR/cubin/<kernel>.<arch>.cubin (PTX in DIR/ptx/). Also writes DIR/plan.txt,\n"
	"DIR/manifest.json and, for Qwen3-MoE and Mixtral, DIR/config.json (the model for\n"
	"Hugging Face transformers; `moec export` puts it beside a checkpoint's weights).\n"
	"Compiled kernels are cached by content, so a rebuild compiles only\n"
	"what changed. Then generates the training step (DIR/gen/model.c) and links the\n"
	"trainer DIR/train with the machine's C compiler (DIR/Makefile; CC and\n"
	"MOEC_TRAIN_CFLAGS are honoured). Fails on a template error, a kernel that spills\n"
	"registers (unless train.allow_spills), or a spec feature without kernels yet; a spec\n"
	"the step code does not cover yet gets its kernels and a note saying why no trainer.\n"
	"\n"
	"  -o DIR           output directory (default: build/<spec file name>)\n"
	"  --arch ARCH      GPU architecture: sm_90a (default), sm_80, sm_100a (also sm_86,\n"
	"                   sm_89, sm_90, sm_100, sm_120)\n"
	"  -j N             compile N kernels at once (default: the number of CPUs)\n"
	"  --kernels-only   stop after the kernels: no model.c, no trainer\n"
	"  --kernel-const TEMPLATE:NAME=VALUE\n"
	"                   tuning: constant NAME (a tile size, STAGES; one the template's\n"
	"                   `moec: constants` line lists) of every template matching the glob\n"
	"                   TEMPLATE gets VALUE instead of its default, e.g. 'moe_*:STAGES=4';\n"
	"                   the instance names say so (_st4). Repeatable\n"
	"  --set KEY=VALUE  override a value\n"
	"  --cluster FILE   cluster file; replaces parallel.cluster\n"
	"\n"
	"environment:\n"
	"  MOEC_CACHE_DIR   kernel cache (default $XDG_CACHE_HOME/moec or ~/.cache/moec)\n"
	"  MOEC_KERNELS_DIR kernel templates (default: the source tree's kernels/)\n"
	"  MOEC_DEBUG       1: stage timings, cache hit or miss per kernel; 2: also print every\n"
	"                   generated source on stderr\n";

static const char usage_inspect[] =
	"usage: moec inspect DIR [KERNEL] [--src | --twin | --ptx | --sass]\n"
	"\n"
	"Show what `moec build` made in DIR. Without KERNEL: one row per kernel with its\n"
	"registers, static shared memory, stack frame, spills, constants and launch geometry.\n"
	"KERNEL is an instance name or any part of one that names a single kernel\n"
	"(e.g. router_fwd); alone it prints the kernel's details.\n"
	"\n"
	"  --src            the generated CUDA source (DIR/gen/KERNEL.cu)\n"
	"  --twin           the generated CPU twin (DIR/gen/cpu/KERNEL.c)\n"
	"  --ptx            the PTX NVRTC produced\n"
	"  --sass           the SASS of the cubin (needs cuobjdump or nvdisasm)\n";

static const char usage_export[] =
	"usage: moec export BUILD CKPT -o OUT [--dtype fp32|bf16] [--max-shard-size SIZE] [--force]\n"
	"\n"
	"Write a checkpoint of BUILD's trainer as a Hugging Face model directory: OUT/config.json\n"
	"(BUILD's, which `moec build` writes for Qwen3-MoE and Mixtral specs) and\n"
	"OUT/model.safetensors (every weight of the checkpoint, by its HF name), which\n"
	"transformers' from_pretrained loads and `train --init-from OUT` reads back. CKPT is a\n"
	"step_XXXXXXXX directory, or the trainer's checkpoint directory (then its newest complete\n"
	"checkpoint). The checkpoint must come from BUILD's spec: its spec_hash must equal\n"
	"BUILD/manifest.json's.\n"
	"\n"
	"  -o DIR           output directory (created; its config.json and weight files are\n"
	"                   replaced)\n"
	"  --dtype D        fp32 (default: the checkpoint's weights bit for bit) or bf16 (rounded\n"
	"                   to nearest even; torch_dtype bfloat16)\n"
	"  --max-shard-size SIZE  split the weights into model-0000K-of-0000N.safetensors files\n"
	"                   of at most SIZE (5GB, 500MB, 2GiB, bytes; default 5GB, as transformers)\n"
	"                   with a model.safetensors.index.json; one file when they fit\n"
	"  --force          export even when the checkpoint's spec_hash is not BUILD's\n";

enum command { CMD_CHECK, CMD_PLAN, CMD_BUILD };

struct args {
	const char *spec;
	const char *sets[64];
	int nsets;
	const char *cluster;
	int json, print, keys, ranks;
	const char *out;  /* build: -o */
	const char *arch; /* build: --arch */
	int jobs;         /* build: -j */
	int kernels_only; /* build: --kernels-only */
	struct kernel_user_consts kconsts; /* build: --kernel-const */
};

static int usage_error(const char *usage, const char *fmt, const char *arg)
{
	fprintf(stderr, "moec: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n\n%s", usage);
	return EXIT_USAGE;
}

/* build's own options (-o, --arch, -j); returns 1 when arg was one, -2 on a usage error
 * (printed), 0 when arg is not a build option. */
static int parse_build_option(int argc, char **argv, int *i, struct args *a)
{
	const char *arg = argv[*i], *v = NULL;
	int which = 0; /* 1 -o, 2 --arch, 3 -j */
	if (!strcmp(arg, "-o") || !strcmp(arg, "--output"))
		which = 1;
	else if (!strcmp(arg, "--arch"))
		which = 2;
	else if (!strcmp(arg, "-j") || !strcmp(arg, "--jobs"))
		which = 3;
	else if (!strncmp(arg, "--arch=", 7))
		which = 2, v = arg + 7;
	else if (!strncmp(arg, "-j", 2) && arg[2] >= '0' && arg[2] <= '9')
		which = 3, v = arg + 2;
	else if (!strncmp(arg, "-o", 2) && arg[2])
		which = 1, v = arg + 2;
	if (!which && !strcmp(arg, "--kernels-only")) {
		a->kernels_only = 1;
		return 1;
	}
	if (!which && (!strcmp(arg, "--kernel-const") || !strncmp(arg, "--kernel-const=", 15))) {
		if (arg[14] == '=')
			v = arg + 15;
		else if (*i + 1 < argc)
			v = argv[++*i];
		else
			return usage_error(usage_build, "%s needs a value", arg), -2;
		char err[256];
		if (kernels_parse_user_const(v, &a->kconsts, err, sizeof err))
			return usage_error(usage_build, "%s", err), -2;
		return 1;
	}
	if (!which)
		return 0;
	if (!v) {
		if (*i + 1 >= argc)
			return usage_error(usage_build, "%s needs a value", arg), -2;
		v = argv[++*i];
	}
	if (which == 1) {
		a->out = v;
	} else if (which == 2) {
		if (!jit_arch_valid(v))
			return usage_error(usage_build, "unknown --arch '%s': use sm_80, sm_90a or sm_100a", v), -2;
		a->arch = v;
	} else {
		char *end;
		long n = strtol(v, &end, 10);
		if (*end || n < 1 || n > 256)
			return usage_error(usage_build, "-j takes a count from 1 to 256, got '%s'", v), -2;
		a->jobs = (int)n;
	}
	return 1;
}

/* Parse a command's options; returns -1 to go on, or an exit code. */
static int parse_args(int argc, char **argv, const char *usage, enum command cmd, struct args *a)
{
	int is_plan = cmd == CMD_PLAN;
	memset(a, 0, sizeof *a);
	a->ranks = 64;
	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i];
		int b = cmd == CMD_BUILD ? parse_build_option(argc, argv, &i, a) : 0;
		if (b < 0)
			return EXIT_USAGE;
		if (b > 0)
			continue;
		if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
			fputs(usage, stdout);
			return 0;
		} else if (!strcmp(arg, "--set") || !strcmp(arg, "--cluster") || !strcmp(arg, "--ranks")) {
			if (i + 1 >= argc)
				return usage_error(usage, "%s needs a value", arg);
			const char *v = argv[++i];
			if (!strcmp(arg, "--set")) {
				if (a->nsets == (int)(sizeof a->sets / sizeof a->sets[0]))
					return usage_error(usage, "too many --set options (%s)", v);
				a->sets[a->nsets++] = v;
			} else if (!strcmp(arg, "--cluster")) {
				a->cluster = v;
			} else {
				char *end;
				long n = strtol(v, &end, 10);
				if (!is_plan || *end || n < 0)
					return usage_error(usage, "--ranks takes a count, got '%s'", v);
				a->ranks = (int)n;
			}
		} else if (!strncmp(arg, "--set=", 6)) {
			if (a->nsets < (int)(sizeof a->sets / sizeof a->sets[0]))
				a->sets[a->nsets++] = arg + 6;
		} else if (is_plan && !strcmp(arg, "--json")) {
			a->json = 1;
		} else if (cmd == CMD_CHECK && !strcmp(arg, "--print")) {
			a->print = 1;
		} else if (cmd == CMD_CHECK && !strcmp(arg, "--keys")) {
			a->keys = 1;
		} else if (arg[0] == '-' && arg[1]) {
			return usage_error(usage, "unknown option '%s'", arg);
		} else if (a->spec) {
			return usage_error(usage, "one spec at a time (got '%s' too)", arg);
		} else {
			a->spec = arg;
		}
	}
	if (!a->spec && !a->keys)
		return usage_error(usage, "%s", "missing SPEC");
	return -1;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* MOEC_DEBUG=1 prints per-stage timings on stderr. */
static int debug_level(void)
{
	const char *d = getenv("MOEC_DEBUG");
	return d ? atoi(d) : 0;
}

static void stage_done(const char *name, double *t)
{
	double t1 = now();
	if (debug_level() >= 1)
		fprintf(stderr, "moec: %-6s %8.3f ms\n", name, 1e3 * (t1 - *t));
	*t = t1;
}

/* The front half of every command: parse, check, lower, plan. */
struct job {
	struct spec spec;
	struct ir *ir;
	struct plan *plan;
};

static int job_compile(struct job *j, const struct args *a)
{
	struct parse_options opt = {.sets = a->sets, .nsets = a->nsets, .cluster = a->cluster};
	double t = now();
	memset(j, 0, sizeof *j);
	if (spec_parse(&j->spec, a->spec, &opt))
		return EXIT_SPEC;
	stage_done("parse", &t);
	if (spec_check(&j->spec))
		return EXIT_SPEC;
	stage_done("check", &t);
	j->ir = lower(&j->spec);
	stage_done("lower", &t);
	if (!j->ir) {
		fprintf(stderr, "moec: out of memory lowering %s\n", a->spec);
		return EXIT_SPEC;
	}
	j->plan = plan_build(&j->spec, j->ir);
	stage_done("plan", &t);
	if (!j->plan) /* check.c has already rejected impossible layouts */
		return report_verdict(&j->spec, NULL), EXIT_SPEC;
	return 0;
}

static void job_free(struct job *j)
{
	if (j->plan)
		plan_free(j->plan);
	if (j->ir)
		ir_free(j->ir);
	spec_free(&j->spec);
	diag_free_sources();
}

static void print_keys(void)
{
	char names[256];
	static const char *const types[] = {"int", "number", "bool", "string", "enum", "int list", "string list"};
	for (int i = 0; i < schema_nfields; i++) {
		const struct field *f = &schema_fields[i];
		if (f->type == FIELD_ENUM)
			schema_enum_list(f->enum_names, names, sizeof names);
		printf("%-34s %-11s default %-10s %s", f->path, types[f->type], f->def ? f->def : "-", f->help);
		if (f->type == FIELD_ENUM)
			printf(" (%s)", names);
		if (f->aliases)
			printf(" [also: %s]", f->aliases);
		putchar('\n');
	}
}

static int cmd_check(int argc, char **argv)
{
	struct args a;
	int rc = parse_args(argc, argv, usage_check, CMD_CHECK, &a);
	if (rc >= 0)
		return rc;
	if (a.keys) {
		print_keys();
		return 0;
	}
	struct job j;
	rc = job_compile(&j, &a);
	if (!rc) {
		if (a.print)
			spec_print(stdout, &j.spec);
		rc = report_verdict(&j.spec, j.plan) ? 0 : EXIT_SPEC;
		if (!rc)
			printf("%s: ok (%d warning%s)\n", a.spec, diag_warning_count(), diag_warning_count() == 1 ? "" : "s");
	}
	job_free(&j);
	return rc;
}

static int cmd_plan(int argc, char **argv)
{
	struct args a;
	int rc = parse_args(argc, argv, usage_plan, CMD_PLAN, &a);
	if (rc >= 0)
		return rc;
	struct job j;
	rc = job_compile(&j, &a);
	if (!rc) {
		if (a.json) {
			fputs("{\n  \"spec\": ", stdout);
			spec_print_json(stdout, &j.spec);
			fputs(",\n  \"plan\": ", stdout);
			report_plan_json(stdout, &j.spec, j.ir, j.plan);
			fputs("\n}\n", stdout);
		} else {
			printf("== resolved spec: %s (hash %016llx)\n", a.spec, (unsigned long long)j.spec.hash);
			spec_print(stdout, &j.spec);
			putchar('\n');
			report_plan_text(stdout, &j.spec, j.ir, j.plan, a.ranks);
		}
	}
	job_free(&j);
	return rc;
}

/* build's default output: build/<spec file name without .yaml> */
static void build_default_out(const char *spec, char *buf, size_t n)
{
	const char *base = strrchr(spec, '/');
	base = base ? base + 1 : spec;
	size_t len = strcspn(base, ".");
	snprintf(buf, n, "build/%.*s", (int)(len ? len : strlen(base)), base);
}

static void build_poll_jit(void *run)
{
	jit_poll(run);
}

/* The passes after plan: kernels, emit, lint, jit, and the manifest. */
/* Passes 5c and 8: gen/model.c and DIR/train, or a note saying why this spec gets none yet. */
static int build_trainer(const struct emit_context *ec, const struct kernel_set *ks, int jobs, double *t)
{
	const char *why = step_unsupported(ec->spec, ec->ir, ec->plan);
	if (why) {
		link_remove_trainer(ec->dir);
		printf("%s: no trainer yet: %s\n", ec->dir, why);
		return 0;
	}
	double t0 = now();
	if (step_write_model_c(ec, ks))
		return 1;
	stage_done("step", t);
	if (link_trainer(ec, ks, jobs))
		return 1;
	stage_done("link", t);
	printf("%s/train: the trainer, linked in %.2f s\n", ec->dir, now() - t0);
	return 0;
}

static int build_run(struct job *j, const struct args *a, const char *out)
{
	struct kernel_set ks;
	struct cache cache;
	struct kernel_sig *sigs = NULL, *twin_sigs = NULL;
	struct jit_result *res = NULL;
	char nvrtc[32], cuda[32];
	int rc = EXIT_SPEC, debug = debug_level();
	double t = now(), t0 = t;
	struct emit_context ec = {.dir = out, .spec_path = a->spec, .spec = &j->spec, .ir = j->ir, .plan = j->plan,
				  .arch = a->arch ? a->arch : "sm_90a", .debug = debug};

	if (kernels_select(&j->spec, j->ir, j->plan, kernels_default_dir(), &a->kconsts, &ks))
		goto out_kernels;
	stage_done("kernels", &t);
	int err = file_make_dirs(out);
	if (err) {
		fprintf(stderr, "moec: error: cannot create %s: %s\n", out, strerror(err));
		goto out_kernels;
	}
	/* A failed build must not leave an older build's manifest describing the new gen/. */
	char manifest[4200];
	snprintf(manifest, sizeof manifest, "%s/manifest.json", out);
	unlink(manifest);
	if (emit_compose_instances(&ec, &ks) || emit_write_sources(&ec, &ks))
		goto out_kernels;
	stage_done("emit", &t);
	if (cache_open(&cache))
		goto out_kernels;
	sigs = calloc((size_t)ks.n + 1, sizeof *sigs);
	twin_sigs = calloc((size_t)ks.n + 1, sizeof *twin_sigs);
	res = calloc((size_t)ks.n + 1, sizeof *res);
	if (!sigs || !twin_sigs || !res) {
		fprintf(stderr, "moec: error: out of memory\n");
		goto out_free;
	}
	/* jit's worker processes compile while this one lints; a lint error stops them. The
	 * "lint" timing below therefore overlaps the compiles, and "jit" is the wait after. */
	struct jit_options jo = {.dir = out, .arch = ec.arch, .jobs = a->jobs, .allow_spills = j->spec.train.allow_spills,
				 .debug = debug, .progress_line = isatty(2) && !debug};
	struct jit_run *run = jit_start(&ks, &jo, &cache, res);
	if (!run) {
		fprintf(stderr, "moec: error: out of memory\n");
		goto out_free;
	}
	if (sigcache_lint_all(&ks, out, &cache, sigs, twin_sigs, debug, build_poll_jit, run) ||
	    emit_write_launch(&ec, &ks, sigs, twin_sigs)) {
		jit_finish(run, true);
		goto out_free;
	}
	stage_done("lint", &t);
	int jit_errors = jit_finish(run, false);
	stage_done("jit", &t);
	if (jit_errors)
		goto out_free;
	jit_nvrtc_version(nvrtc, sizeof nvrtc);
	jit_cuda_version(cuda, sizeof cuda);
	if (emit_write_manifest(&ec, &ks, res, nvrtc, cuda, cache.dir) || hfconfig_write_build(out, &j->spec, j->ir))
		goto out_free;
	int hits = 0;
	for (int i = 0; i < ks.n; i++)
		hits += res[i].cache_hit;
	printf("%s: %d kernels for %s (%d compiled, %d from the cache) in %.2f s\n", out, ks.n, ec.arch, ks.n - hits, hits, now() - t0);
	if (!a->kernels_only && build_trainer(&ec, &ks, a->jobs, &t))
		goto out_free;
	rc = 0;
out_free:
	free(res);
	free(twin_sigs);
	free(sigs);
out_kernels:
	kernels_free(&ks);
	return rc;
}

static int cmd_build(int argc, char **argv)
{
	struct args a;
	char out[4096];
	int rc = parse_args(argc, argv, usage_build, CMD_BUILD, &a);
	if (rc >= 0)
		return rc;
	if (a.out)
		snprintf(out, sizeof out, "%s", a.out);
	else
		build_default_out(a.spec, out, sizeof out);
	struct job j;
	rc = job_compile(&j, &a);
	if (!rc && !report_verdict(&j.spec, j.plan))
		rc = EXIT_SPEC;
	if (!rc)
		rc = build_run(&j, &a, out);
	job_free(&j);
	return rc;
}

static int cmd_inspect(int argc, char **argv)
{
	const char *dir = NULL, *kernel = NULL;
	enum inspect_what what = INSPECT_TABLE;
	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i];
		if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
			fputs(usage_inspect, stdout);
			return 0;
		} else if (!strcmp(arg, "--src")) {
			what = INSPECT_SRC;
		} else if (!strcmp(arg, "--twin")) {
			what = INSPECT_TWIN;
		} else if (!strcmp(arg, "--ptx")) {
			what = INSPECT_PTX;
		} else if (!strcmp(arg, "--sass")) {
			what = INSPECT_SASS;
		} else if (arg[0] == '-' && arg[1]) {
			return usage_error(usage_inspect, "unknown option '%s'", arg);
		} else if (!dir) {
			dir = arg;
		} else if (!kernel) {
			kernel = arg;
		} else {
			return usage_error(usage_inspect, "one kernel at a time (got '%s' too)", arg);
		}
	}
	if (!dir)
		return usage_error(usage_inspect, "%s", "missing DIR");
	if (what != INSPECT_TABLE && !kernel)
		return usage_error(usage_inspect, "%s", "--src, --twin, --ptx and --sass need a KERNEL");
	return inspect_build(dir, kernel, kernel && what == INSPECT_TABLE ? INSPECT_DETAILS : what);
}

/* export's value options: -o DIR, --dtype D (also -oDIR, --output, --dtype=D). Returns 1
 * when argv[*i] was one, 0 when not, -2 after a usage error. */
static int parse_export_option(int argc, char **argv, int *i, struct export_options *o)
{
	const char *arg = argv[*i], *v = NULL;
	if (!strcmp(arg, "--max-shard-size") || !strncmp(arg, "--max-shard-size=", 17)) {
		v = arg[16] == '=' ? arg + 17 : *i + 1 < argc ? argv[++*i] : NULL;
		if (!v || export_parse_size(v, &o->max_shard_bytes))
			return usage_error(usage_export, "--max-shard-size takes a size such as 5GB, 500MB or 2GiB, got '%s'",
					   v ? v : ""), -2;
		return 1;
	}
	int dtype = !strcmp(arg, "--dtype") || !strncmp(arg, "--dtype=", 8);
	if (!dtype && strcmp(arg, "-o") && strcmp(arg, "--output") && strncmp(arg, "-o", 2))
		return 0;
	if (!strncmp(arg, "--dtype=", 8))
		v = arg + 8;
	else if (!dtype && arg[2] && strcmp(arg, "--output"))
		v = arg + 2;
	else if (*i + 1 < argc)
		v = argv[++*i];
	else
		return usage_error(usage_export, "%s needs a value", arg), -2;
	if (!dtype)
		o->out = v;
	else if (!strcmp(v, "fp32") || !strcmp(v, "float32") || !strcmp(v, "bf16") || !strcmp(v, "bfloat16"))
		o->bf16 = v[0] == 'b';
	else
		return usage_error(usage_export, "--dtype is fp32 or bf16, got '%s'", v), -2;
	return 1;
}

static int cmd_export(int argc, char **argv)
{
	struct export_options o = {0};
	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i];
		int r = parse_export_option(argc, argv, &i, &o);
		if (r < 0)
			return EXIT_USAGE;
		if (r > 0)
			continue;
		if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
			fputs(usage_export, stdout);
			return 0;
		} else if (!strcmp(arg, "--force")) {
			o.force = true;
		} else if (arg[0] == '-' && arg[1]) {
			return usage_error(usage_export, "unknown option '%s'", arg);
		} else if (!o.build) {
			o.build = arg;
		} else if (!o.ckpt) {
			o.ckpt = arg;
		} else {
			return usage_error(usage_export, "one checkpoint at a time (got '%s' too)", arg);
		}
	}
	if (!o.ckpt)
		return usage_error(usage_export, "%s", o.build ? "missing CKPT" : "missing BUILD and CKPT");
	if (!o.out)
		return usage_error(usage_export, "%s", "missing -o OUT");
	return export_run(&o) ? EXIT_SPEC : 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs(usage_main, stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
		printf("moec %s\n", MOEC_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || (!strcmp(cmd, "help") && argc == 2)) {
		fputs(usage_main, stdout);
		return 0;
	}
	if (!strcmp(cmd, "help")) {
		const char *topic = argv[2];
		if (!strcmp(topic, "check"))
			fputs(usage_check, stdout);
		else if (!strcmp(topic, "plan"))
			fputs(usage_plan, stdout);
		else if (!strcmp(topic, "build"))
			fputs(usage_build, stdout);
		else if (!strcmp(topic, "inspect"))
			fputs(usage_inspect, stdout);
		else if (!strcmp(topic, "export"))
			fputs(usage_export, stdout);
		else
			return usage_error(usage_main, "no command '%s'", topic);
		return 0;
	}
	if (!strcmp(cmd, "check"))
		return cmd_check(argc - 2, argv + 2);
	if (!strcmp(cmd, "plan"))
		return cmd_plan(argc - 2, argv + 2);
	if (!strcmp(cmd, "build"))
		return cmd_build(argc - 2, argv + 2);
	if (!strcmp(cmd, "inspect"))
		return cmd_inspect(argc - 2, argv + 2);
	if (!strcmp(cmd, "export"))
		return cmd_export(argc - 2, argv + 2);
	return usage_error(usage_main, "unknown command '%s'", cmd);
}
