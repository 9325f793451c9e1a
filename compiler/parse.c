/* parse.c - pass 1: YAML sources -> struct spec, through the schema table. See parse.h.
 *
 * Sources, in the order they are read: schema defaults; the user's file, whose include:
 * presets are read before its own keys and whose model.hf_config is imported before them;
 * the cluster file; --set overrides. Each value is bound only when its source's priority
 * (enum origin_kind) is at least that of the source that set it before, so a preset read
 * first never overrides the user's file, whatever the nesting.
 *
 * libyaml's document API gives every node a start mark (0-based line and column); errors
 * are reported 1-based through diag.c.
 */
#include "parse.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "diag.h"
#include "schema.h"

#define MAX_INCLUDE_DEPTH 8
#define MAX_NODES_WALKED 100000 /* YAML aliases can make a small file a huge tree */

static const char *const section_names[] = {"model", "moe", "parallel", "train", "data", "checkpoint", "cluster", NULL};

/* One source being bound. */
struct reader {
	struct spec *s;
	const struct source *src;
	yaml_document_t *doc;
	enum origin_kind kind;
	const char *root_prefix;          /* "" for specs, "cluster." for cluster files */
	int set_line[SPEC_MAX_FIELDS];    /* where this source set each field (aliases collide) */
	int set_col[SPEC_MAX_FIELDS];
	long walked;
};

