/* inspect.c - show a build's kernels, sources, PTX and SASS. See inspect.h. */
#define _GNU_SOURCE
#include "inspect.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml.h>

#include "files.h"

/* ---- reading manifest.json with libyaml's document API ---- */

struct inspect_doc {
	yaml_document_t doc;
	yaml_node_t *root;
};

static yaml_node_t *inspect_get(struct inspect_doc *d, yaml_node_t *map, const char *key)
{
	if (!map || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(&d->doc, p->key);
		if (k && k->type == YAML_SCALAR_NODE && !strcmp((const char *)k->data.scalar.value, key))
			return yaml_document_get_node(&d->doc, p->value);
	}
	return NULL;
}

static const char *inspect_str(struct inspect_doc *d, yaml_node_t *map, const char *key)
{
	yaml_node_t *n = inspect_get(d, map, key);
	return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : "";
}

static long long inspect_int(struct inspect_doc *d, yaml_node_t *map, const char *key)
{
	return atoll(inspect_str(d, map, key));
}

static int inspect_load(const char *dir, struct inspect_doc *d)
{
	char path[PATH_MAX], *text;
	size_t len;
	snprintf(path, sizeof path, "%s/manifest.json", dir);
	int err = file_read_whole(path, &text, &len);
	if (err) {
		fprintf(stderr, "moec: error: %s: %s (is %s a directory made by `moec build`?)\n", path, strerror(err), dir);
		return -1;
	}
	yaml_parser_t p;
	yaml_parser_initialize(&p);
	yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
	int ok = yaml_parser_load(&p, &d->doc);
	if (!ok)
		fprintf(stderr, "moec: error: %s:%zu:%zu: %s\n", path, p.problem_mark.line + 1, p.problem_mark.column + 1,
			p.problem ? p.problem : "cannot parse");
	yaml_parser_delete(&p);
	free(text);
	if (!ok)
		return -1;
	d->root = yaml_document_get_root_node(&d->doc);
	yaml_node_t *k = inspect_get(d, d->root, "kernels");
	if (!k || k->type != YAML_SEQUENCE_NODE) {
		fprintf(stderr, "moec: error: %s has no kernel list\n", path);
		yaml_document_delete(&d->doc);
		return -1;
	}
	return 0;
}

static int inspect_nkernels(struct inspect_doc *d)
{
	yaml_node_t *k = inspect_get(d, d->root, "kernels");
	return (int)(k->data.sequence.items.top - k->data.sequence.items.start);
}

static yaml_node_t *inspect_kernel(struct inspect_doc *d, int i)
{
	yaml_node_t *k = inspect_get(d, d->root, "kernels");
	return yaml_document_get_node(&d->doc, k->data.sequence.items.start[i]);
}

/* "DIM=2048 EPS=1e-06f ACT_BF16=1" */
static void inspect_constants(struct inspect_doc *d, yaml_node_t *k, char *buf, size_t n)
{
	yaml_node_t *c = inspect_get(d, k, "constants");
	size_t len = 0;
	buf[0] = 0;
	if (!c || c->type != YAML_MAPPING_NODE)
		return;
	for (yaml_node_pair_t *p = c->data.mapping.pairs.start; p < c->data.mapping.pairs.top && len < n; p++) {
		yaml_node_t *key = yaml_document_get_node(&d->doc, p->key), *v = yaml_document_get_node(&d->doc, p->value);
		if (key && v && key->type == YAML_SCALAR_NODE && v->type == YAML_SCALAR_NODE)
			len += (size_t)snprintf(buf + len, n - len, "%s%s=%s", len ? " " : "", key->data.scalar.value, v->data.scalar.value);
	}
}

/* ---- output ---- */

