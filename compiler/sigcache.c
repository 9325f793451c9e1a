/* sigcache.c - lint each instance once per content. See sigcache.h. */
#define _GNU_SOURCE
#include "sigcache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "diag.h"

#define SIGCACHE_STUB_DIR MOEC_SOURCE_DIR "/templates"

static void sigcache_format_one(FILE *f, const char *what, const struct kernel_sig *s)
{
	fprintf(f, "%s\t%s\t%s\t%d\t%d\t%d\n", what, s->name, s->file, s->line, s->col, s->nparams);
	for (int i = 0; i < s->nparams; i++)
		fprintf(f, "p\t%s\t%s\n", s->params[i].type, s->params[i].name);
}

char *sigcache_format(const struct kernel_sig *kernel, const struct kernel_sig *twin)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return NULL;
	sigcache_format_one(f, "kernel", kernel);
	sigcache_format_one(f, "twin", twin);
	fclose(f);
	return text;
}

/* Split one line at tabs into at most n fields (in place). Returns the field count. */
static int sigcache_fields(char *line, char **out, int n)
{
	int k = 0;
	for (char *p = line; k < n;) {
		out[k++] = p;
		char *tab = strchr(p, '\t');
		if (!tab)
			break;
		*tab = 0;
		p = tab + 1;
	}
	return k;
}

static int sigcache_copy(char *dst, size_t n, const char *src)
{
	return snprintf(dst, n, "%s", src) < (int)n ? 0 : -1;
}

int sigcache_parse(const char *text, struct kernel_sig *kernel, struct kernel_sig *twin)
{
	char *copy = strdup(text), *save = NULL;
	struct kernel_sig *cur = NULL;
	int bad = !copy, seen = 0;
	for (char *line = copy ? strtok_r(copy, "\n", &save) : NULL; line && !bad; line = strtok_r(NULL, "\n", &save)) {
		char *f[6];
		int nf = sigcache_fields(line, f, 6);
		if (nf == 6 && (!strcmp(f[0], "kernel") || !strcmp(f[0], "twin"))) {
			cur = !strcmp(f[0], "kernel") ? kernel : twin;
			memset(cur, 0, sizeof *cur);
			bad |= sigcache_copy(cur->name, sizeof cur->name, f[1]) | sigcache_copy(cur->file, sizeof cur->file, f[2]);
			cur->line = atoi(f[3]);
			cur->col = atoi(f[4]);
			seen |= cur == kernel ? 1 : 2;
		} else if (nf == 3 && !strcmp(f[0], "p") && cur && cur->nparams < LINT_MAX_PARAMS) {
			struct kernel_param *p = &cur->params[cur->nparams++];
			bad |= sigcache_copy(p->type, sizeof p->type, f[1]) | sigcache_copy(p->name, sizeof p->name, f[2]);
		} else {
			bad = 1;
		}
	}
	free(copy);
	return bad || seen != 3 ? -1 : 0;
}

/* Size and mtime of the running moec: lint results are only reused by the same binary. */
static void sigcache_hash_self(struct sha256 *h)
{
	struct stat st;
	char buf[96] = "moec unknown\n";
	if (!stat("/proc/self/exe", &st))
		snprintf(buf, sizeof buf, "moec %lld %lld.%09ld\n", (long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
	sha256_update_str(h, buf);
}

static void sigcache_key(const struct kernel_set *ks, const struct kernel_inst *k, char *key)
{
	char cpu[PATH_MAX + 8];
	struct sha256 h;
	snprintf(cpu, sizeof cpu, "%s/cpu", ks->dir);
	sha256_init(&h);
	sha256_update_str(&h, "moec-lint-1\n");
	sigcache_hash_self(&h);
	sha256_update_str(&h, ks->dir);
	sha256_update_str(&h, "\n" SIGCACHE_STUB_DIR "\n");
	const char *cu_dirs[] = {ks->dir, SIGCACHE_STUB_DIR};
	const char *twin_dirs[] = {cpu, ks->dir};
	cache_hash_instance(&h, k->cu_text, cu_dirs, 2, NULL);
	sha256_update_str(&h, "\ntwin\n");
	cache_hash_instance(&h, k->twin_text, twin_dirs, 2, NULL);
	sha256_final_hex(&h, key);
}

static int sigcache_lint_one(const struct kernel_set *ks, const struct kernel_inst *k, const char *dir, struct kernel_sig *sig,
			     struct kernel_sig *twin)
{
	char path[PATH_MAX];
	struct lint_options o = {.kernels_dir = ks->dir, .stub_dir = SIGCACHE_STUB_DIR};
	snprintf(path, sizeof path, "%s/gen/%s.cu", dir, k->name);
	int errors = lint_cuda_instance(path, &o, sig);
	snprintf(path, sizeof path, "%s/gen/cpu/%s.c", dir, k->name);
	errors += lint_twin_instance(path, &o, twin);
	if (!errors)
		errors += lint_compare(sig, twin);
	return errors;
}

int sigcache_lint_all(const struct kernel_set *ks, const char *dir, const struct cache *c, struct kernel_sig *sigs,
		      struct kernel_sig *twin_sigs, int debug, void (*poll)(void *), void *arg)
{
	int errors = 0, linted = 0;
	for (int i = 0; i < ks->n; i++) {
		if (poll)
			poll(arg);
		const struct kernel_inst *k = &ks->v[i];
		char key[SHA256_HEX_LEN + 1], *text = NULL;
		size_t len;
		sigcache_key(ks, k, key);
		if (cache_get(c, key, "sig", &text, &len) && !sigcache_parse(text, &sigs[i], &twin_sigs[i])) {
			free(text);
			continue;
		}
		free(text);
		linted++;
		int e = sigcache_lint_one(ks, k, dir, &sigs[i], &twin_sigs[i]);
		errors += e;
		if (e)
			continue;
		text = sigcache_format(&sigs[i], &twin_sigs[i]);
		if (text)
			cache_put(c, key, "sig", text, strlen(text));
		free(text);
	}
	if (debug >= 1)
		fprintf(stderr, "moec: lint: %d of %d instances linted, %d from the cache\n", linted, ks->n, ks->n - linted);
	return errors;
}