static void error_at_node(const struct reader *r, const yaml_node_t *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void error_at_node(const struct reader *r, const yaml_node_t *n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	diag_vat(DIAG_ERROR, r->src, n ? (int)n->start_mark.line + 1 : 0, n ? (int)n->start_mark.column + 1 : 0, fmt, ap);
	va_end(ap);
}

/* ---- YAML loading ---- */

/* Parse src->text from byte `shift` on (a --set value starts after "key="); marks and
 * errors are shifted by the same amount, so they still point into src. */
static int yaml_load_at(const struct source *src, size_t shift, yaml_document_t *doc)
{
	yaml_parser_t p;
	yaml_parser_initialize(&p);
	yaml_parser_set_input_string(&p, (const unsigned char *)src->text + shift, src->len - shift);
	int ok = yaml_parser_load(&p, doc);
	if (!ok) {
		const yaml_mark_t *m = &p.problem_mark;
		const char *problem = p.problem ? p.problem : "malformed input";
		int line = (int)m->line + 1, col = (int)(m->column + (m->line ? 0 : shift)) + 1;
		if (shift && line > 1) /* a --set value is one line: the problem is at its end */
			line = 1, col = (int)src->len + 1;
		if (p.context)
			diag_at(DIAG_ERROR, src, line, col, "invalid YAML: %s (%s)", problem, p.context);
		else
			diag_at(DIAG_ERROR, src, line, col, "invalid YAML: %s", problem);
	} else if (shift) {
		for (yaml_node_t *n = doc->nodes.start; n < doc->nodes.top; n++)
			if (n->start_mark.line == 0)
				n->start_mark.column += shift;
	}
	yaml_parser_delete(&p);
	return ok;
}

static int yaml_load(const struct source *src, yaml_document_t *doc) { return yaml_load_at(src, 0, doc); }

static const char *scalar(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

static int is_plain(const yaml_node_t *n) { return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE; }

/* YAML 1.1 null: an empty or ~/null plain scalar. */
static int is_null(const yaml_node_t *n)
{
	if (n->type != YAML_SCALAR_NODE || !is_plain(n))
		return 0;
	const char *v = scalar(n);
	return !*v || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

static const char *node_kind(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_MAPPING_NODE: return "a mapping";
	case YAML_SEQUENCE_NODE: return "a list";
	default: return is_null(n) ? "nothing" : "a single value";
	}
}

/* ---- scalar conversion ---- */

static int parse_int(const char *t, int64_t *out)
{
	char *end;
	errno = 0;
	if (!*t || isspace((unsigned char)*t))
		return 0;
	long long v = strtoll(t, &end, 10);
	if (errno || *end)
		return 0;
	*out = v;
	return 1;
}

static int parse_float(const char *t, double *out)
{
	char *end;
	if (!*t || isspace((unsigned char)*t))
		return 0;
	/* strtod accepts hex, inf and nan; a spec means none of them. */
	for (const char *p = t; *p; p++)
		if (!strchr("0123456789+-.eE", *p))
			return 0;
	errno = 0;
	double v = strtod(t, &end);
	if (errno == ERANGE || *end || !isfinite(v))
		return 0;
	*out = v;
	return 1;
}

static int parse_bool(const char *t, bool *out)
{
	static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", NULL};
	static const char *const no[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", NULL};
	for (int i = 0; yes[i]; i++)
		if (!strcmp(t, yes[i]))
			return *out = true, 1;
	for (int i = 0; no[i]; i++)
		if (!strcmp(t, no[i]))
			return *out = false, 1;
	return 0;
}

static void fmt_num(char *buf, size_t n, double v)
{
	if (v == floor(v) && fabs(v) < 1e15)
		snprintf(buf, n, "%.0f", v);
	else
		snprintf(buf, n, "%g", v);
}

static int check_range(const struct reader *r, const struct field *f, const yaml_node_t *n, double v)
{
	if (v >= f->min && v <= f->max)
		return 1;
	char lo[32], hi[32], got[32];
	fmt_num(lo, sizeof lo, f->min);
	fmt_num(hi, sizeof hi, f->max);
	fmt_num(got, sizeof got, v);
	error_at_node(r, n, "%s: %s is out of range; it must be between %s and %s", f->path, got, lo, hi);
	return 0;
}

/* Resolve a path string written in source `src` against the directory of src. */
static char *resolve_path(const struct source *src, const char *path)
{
	if (path[0] == '/' || !src || !strcmp(src->dir, "."))
		return strdup(path);
	size_t n = strlen(src->dir) + strlen(path) + 2;
	char *p = malloc(n);
	snprintf(p, n, "%s/%s", src->dir, path);
	return p;
}

/* Paths that name files are resolved against the naming file, so a spec can be used from
 * any working directory. checkpoint.dir stays relative to where the trainer runs. */
static int is_path_field(const struct field *f)
{
	return !strcmp(f->path, "model.hf_config") || !strcmp(f->path, "parallel.cluster") ||
	       !strcmp(f->path, "data.paths") || !strcmp(f->path, "checkpoint.init_from");
}

static void free_str_list(struct str_list *l)
{
	for (int i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static int expect_scalar(const struct reader *r, const struct field *f, const yaml_node_t *n, const char *what)
{
	if (n->type == YAML_SCALAR_NODE && !is_null(n))
		return 1;
	error_at_node(r, n, "%s: expected %s, got %s", f->path, what, node_kind(n));
	return 0;
}

/* Convert one scalar node for a number/bool/enum field; 1 on success. */
static int convert_scalar(const struct reader *r, const struct field *f, const yaml_node_t *n, void *dst)
{
	char list[256];
	switch (f->type) {
	case FIELD_INT: {
		int64_t v;
		if (!expect_scalar(r, f, n, "an integer"))
			return 0;
		if (!is_plain(n) || !parse_int(scalar(n), &v)) {
			error_at_node(r, n, "%s: expected an integer, got %s'%s'", f->path, is_plain(n) ? "" : "the string ", scalar(n));
			return 0;
		}
		if (!check_range(r, f, n, (double)v))
			return 0;
		*(int64_t *)dst = v;
		return 1;
	}
	case FIELD_FLOAT: {
		double v;
		if (!expect_scalar(r, f, n, "a number"))
			return 0;
		if (!is_plain(n) || !parse_float(scalar(n), &v)) {
			error_at_node(r, n, "%s: expected a number, got %s'%s'", f->path, is_plain(n) ? "" : "the string ", scalar(n));
			return 0;
		}
		if (!check_range(r, f, n, v))
			return 0;
		*(double *)dst = v;
		return 1;
	}
	case FIELD_BOOL: {
		bool v;
		if (!expect_scalar(r, f, n, "true or false"))
			return 0;
		if (!is_plain(n) || !parse_bool(scalar(n), &v)) {
			error_at_node(r, n, "%s: expected true or false, got '%s'", f->path, scalar(n));
			return 0;
		}
		*(bool *)dst = v;
		return 1;
	}
	case FIELD_ENUM: {
		if (!expect_scalar(r, f, n, "one of its names"))
			return 0;
		int v = schema_enum_value(f->enum_names, scalar(n));
		if (v < 0) {
			schema_enum_list(f->enum_names, list, sizeof list);
			error_at_node(r, n, "%s: unknown value '%s'; expected %s", f->path, scalar(n), list);
			return 0;
		}
		*(int *)dst = v;
		return 1;
	}
	default:
		return 0;
	}
}

/* Bind node n to field f (when this source outranks the one that set it before). */
static void bind(struct reader *r, const struct field *f, const yaml_node_t *key, const yaml_node_t *n)
{
	int idx = schema_index(f);
	struct origin *o = &r->s->origin[idx];
	/* HF configs may spell one value twice (GPT-OSS: num_experts_per_tok and
	 * experts_per_token); there the last one read wins. */
	if (r->set_line[idx] && r->kind != ORIGIN_HF_CONFIG) {
		error_at_node(r, key, "%s is set twice in this file (first at line %d, column %d)", f->path, r->set_line[idx], r->set_col[idx]);
		return;
	}
	r->set_line[idx] = (int)key->start_mark.line + 1;
	r->set_col[idx] = (int)key->start_mark.column + 1;
	int wins = r->kind >= o->kind;
	void *dst = schema_ptr(r->s, f);
	union {
		int64_t i;
		double d;
		bool b;
		int e;
	} tmp;

	switch (f->type) {
	case FIELD_INT:
	case FIELD_FLOAT:
	case FIELD_BOOL:
	case FIELD_ENUM:
		if (!convert_scalar(r, f, n, &tmp))
			return;
		if (!wins)
			return;
		if (f->type == FIELD_INT)
			*(int64_t *)dst = tmp.i;
		else if (f->type == FIELD_FLOAT)
			*(double *)dst = tmp.d;
		else if (f->type == FIELD_BOOL)
			*(bool *)dst = tmp.b;
		else
			*(int *)dst = tmp.e;
		break;
	case FIELD_STRING:
		if (!expect_scalar(r, f, n, "a string"))
			return;
		if (!wins)
			return;
		free(*(char **)dst);
		*(char **)dst = is_path_field(f) ? resolve_path(r->src, scalar(n)) : strdup(scalar(n));
		break;
	case FIELD_INT_LIST: {
		if (n->type != YAML_SEQUENCE_NODE) {
			error_at_node(r, n, "%s: expected a list of integers, got %s", f->path, node_kind(n));
			return;
		}
		struct int_list l = {0};
		int count = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
		l.v = calloc((size_t)count + 1, sizeof *l.v);
		int ok = 1;
		for (int i = 0; i < count && ok; i++) {
			yaml_node_t *item = yaml_document_get_node(r->doc, n->data.sequence.items.start[i]);
			struct field elem = *f;
			elem.type = FIELD_INT;
			ok = convert_scalar(r, &elem, item, &l.v[l.n]);
			l.n += ok;
		}
		if (!ok || !wins) {
			free(l.v);
			return;
		}
		free(((struct int_list *)dst)->v);
		*(struct int_list *)dst = l;
		break;
	}
	case FIELD_STR_LIST: {
		/* A single string is a list of one. */
		struct str_list l = {0};
		if (n->type == YAML_SCALAR_NODE && !is_null(n)) {
			l.v = calloc(1, sizeof *l.v);
			l.v[l.n++] = is_path_field(f) ? resolve_path(r->src, scalar(n)) : strdup(scalar(n));
		} else if (n->type == YAML_SEQUENCE_NODE) {
			int count = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
			l.v = calloc((size_t)count + 1, sizeof *l.v);
			for (int i = 0; i < count; i++) {
				yaml_node_t *item = yaml_document_get_node(r->doc, n->data.sequence.items.start[i]);
				if (item->type != YAML_SCALAR_NODE || is_null(item)) {
					error_at_node(r, item, "%s: expected a list of strings, got %s in it", f->path, node_kind(item));
					free_str_list(&l);
					return;
				}
				l.v[l.n++] = is_path_field(f) ? resolve_path(r->src, scalar(item)) : strdup(scalar(item));
			}
		} else {
			error_at_node(r, n, "%s: expected a list of strings, got %s", f->path, node_kind(n));
			return;
		}
		if (!wins) {
			free_str_list(&l);
			return;
		}
		free_str_list((struct str_list *)dst);
		*(struct str_list *)dst = l;
		break;
	}
	}
	o->kind = r->kind;
	o->src = r->src;
	o->line = (int)n->start_mark.line + 1;
	o->col = (int)n->start_mark.column + 1;
}

/* ---- walking mappings ---- */

static int is_section(const char *name)
{
	for (int i = 0; section_names[i]; i++)
		if (!strcmp(section_names[i], name))
			return 1;
	return 0;
}

static void unknown_key(struct reader *r, const yaml_node_t *key, const char *path, const char *prefix)
{
	const char *k = scalar(key);
	if (!*prefix || !strcmp(prefix, r->root_prefix)) {
		/* A top-level key: suggest a section by spelling. */
		const char *best = NULL;
		int best_d = 3; /* at most two letters off */
		for (int i = 0; section_names[i]; i++) {
			int d = schema_distance(k, section_names[i]);
			if (d < best_d)
				best_d = d, best = section_names[i];
		}
		const char *field = schema_suggest(path);
		if (field && strchr(field, '.'))
			error_at_node(r, key, "unknown key '%s' at the top level; did you mean '%s'?", k, field);
		else if (best)
			error_at_node(r, key, "unknown section '%s'; did you mean '%s'?", k, best);
		else
			error_at_node(r, key, "unknown section '%s'; sections are model, moe, parallel, train, data, checkpoint and cluster", k);
		return;
	}
	const char *hint = schema_suggest(path);
	char where[128];
	snprintf(where, sizeof where, "%.*s", (int)strlen(prefix) - 1, prefix);
	if (hint)
		error_at_node(r, key, "unknown key '%s' in %s; did you mean '%s'?", k, where, hint);
	else
		error_at_node(r, key, "unknown key '%s' in %s (`moec check --keys` lists every key)", k, where);
}

static void walk_mapping(struct reader *r, const yaml_node_t *map, const char *prefix)
{
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *key = yaml_document_get_node(r->doc, p->key);
		yaml_node_t *val = yaml_document_get_node(r->doc, p->value);
		if (++r->walked > MAX_NODES_WALKED) {
			if (r->walked == MAX_NODES_WALKED + 1)
				error_at_node(r, key, "spec too large (over %d keys, e.g. from YAML aliases)", MAX_NODES_WALKED);
			return;
		}
		if (key->type != YAML_SCALAR_NODE) {
			error_at_node(r, key, "keys must be plain names, got %s", node_kind(key));
			continue;
		}
		const char *k = scalar(key);
		if (!*prefix && !strcmp(k, "include"))
			continue; /* includes were read before this walk */
		char path[256];
		snprintf(path, sizeof path, "%s%s", prefix, k);
		if (strlen(prefix) + strlen(k) >= sizeof path - 1) {
			error_at_node(r, key, "key '%.40s...' is too long", k);
			continue;
		}
		const struct field *f = schema_find(path);
		if (f) {
			bind(r, f, key, val);
			continue;
		}
		if (schema_is_mapping(path)) {
			if (val->type == YAML_MAPPING_NODE) {
				if (!*prefix && r->kind == ORIGIN_FILE && is_section(k)) {
					for (int i = 0; section_names[i]; i++)
						if (!strcmp(section_names[i], k))
							r->s->sections[i] = (struct origin){r->kind, r->src, (int)key->start_mark.line + 1, (int)key->start_mark.column + 1};
				}
				char sub[260];
				snprintf(sub, sizeof sub, "%s.", path);
				walk_mapping(r, val, sub);
			} else if (!is_null(val)) {
				error_at_node(r, val, "%s: expected a mapping of keys, got %s", path, node_kind(val));
			}
			continue;
		}
		unknown_key(r, key, path, prefix);
	}
}

/* Find key `name` in mapping `map` of doc, or NULL. */
static yaml_node_t *map_get(yaml_document_t *doc, const yaml_node_t *map, const char *name, yaml_node_t **keyp)
{
	if (!map || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *key = yaml_document_get_node(doc, p->key);
		if (key->type == YAML_SCALAR_NODE && !strcmp(scalar(key), name)) {
			if (keyp)
				*keyp = key;
			return yaml_document_get_node(doc, p->value);
		}
	}
	return NULL;
}

/* ---- sources ---- */

static int read_spec_file(struct spec *s, const char *path, enum origin_kind kind, int depth,
                          const struct reader *includer, const yaml_node_t *at);
static void read_hf_config(struct reader *r, const yaml_node_t *root);

static int file_exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Presets: a name ("qwen3_30b_a3b") is models/<name>.yaml, looked for in the including
 * file's models/ and ../models/, in $MOEC_MODELS_DIR, then in the source tree moec was built
 * from. A value with a '/' or ending in .yaml is a path relative to the including file. */
static char *find_preset(const struct source *from, const char *name)
{
	char buf[4096];
	size_t len = strlen(name);
	if (strchr(name, '/') || (len > 5 && !strcmp(name + len - 5, ".yaml"))) {
		char *p = resolve_path(from, name);
		if (file_exists(p))
			return p;
		free(p);
		return NULL;
	}
	const char *dirs[] = {"models", "../models", getenv("MOEC_MODELS_DIR"), MOEC_SOURCE_DIR "/models"};
	for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
		if (!dirs[i])
			continue;
		if (i < 2)
			snprintf(buf, sizeof buf, "%s/%s/%s.yaml", from->dir, dirs[i], name);
		else
			snprintf(buf, sizeof buf, "%s/%s.yaml", dirs[i], name);
		if (file_exists(buf))
			return strdup(buf);
	}
	return NULL;
}

/* The chain of files being read (includes nest), to name a cycle instead of looping. */
static char *include_chain[MAX_INCLUDE_DEPTH + 2];
static int include_depth;

static void read_includes(struct reader *r, const yaml_node_t *root, int depth)
{
	yaml_node_t *key = NULL;
	yaml_node_t *inc = map_get(r->doc, root, "include", &key);
	if (!inc)
		return;
	int count = 1;
	yaml_node_item_t *items = NULL;
	if (inc->type == YAML_SEQUENCE_NODE) {
		items = inc->data.sequence.items.start;
		count = (int)(inc->data.sequence.items.top - items);
	} else if (inc->type != YAML_SCALAR_NODE || is_null(inc)) {
		error_at_node(r, inc, "include: expected a preset name or a list of them, got %s", node_kind(inc));
		return;
	}
	for (int i = 0; i < count; i++) {
		yaml_node_t *n = items ? yaml_document_get_node(r->doc, items[i]) : inc;
		if (n->type != YAML_SCALAR_NODE || is_null(n)) {
			error_at_node(r, n, "include: expected a preset name, got %s", node_kind(n));
			continue;
		}
		char *path = find_preset(r->src, scalar(n));
		if (!path) {
			error_at_node(r, n, "include: no preset '%s' (looked for %s.yaml in %s, %s/models and the models/ directory moec was built with)",
			              scalar(n), scalar(n), r->src->dir, r->src->dir);
			continue;
		}
		read_spec_file(r->s, path, ORIGIN_PRESET, depth + 1, r, n);
		free(path);
	}
}

static int read_spec_source(struct spec *s, const struct source *src, enum origin_kind kind, int depth)
{
	yaml_document_t doc;
	if (!yaml_load(src, &doc))
		return 0;
	struct reader *r = calloc(1, sizeof *r);
	*r = (struct reader){.s = s, .src = src, .doc = &doc, .kind = kind, .root_prefix = ""};
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	if (!root || is_null(root)) {
		diag_at(DIAG_ERROR, src, 1, 1, "the spec is empty; it needs at least a model: section or an include:");
	} else if (root->type != YAML_MAPPING_NODE) {
		error_at_node(r, root, "a spec is a mapping of sections (model:, moe:, ...), got %s", node_kind(root));
	} else {
		read_includes(r, root, depth);
		read_hf_config(r, root);
		walk_mapping(r, root, "");
	}
	yaml_document_delete(&doc);
	free(r);
	return 1;
}

static int read_spec_file(struct spec *s, const char *path, enum origin_kind kind, int depth,
                          const struct reader *includer, const yaml_node_t *at)
{
	char *real = realpath(path, NULL);
	for (int i = 0; real && i < include_depth; i++)
		if (!strcmp(include_chain[i], real)) {
			error_at_node(includer, at, "include cycle: '%s' includes itself (through %d file%s)", path, include_depth - i, include_depth - i == 1 ? "" : "s");
			free(real);
			return 0;
		}
	if (depth > MAX_INCLUDE_DEPTH) {
		error_at_node(includer, at, "include: presets nested more than %d deep", MAX_INCLUDE_DEPTH);
		free(real);
		return 0;
	}
	struct source *src = source_load(path);
	if (!src) {
		if (includer)
			error_at_node(includer, at, "cannot read '%s': %s", path, source_load_error());
		else
			diag_at(DIAG_ERROR, NULL, 0, 0, "cannot read spec '%s': %s", path, source_load_error());
		free(real);
		return 0;
	}
	if (!s->main_source)
		s->main_source = src;
	include_chain[include_depth++] = real ? real : strdup(path);
	int ok = read_spec_source(s, src, kind, depth);
	free(include_chain[--include_depth]);
	return ok;
}

/* HF config.json keys whose meaning depends on the family: Mixtral's and GPT-OSS's
 * intermediate_size is the expert width (they have no dense MLP layers). */
static const struct field *hf_field(const char *key, int family)
{
	if (!strcmp(key, "intermediate_size") && (family == FAMILY_MIXTRAL || family == FAMILY_GPT_OSS))
		return schema_find("moe.moe_intermediate_size");
	for (int i = 0; i < schema_nfields; i++) {
		const char *p = schema_fields[i].hf_keys;
		size_t n = strlen(key);
		while (p && *p) {
			const char *end = strchr(p, ',');
			size_t len = end ? (size_t)(end - p) : strlen(p);
			if (len == n && !memcmp(p, key, n))
				return &schema_fields[i];
			p = end ? end + 1 : NULL;
		}
	}
	return NULL;
}

/* What a model_type implies beyond its config.json keys (architecture facts). */
static void hf_family_facts(struct reader *r, int family, const yaml_node_t *at)
{
	static const struct {
		int family;
		const char *path;
		const char *value;
	} facts[] = {
		{FAMILY_QWEN3_MOE, "model.qk_norm", "true"},
		{FAMILY_DEEPSEEK_V3, "model.attention", "mla"},
		{FAMILY_DEEPSEEK_V3, "moe.router", "sigmoid_topk"},
		{FAMILY_GPT_OSS, "model.attention_sinks", "true"},
		{FAMILY_GPT_OSS, "moe.expert_bias", "true"},
		{FAMILY_GPT_OSS, "moe.router_bias", "true"},
		{FAMILY_GPT_OSS, "moe.activation", "swiglu_clamped"},
	};
	for (size_t i = 0; i < sizeof facts / sizeof facts[0]; i++) {
		if (facts[i].family != family)
			continue;
		const struct field *f = schema_find(facts[i].path);
		struct origin *o = &r->s->origin[schema_index(f)];
		if (o->kind > r->kind)
			continue;
		void *dst = schema_ptr(r->s, f);
		if (f->type == FIELD_BOOL)
			*(bool *)dst = true;
		else
			*(int *)dst = schema_enum_value(f->enum_names, facts[i].value);
		*o = (struct origin){r->kind, r->src, (int)at->start_mark.line + 1, (int)at->start_mark.column + 1};
	}
}

/* model.hf_config: import a Hugging Face config.json (libyaml reads JSON). */
static void read_hf_config(struct reader *outer, const yaml_node_t *root)
{
	yaml_node_t *model = map_get(outer->doc, root, "model", NULL);
	yaml_node_t *key = NULL;
	yaml_node_t *val = map_get(outer->doc, model, "hf_config", &key);
	if (!val)
		return;
	if (val->type != YAML_SCALAR_NODE || is_null(val))
		return; /* walk_mapping reports the type error */
	char *path = resolve_path(outer->src, scalar(val));
	struct source *src = source_load(path);
	if (!src) {
		error_at_node(outer, val, "model.hf_config: cannot read '%s': %s", path, source_load_error());
		free(path);
		return;
	}
	free(path);
	yaml_document_t doc;
	if (!yaml_load(src, &doc))
		return;
	struct reader *r = calloc(1, sizeof *r);
	*r = (struct reader){.s = outer->s, .src = src, .doc = &doc, .kind = ORIGIN_HF_CONFIG, .root_prefix = ""};
	yaml_node_t *cfg = yaml_document_get_root_node(&doc);
	if (!cfg || cfg->type != YAML_MAPPING_NODE) {
		diag_at(DIAG_ERROR, src, 1, 1, "a Hugging Face config.json is a JSON object");
		goto out;
	}
	/* model_type first: it decides how intermediate_size reads. */
	int family = -1;
	yaml_node_t *mt_key = NULL;
	yaml_node_t *mt = map_get(&doc, cfg, "model_type", &mt_key);
	if (mt && mt->type == YAML_SCALAR_NODE) {
		family = schema_enum_value(family_names, scalar(mt));
		if (family < 0) {
			error_at_node(r, mt, "model_type '%s' is not a MoE family moec supports (qwen3_moe, mixtral, deepseek_v3 or gpt_oss)", scalar(mt));
			goto out;
		}
		hf_family_facts(r, family, mt);
	}
	for (yaml_node_pair_t *p = cfg->data.mapping.pairs.start; p < cfg->data.mapping.pairs.top; p++) {
		yaml_node_t *k = yaml_document_get_node(&doc, p->key);
		yaml_node_t *v = yaml_document_get_node(&doc, p->value);
		if (k->type != YAML_SCALAR_NODE || is_null(v))
			continue; /* HF writes null for unused options */
		/* Qwen configs carry a sliding_window that is off unless use_sliding_window. */
		yaml_node_t *use_sw = map_get(&doc, cfg, "use_sliding_window", NULL);
		if (!strcmp(scalar(k), "sliding_window") && use_sw && use_sw->type == YAML_SCALAR_NODE && !strcmp(scalar(use_sw), "false"))
			continue;
		/* Newer transformers nest the RoPE base: rope_parameters: {rope_theta: ...}. */
		if (!strcmp(scalar(k), "rope_parameters") && v->type == YAML_MAPPING_NODE) {
			yaml_node_t *theta_key = NULL;
			yaml_node_t *theta = map_get(&doc, v, "rope_theta", &theta_key);
			if (theta)
				bind(r, schema_find("model.rope_theta"), theta_key, theta);
			continue;
		}
		const struct field *f = hf_field(scalar(k), family);
		if (f)
			bind(r, f, k, v);
		/* Other HF keys (architectures, torch_dtype, rope_scaling, ...) do not change the
		 * training job moec builds; they are ignored. */
	}
out:
	yaml_document_delete(&doc);
	free(r);
}

static void read_cluster_file(struct spec *s, const char *path, const struct source *named_in, int line, int col)
{
	struct source *src = source_load(path);
	if (!src) {
		diag_at(DIAG_ERROR, named_in, line, col, "cannot read cluster file '%s': %s", path, source_load_error());
		return;
	}
	yaml_document_t doc;
	if (!yaml_load(src, &doc))
		return;
	struct reader *r = calloc(1, sizeof *r);
	*r = (struct reader){.s = s, .src = src, .doc = &doc, .kind = ORIGIN_CLUSTER, .root_prefix = "cluster."};
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	if (!root || root->type != YAML_MAPPING_NODE)
		diag_at(DIAG_ERROR, src, 1, 1, "a cluster file is a mapping of keys (nvlink_domain:, intra_node_gbps:, ...)");
	else
		walk_mapping(r, root, "cluster.");
	yaml_document_delete(&doc);
	free(r);
}

/* --set a.b.c=value: the value is YAML, so lists work too. The source is the argument as
 * typed, so the caret lands under the offending part of it. */
static void read_override(struct spec *s, const char *arg)
{
	struct source *src = source_from_string("--set", arg);
	const char *eq = strchr(arg, '=');
	if (!eq || eq == arg) {
		diag_at(DIAG_ERROR, src, 1, 1, "expected --set key.path=value");
		return;
	}
	size_t shift = (size_t)(eq + 1 - arg);
	yaml_document_t doc;
	if (!yaml_load_at(src, shift, &doc))
		return;
	char *path = strndup(arg, (size_t)(eq - arg));
	const char *last = strrchr(path, '.');
	last = last ? last + 1 : path;
	/* A stand-in key node, so bind() and unknown_key() can point at the key. */
	yaml_node_t key = {.type = YAML_SCALAR_NODE};
	key.data.scalar.value = (yaml_char_t *)last;
	key.data.scalar.style = YAML_PLAIN_SCALAR_STYLE;
	key.start_mark.column = (size_t)(last - path);
	struct reader *r = calloc(1, sizeof *r);
	*r = (struct reader){.s = s, .src = src, .doc = &doc, .kind = ORIGIN_OVERRIDE, .root_prefix = ""};
	yaml_node_t *val = yaml_document_get_root_node(&doc);
	const struct field *f = schema_find(path);
	if (!val) {
		diag_at(DIAG_ERROR, src, 1, (int)shift + 1, "--set %s: no value after '='", path);
	} else if (f) {
		bind(r, f, &key, val);
	} else if (schema_is_mapping(path)) {
		if (val->type != YAML_MAPPING_NODE) {
			error_at_node(r, val, "%s: expected a mapping of keys, got %s", path, node_kind(val));
		} else {
			char *prefix = malloc(strlen(path) + 2);
			sprintf(prefix, "%s.", path);
			walk_mapping(r, val, prefix);
			free(prefix);
		}
	} else {
		char prefix[256];
		snprintf(prefix, sizeof prefix, "%.*s", (int)(last - path), path);
		unknown_key(r, &key, path, prefix);
	}
	yaml_document_delete(&doc);
	free(r);
	free(path);
}

static void apply_defaults(struct spec *s)
{
	for (int i = 0; i < schema_nfields; i++) {
		const struct field *f = &schema_fields[i];
		if (!f->def)
			continue;
		struct source *src = source_from_string("<default>", f->def);
		yaml_document_t doc;
		if (!yaml_load(src, &doc))
			abort(); /* a broken default is a bug in schema.c */
		struct reader r = {.s = s, .src = src, .doc = &doc, .kind = ORIGIN_DEFAULT, .root_prefix = ""};
		yaml_node_t *root = yaml_document_get_root_node(&doc);
		yaml_node_t key = *root;
		bind(&r, f, &key, root);
		s->origin[i] = (struct origin){ORIGIN_DEFAULT, NULL, 0, 0};
		yaml_document_delete(&doc);
	}
}

/* Overrides and the cluster file come after the user's file (see the top of this file). */
static void read_after_spec(struct spec *s, const struct parse_options *opt)
{
	for (int i = 0; opt && i < opt->nsets; i++)
		read_override(s, opt->sets[i]);
	int idx = schema_index(schema_find("parallel.cluster"));
	if (opt && opt->cluster) {
		free(s->parallel.cluster);
		s->parallel.cluster = strdup(opt->cluster);
		s->origin[idx] = (struct origin){ORIGIN_OVERRIDE, NULL, 0, 0};
		read_cluster_file(s, opt->cluster, NULL, 0, 0);
	} else if (s->parallel.cluster) {
		const struct origin *o = &s->origin[idx];
		read_cluster_file(s, s->parallel.cluster, o->src, o->line, o->col);
	}
}

int spec_parse(struct spec *s, const char *path, const struct parse_options *opt)
{
	int before = diag_error_count();
	memset(s, 0, sizeof *s);
	apply_defaults(s);
	if (read_spec_file(s, path, ORIGIN_FILE, 0, NULL, NULL))
		read_after_spec(s, opt);
	return diag_error_count() - before;
}

int spec_parse_text(struct spec *s, const char *name, const char *text, const struct parse_options *opt)
{
	int before = diag_error_count();
	memset(s, 0, sizeof *s);
	apply_defaults(s);
	struct source *src = source_from_string(name, text);
	s->main_source = src;
	if (read_spec_source(s, src, ORIGIN_FILE, 0))
		read_after_spec(s, opt);
	return diag_error_count() - before;
}

struct origin spec_section_origin(const struct spec *s, const char *section)
{
	for (int i = 0; section_names[i]; i++)
		if (!strcmp(section_names[i], section))
			return s->sections[i];
	return (struct origin){0};
}

void spec_free(struct spec *s)
{
	for (int i = 0; i < schema_nfields; i++) {
		const struct field *f = &schema_fields[i];
		void *p = schema_ptr(s, f);
		if (f->type == FIELD_STRING)
			free(*(char **)p);
		else if (f->type == FIELD_INT_LIST)
			free(((struct int_list *)p)->v);
		else if (f->type == FIELD_STR_LIST)
			free_str_list(p);
	}
	memset(s, 0, sizeof *s);
}