static void inspect_table(struct inspect_doc *d)
{
	int n = inspect_nkernels(d);
	printf("%d kernels for %s, from %s@%s (NVRTC %s)\n", n, inspect_str(d, d->root, "arch"), inspect_str(d, d->root, "spec"),
	       inspect_str(d, d->root, "spec_hash"), inspect_str(d, d->root, "nvrtc_version"));
	printf("%-46s %5s %7s %6s %11s  %s\n", "kernel", "regs", "smem", "stack", "spills st/ld", "constants / launch");
	for (int i = 0; i < n; i++) {
		yaml_node_t *k = inspect_kernel(d, i);
		char consts[1024];
		inspect_constants(d, k, consts, sizeof consts);
		char spills[48];
		snprintf(spills, sizeof spills, "%lld/%lld", inspect_int(d, k, "spill_stores"), inspect_int(d, k, "spill_loads"));
		printf("%-46s %5lld %7lld %6lld %11s  %s\n", inspect_str(d, k, "name"), inspect_int(d, k, "registers"),
		       inspect_int(d, k, "smem"), inspect_int(d, k, "stack"), spills, consts);
		printf("%-46s %5s %7s %6s %11s  %s\n", "", "", "", "", "", inspect_str(d, k, "launch"));
	}
}

static void inspect_details(struct inspect_doc *d, yaml_node_t *k)
{
	printf("kernel      %s\n", inspect_str(d, k, "name"));
	printf("template    kernels/%s.cu (twin kernels/cpu/%s.c)\n", inspect_str(d, k, "template"), inspect_str(d, k, "template"));
	printf("used for    %s\n", inspect_str(d, k, "why"));
	yaml_node_t *c = inspect_get(d, k, "constants");
	printf("constants  ");
	if (c && c->type == YAML_MAPPING_NODE)
		for (yaml_node_pair_t *p = c->data.mapping.pairs.start; p < c->data.mapping.pairs.top; p++) {
			yaml_node_t *key = yaml_document_get_node(&d->doc, p->key), *v = yaml_document_get_node(&d->doc, p->value);
			if (key && v && key->type == YAML_SCALAR_NODE && v->type == YAML_SCALAR_NODE)
				printf(" %s=%s", key->data.scalar.value, v->data.scalar.value);
		}
	printf("\nlaunch      %s\n", inspect_str(d, k, "launch"));
	printf("resources   %lld registers, %lld barriers, %lld bytes smem, %lld bytes stack, spills %lld bytes stores / %lld loads (%s)\n",
	       inspect_int(d, k, "registers"), inspect_int(d, k, "barriers"), inspect_int(d, k, "smem"), inspect_int(d, k, "stack"),
	       inspect_int(d, k, "spill_stores"), inspect_int(d, k, "spill_loads"), inspect_str(d, d->root, "arch"));
	printf("files       %s  %s  %s  %s\n", inspect_str(d, k, "source"), inspect_str(d, k, "twin"), inspect_str(d, k, "cubin"),
	       inspect_str(d, k, "ptx"));
	printf("cache       %s (%s)\n", inspect_str(d, k, "cache_key"), inspect_str(d, k, "cache"));
}

static int inspect_cat(const char *dir, const char *rel)
{
	char path[PATH_MAX], *text;
	size_t len;
	snprintf(path, sizeof path, "%s/%s", dir, rel);
	int err = file_read_whole(path, &text, &len);
	if (err) {
		fprintf(stderr, "moec: error: %s: %s (rebuild with `moec build`)\n", path, strerror(err));
		return 1;
	}
	fwrite(text, 1, len, stdout);
	free(text);
	return 0;
}

/* The full path of an executable named `tool` on PATH, or in the CUDA toolkit's bin/. */
static bool inspect_find_tool(const char *tool, char *out, size_t n)
{
	const char *path = getenv("PATH"), *home = getenv("CUDA_HOME");
	char dirs[8192];
	snprintf(dirs, sizeof dirs, "%s:%s%s/usr/local/cuda/bin", path ? path : "", home && *home ? home : "", home && *home ? "/bin:" : "");
	char *save = NULL;
	for (char *dir = strtok_r(dirs, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		if (snprintf(out, n, "%s/%s", *dir ? dir : ".", tool) < (int)n && !access(out, X_OK))
			return true;
	}
	return false;
}

static int inspect_sass(const char *dir, const char *cubin_rel)
{
	char tool[PATH_MAX], cubin[PATH_MAX];
	snprintf(cubin, sizeof cubin, "%s/%s", dir, cubin_rel);
	if (!file_exists(cubin)) {
		fprintf(stderr, "moec: error: %s is missing (rebuild with `moec build`)\n", cubin);
		return 1;
	}
	const char *argv[4];
	if (inspect_find_tool("cuobjdump", tool, sizeof tool)) {
		argv[0] = tool, argv[1] = "-sass", argv[2] = cubin;
	} else if (inspect_find_tool("nvdisasm", tool, sizeof tool)) {
		argv[0] = tool, argv[1] = "-c", argv[2] = cubin;
	} else {
		fprintf(stderr, "moec: error: SASS needs cuobjdump or nvdisasm, and neither is on PATH or in /usr/local/cuda/bin: "
				"install the CUDA toolkit's cuda-cuobjdump (or cuda-nvdisasm) package, e.g. "
				"`apt-get install cuda-cuobjdump-13-0`, or set CUDA_HOME; the PTX is there now: --ptx\n");
		return 1;
	}
	argv[3] = NULL;
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	int status = 0;
	if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "moec: error: %s %s %s failed\n", argv[0], argv[1], cubin);
		return 1;
	}
	return 0;
}

