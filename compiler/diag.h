/* diag.h - loaded source files and compiler-style diagnostics.
 *
 * Every error the front end reports names a position in a source (the user's spec, a
 * preset, an HF config.json, a cluster file, or a --set argument) and prints
 *     spec.yaml:12:7: error: message
 *        12 |   top_k: 9
 *           |          ^
 * Sources stay loaded until diag_free_sources(), so positions remain printable.
 */
#ifndef MOEC_DIAG_H
#define MOEC_DIAG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

struct source {
	char *name;   /* path as the user wrote it, or "--set" */
	char *dir;    /* directory relative paths inside it resolve against ("." if none) */
	char *text;   /* whole contents, NUL-terminated */
	size_t len;
};

enum diag_level { DIAG_ERROR, DIAG_WARNING, DIAG_NOTE };

#define SOURCE_MAX_BYTES (16 << 20)

/* Load a file as a source; NULL when it cannot be read (source_load_error() says why). */
struct source *source_load(const char *path);
const char *source_load_error(void);
/* A source made from a string (e.g. a --set argument). */
struct source *source_from_string(const char *name, const char *text);
void diag_free_sources(void);

/* Report at 1-based line and column of src (line 0: no position, src may be NULL). */
void diag_at(enum diag_level level, const struct source *src, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
void diag_vat(enum diag_level level, const struct source *src, int line, int col, const char *fmt, va_list ap);

int diag_error_count(void);
int diag_warning_count(void);
void diag_reset_counts(void);
/* Where diagnostics go (stderr by default); tests capture them. */
void diag_set_stream(FILE *f);
/* Stop printing (but keep counting) after this many errors; 0 = no limit. */
void diag_set_error_limit(int n);

#endif
