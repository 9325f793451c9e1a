/* diag.c - source files and diagnostics with a caret under the column. See diag.h. */
#include "diag.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static struct source **sources;
static int nsources;
static int errors, warnings, error_limit = 20;
static FILE *stream;

static FILE *out(void) { return stream ? stream : stderr; }

void diag_set_stream(FILE *f) { stream = f; }
void diag_set_error_limit(int n) { error_limit = n; }
int diag_error_count(void) { return errors; }
int diag_warning_count(void) { return warnings; }
void diag_reset_counts(void) { errors = warnings = 0; }

static char *dup_dir(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

static struct source *remember(struct source *s)
{
	struct source **grown = realloc(sources, sizeof *sources * (size_t)(nsources + 1));
	if (!grown) {
		perror("moec");
		exit(1);
	}
	sources = grown;
	sources[nsources++] = s;
	return s;
}

static char load_error[128];

const char *source_load_error(void) { return load_error; }

struct source *source_load(const char *path)
{
	struct stat st;
	FILE *f = fopen(path, "rb");
	if (!f || fstat(fileno(f), &st) != 0) {
		snprintf(load_error, sizeof load_error, "%s", strerror(errno));
		if (f)
			fclose(f);
		return NULL;
	}
	/* Specs and configs are small text files; refuse devices, pipes and huge files. */
	if (!S_ISREG(st.st_mode) || st.st_size > SOURCE_MAX_BYTES) {
		snprintf(load_error, sizeof load_error, "%s", S_ISDIR(st.st_mode) ? "it is a directory" : !S_ISREG(st.st_mode) ? "not a regular file" : "larger than 16 MiB");
		fclose(f);
		return NULL;
	}
	struct source *s = calloc(1, sizeof *s);
	size_t cap = 4096;
	s->text = malloc(cap);
	for (;;) {
		size_t got = fread(s->text + s->len, 1, cap - s->len - 1, f);
		s->len += got;
		if (s->len + 1 < cap)
			break;
		cap *= 2;
		s->text = realloc(s->text, cap);
	}
	int err = ferror(f);
	fclose(f);
	if (err || memchr(s->text, 0, s->len)) {
		snprintf(load_error, sizeof load_error, "%s", err ? "read error" : "binary file (contains NUL bytes)");
		free(s->text);
		free(s);
		return NULL;
	}
	s->text[s->len] = 0;
	s->name = strdup(path);
	s->dir = dup_dir(path);
	return remember(s);
}

struct source *source_from_string(const char *name, const char *text)
{
	struct source *s = calloc(1, sizeof *s);
	s->name = strdup(name);
	s->dir = strdup(".");
	s->text = strdup(text);
	s->len = strlen(text);
	return remember(s);
}

void diag_free_sources(void)
{
	for (int i = 0; i < nsources; i++) {
		free(sources[i]->name);
		free(sources[i]->dir);
		free(sources[i]->text);
		free(sources[i]);
	}
	free(sources);
	sources = NULL;
	nsources = 0;
}

/* Print line `line` of src and a caret under column `col` (both 1-based). */
static void show_line(const struct source *src, int line, int col)
{
	const char *p = src->text, *end = src->text + src->len;
	for (int l = 1; l < line && p < end; p++)
		if (*p == '\n')
			l++;
	if (p >= end && line > 1)
		return;
	const char *eol = memchr(p, '\n', (size_t)(end - p));
	if (!eol)
		eol = end;
	int width = (int)(eol - p);
	if (width > 0 && p[width - 1] == '\r')
		width--;
	fprintf(out(), "%5d | %.*s\n      | ", line, width, p);
	/* Keep tabs so the caret lines up under tab-indented text. */
	for (int i = 0; i < col - 1 && i < width; i++)
		fputc(p[i] == '\t' ? '\t' : ' ', out());
	fputs("^\n", out());
}

void diag_vat(enum diag_level level, const struct source *src, int line, int col, const char *fmt, va_list ap)
{
	static const char *const names[] = {"error", "warning", "note"};
	if (level == DIAG_ERROR && error_limit && errors >= error_limit) {
		if (errors++ == error_limit)
			fprintf(out(), "moec: too many errors; stopping the list here\n");
		return;
	}
	if (level == DIAG_ERROR)
		errors++;
	else if (level == DIAG_WARNING)
		warnings++;
	if (src && line > 0)
		fprintf(out(), "%s:%d:%d: %s: ", src->name, line, col, names[level]);
	else if (src)
		fprintf(out(), "%s: %s: ", src->name, names[level]);
	else
		fprintf(out(), "moec: %s: ", names[level]);
	vfprintf(out(), fmt, ap);
	fputc('\n', out());
	if (src && line > 0)
		show_line(src, line, col);
}

void diag_at(enum diag_level level, const struct source *src, int line, int col, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_vat(level, src, line, col, fmt, ap);
	va_end(ap);
}
