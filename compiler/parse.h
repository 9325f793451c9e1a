/* parse.h - pass 1: spec YAML (+ presets, HF config.json, cluster file, --set) -> struct spec.
 *
 * Requires: nothing but the file names.
 * Establishes: every field of struct spec holds the value of the highest-priority source
 * that set it (default < preset < HF config < cluster file < the user's file < --set), and
 * spec.origin[] says which source and position that was. Types, ranges, enum names and
 * unknown keys are checked here; rules between fields are check.c's.
 * Errors go through diag.c; the return value is the number of errors.
 */
#ifndef MOEC_PARSE_H
#define MOEC_PARSE_H

#include "spec.h"

struct parse_options {
	const char *const *sets; /* "a.b.c=value" overrides, applied last */
	int nsets;
	const char *cluster;     /* --cluster FILE: replaces parallel.cluster */
};

int spec_parse(struct spec *s, const char *path, const struct parse_options *opt);
/* The same for a spec held in memory (tests, fuzzing); relative paths resolve against ".". */
int spec_parse_text(struct spec *s, const char *name, const char *text, const struct parse_options *opt);

/* Where the user's file opened a section ("model", "moe", ...) or a zero origin. */
struct origin spec_section_origin(const struct spec *s, const char *section);

#endif
