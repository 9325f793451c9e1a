/* cache.c - the content-addressed kernel cache. See cache.h. */
#include "cache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "files.h"

int cache_open(struct cache *c)
{
	const char *env = getenv("MOEC_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	int n;
	if (env && *env)
		n = snprintf(c->dir, sizeof c->dir, "%s", env);
	else if (xdg && *xdg)
		n = snprintf(c->dir, sizeof c->dir, "%s/moec", xdg);
	else if (home && *home)
		n = snprintf(c->dir, sizeof c->dir, "%s/.cache/moec", home);
	else {
		fprintf(stderr, "moec: error: no kernel cache directory: set MOEC_CACHE_DIR (or HOME)\n");
		return -1;
	}
	if (n >= (int)sizeof c->dir) {
		fprintf(stderr, "moec: error: kernel cache path too long\n");
		return -1;
	}
	int err = file_make_dirs(c->dir);
	if (err) {
		fprintf(stderr, "moec: error: cannot create the kernel cache %s: %s (set MOEC_CACHE_DIR to a writable directory)\n",
			c->dir, strerror(err));
		return -1;
	}
	return 0;
}

static int cache_path(const struct cache *c, const char *key, const char *ext, char *buf, size_t n)
{
	return snprintf(buf, n, "%s/%s.%s", c->dir, key, ext) < (int)n ? 0 : ENAMETOOLONG;
}

bool cache_get(const struct cache *c, const char *key, const char *ext, char **data, size_t *len)
{
	char path[PATH_MAX];
	return !cache_path(c, key, ext, path, sizeof path) && !file_read_whole(path, data, len);
}

bool cache_has(const struct cache *c, const char *key, const char *ext)
{
	char path[PATH_MAX];
	return !cache_path(c, key, ext, path, sizeof path) && file_exists(path);
}

int cache_put(const struct cache *c, const char *key, const char *ext, const void *data, size_t len)
{
	char path[PATH_MAX];
	int err = cache_path(c, key, ext, path, sizeof path);
	return err ? err : file_write_atomic(path, data, len, false);
}

/* ---- hashing an instance with its includes ---- */

#define CACHE_MAX_INCLUDES 64

struct cache_walk {
	struct sha256 *h;
	const char *const *dirs;
	int ndirs;
	char *seen[CACHE_MAX_INCLUDES];
	int nseen;
	int err;
	size_t bytes;
};

static bool cache_walk_seen(struct cache_walk *w, const char *name)
{
	for (int i = 0; i < w->nseen; i++)
		if (!strcmp(w->seen[i], name))
			return true;
	if (w->nseen < CACHE_MAX_INCLUDES)
		w->seen[w->nseen++] = strdup(name);
	return false;
}

static void cache_walk_text(struct cache_walk *w, const char *text, int depth);

static void cache_walk_include(struct cache_walk *w, const char *name, int depth)
{
	char buf[64];
	if (cache_walk_seen(w, name))
		return;
	for (int d = 0; d < w->ndirs; d++) {
		char path[PATH_MAX], *data;
		size_t len;
		if (snprintf(path, sizeof path, "%s/%s", w->dirs[d], name) >= (int)sizeof path)
			continue;
		int err = file_read_whole(path, &data, &len);
		if (err == ENOENT)
			continue;
		if (err) {
			w->err = err;
			return;
		}
		w->bytes += len;
		snprintf(buf, sizeof buf, " %zu\n", len);
		sha256_update_str(w->h, "file ");
		sha256_update_str(w->h, name);
		sha256_update_str(w->h, buf);
		sha256_update(w->h, data, len);
		if (depth < 16)
			cache_walk_text(w, data, depth + 1);
		free(data);
		return;
	}
	sha256_update_str(w->h, "system ");
	sha256_update_str(w->h, name);
	sha256_update_str(w->h, "\n");
}

/* Every line `# include "name"` (spaces allowed), whatever #if surrounds it: hashing a
 * header the compiler then skips only costs a spurious recompile, never a stale hit. */
static void cache_walk_text(struct cache_walk *w, const char *text, int depth)
{
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		const char *q = p;
		while (*q == ' ' || *q == '\t')
			q++;
		if (*q++ != '#')
			continue;
		while (*q == ' ' || *q == '\t')
			q++;
		if (strncmp(q, "include", 7))
			continue;
		q += 7;
		while (*q == ' ' || *q == '\t')
			q++;
		if (*q != '"')
			continue;
		const char *end = strpbrk(q + 1, "\"\n");
		if (!end || *end != '"' || end - q - 1 >= 256)
			continue;
		char name[256];
		memcpy(name, q + 1, (size_t)(end - q - 1));
		name[end - q - 1] = 0;
		cache_walk_include(w, name, depth);
	}
}

int cache_hash_instance(struct sha256 *h, const char *text, const char *const *dirs, int ndirs, size_t *bytes)
{
	struct cache_walk w = {.h = h, .dirs = dirs, .ndirs = ndirs};
	const char *body = strchr(text, '\n');
	body = body ? body + 1 : text + strlen(text);
	w.bytes = strlen(body);
	sha256_update_str(h, "source\n");
	sha256_update_str(h, body);
	cache_walk_text(&w, body, 0);
	for (int i = 0; i < w.nseen; i++)
		free(w.seen[i]);
	if (bytes)
		*bytes = w.bytes;
	return w.err;
}