/* The kernel called `name`, or the only one whose name contains it. */
static yaml_node_t *inspect_match(struct inspect_doc *d, const char *name)
{
	int n = inspect_nkernels(d), hits = 0;
	yaml_node_t *found = NULL;
	for (int i = 0; i < n; i++) {
		yaml_node_t *k = inspect_kernel(d, i);
		if (!strcmp(inspect_str(d, k, "name"), name))
			return k;
	}
	for (int i = 0; i < n; i++) {
		yaml_node_t *k = inspect_kernel(d, i);
		if (strstr(inspect_str(d, k, "name"), name))
			hits++, found = k;
	}
	if (hits == 1)
		return found;
	fprintf(stderr, "moec: error: %s kernel %s '%s'%s\n", hits ? "more than one" : "no", hits ? "matches" : "named or containing",
		name, hits ? ":" : "; `moec inspect DIR` lists them");
	for (int i = 0; i < n && hits; i++) {
		yaml_node_t *k = inspect_kernel(d, i);
		if (strstr(inspect_str(d, k, "name"), name))
			fprintf(stderr, "  %s\n", inspect_str(d, k, "name"));
	}
	return NULL;
}

/* DIR-relative path of one of a kernel's files, built from its name and the arch (not
 * taken from the manifest, which names only files moec writes). */
static int inspect_path(struct inspect_doc *d, yaml_node_t *k, enum inspect_what what, char *buf, size_t n)
{
	const char *name = inspect_str(d, k, "name"), *arch = inspect_str(d, d->root, "arch");
	const char *ok = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_";
	if (!*name || strspn(name, ok) != strlen(name) || strspn(arch, ok) != strlen(arch)) {
		fprintf(stderr, "moec: error: manifest.json: bad kernel name or arch '%s' '%s'\n", name, arch);
		return -1;
	}
	switch (what) {
	case INSPECT_SRC:
		snprintf(buf, n, "gen/%s.cu", name);
		break;
	case INSPECT_TWIN:
		snprintf(buf, n, "gen/cpu/%s.c", name);
		break;
	case INSPECT_PTX:
		snprintf(buf, n, "ptx/%s.%s.ptx", name, arch);
		break;
	default:
		snprintf(buf, n, "cubin/%s.%s.cubin", name, arch);
		break;
	}
	return 0;
}

int inspect_build(const char *dir, const char *kernel, enum inspect_what what)
{
	char rel[512];
	struct inspect_doc d;
	if (inspect_load(dir, &d))
		return 1;
	int rc = 0;
	yaml_node_t *k = NULL;
	if (what == INSPECT_TABLE && !kernel) {
		inspect_table(&d);
		goto out;
	}
	if (!kernel || !(k = inspect_match(&d, kernel))) {
		rc = 1;
		goto out;
	}
	if (what == INSPECT_TABLE || what == INSPECT_DETAILS)
		inspect_details(&d, k);
	else if (inspect_path(&d, k, what, rel, sizeof rel))
		rc = 1;
	else if (what == INSPECT_SASS)
		rc = inspect_sass(dir, rel);
	else
		rc = inspect_cat(dir, rel);
out:
	yaml_document_delete(&d.doc);
	return rc;
}
