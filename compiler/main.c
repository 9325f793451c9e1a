/* main.c - the moec command line, and the one place that knows the order of the passes:
 *
 *   parse  (parse.c)   spec YAML + presets + HF config + cluster + --set -> struct spec
 *   check  (check.c)   rules between fields, derived values
 *   lower  (lower.c)   spec -> IR: layers, every tensor's shape, dtype, owner, trainability
 *   plan   (plan.c)    rank layout, parameter counts, per-rank memory, FLOPs, communication
 *   report (report.c)  the plan as text or JSON
 *
 * Exit codes: 0 ok, 1 the spec (or a file it names) is wrong or the job does not fit,
 * 2 usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "diag.h"
#include "lower.h"
#include "parse.h"
#include "plan.h"
#include "report.h"
#include "resolved.h"
#include "schema.h"

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

struct args {
	const char *spec;
	const char *sets[64];
	int nsets;
	const char *cluster;
	int json, print, keys, ranks;
};

static int usage_error(const char *usage, const char *fmt, const char *arg)
{
	fprintf(stderr, "moec: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n\n%s", usage);
	return EXIT_USAGE;
}

/* Parse a command's options; returns -1 to go on, or an exit code. */
static int parse_args(int argc, char **argv, const char *usage, int is_plan, struct args *a)
{
	memset(a, 0, sizeof *a);
	a->ranks = 64;
	for (int i = 0; i < argc; i++) {
		const char *arg = argv[i];
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
		} else if (!is_plan && !strcmp(arg, "--print")) {
			a->print = 1;
		} else if (!is_plan && !strcmp(arg, "--keys")) {
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
	int rc = parse_args(argc, argv, usage_check, 0, &a);
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
	int rc = parse_args(argc, argv, usage_plan, 1, &a);
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
		else
			return usage_error(usage_main, "no command '%s'", topic);
		return 0;
	}
	if (!strcmp(cmd, "check"))
		return cmd_check(argc - 2, argv + 2);
	if (!strcmp(cmd, "plan"))
		return cmd_plan(argc - 2, argv + 2);
	return usage_error(usage_main, "unknown command '%s'", cmd);
}
