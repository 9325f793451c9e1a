/* schema.h - the table of every spec key: path, type, range, default, aliases, help.
 *
 * parse.c binds YAML values through this table (types, ranges, unknown keys, "did you
 * mean"), plan.c prints the resolved spec from it, and `moec check --keys` lists it. Adding
 * a spec key = adding a field to spec.h and one row here.
 */
#ifndef MOEC_SCHEMA_H
#define MOEC_SCHEMA_H

#include <stddef.h>

#include "spec.h"

enum field_type {
	FIELD_INT,
	FIELD_FLOAT,
	FIELD_BOOL,
	FIELD_STRING,
	FIELD_ENUM,
	FIELD_INT_LIST,
	FIELD_STR_LIST,
};

struct field {
	const char *path;        /* "moe.top_k": section, then keys inside it */
	enum field_type type;
	size_t offset;           /* into struct spec */
	const char *aliases;     /* comma-separated full paths also accepted: "moe.num_experts_per_tok" */
	const char *hf_keys;     /* comma-separated HF config.json keys that set it */
	double min, max;         /* inclusive range for numbers and list elements */
	const char *const *enum_names; /* ENUM: names by value; "a|b" spells aliases of one value */
	const char *def;         /* default as YAML text; NULL = no default */
	const char *help;
};

extern const struct field schema_fields[];
extern const int schema_nfields;

/* Names of enum values, also used when printing (first spelling). */
extern const char *const family_names[];
extern const char *const router_names[];
extern const char *const dtype_names[];
extern const char *const gpu_names[];
extern const char *const recompute_names[];
extern const char *const schedule_names[];
extern const char *const mode_names[];
extern const char *const drop_names[];
extern const char *const aux_scope_names[];
extern const char *const attention_names[];
extern const char *const activation_names[];
extern const char *const format_names[];

/* Field whose path or an alias equals `path` exactly, or NULL. A cluster file's keys are
 * looked up as "cluster.<key>". */
const struct field *schema_find(const char *path);
/* True when some field's path (or alias) starts with "prefix." (a mapping key). */
int schema_is_mapping(const char *prefix);
/* The known key nearest to `path` by edit distance (for "did you mean"), or NULL. */
const char *schema_suggest(const char *path);
/* Edit distance between two names (99 for very long ones). */
int schema_distance(const char *a, const char *b);
/* Index of a field in schema_fields (for spec.origin[]). */
static inline int schema_index(const struct field *f) { return (int)(f - schema_fields); }
/* Pointer to the field's storage inside a spec. */
static inline void *schema_ptr(struct spec *s, const struct field *f) { return (char *)s + f->offset; }
/* Printable enum name (first spelling) of value v. */
const char *schema_enum_name(const char *const *names, int v);
/* Enum value for a spelled name, or -1. */
int schema_enum_value(const char *const *names, const char *text);
/* "a, b or c" list of an enum's accepted names into buf. */
void schema_enum_list(const char *const *names, char *buf, size_t n);

#endif
