/* geometry.c - launch lines to C expressions. See geometry.h. */
#include "geometry.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

struct translator {
	const struct kernel_inst *k;
	const struct kernel_sig *sig;
	struct geometry *g;
	bool uses_param;   /* the expression read a runtime argument */
	char *err;
	size_t errlen;
	int depth;
};

struct out {
	char *buf;
	size_t n, len;
	bool overflow;
};

static void put(struct out *o, const char *s, size_t len)
{
	if (o->len + len + 1 > o->n) {
		o->overflow = true;
		return;
	}
	memcpy(o->buf + o->len, s, len);
	o->len += len;
	o->buf[o->len] = 0;
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static int translate(struct translator *t, const char *s, size_t len, struct out *o);

/* The end of the parenthesized group opening at s[0] == '(' (index of its ')'), or 0. */
static size_t group_end(const char *s, size_t len)
{
	int depth = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '(')
			depth++;
		else if (s[i] == ')' && --depth == 0)
			return i;
	}
	return 0;
}

/* The top-level position of character c in s[0..len), or len. */
static size_t top_level(const char *s, size_t len, char c)
{
	int depth = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '(')
			depth++;
		else if (s[i] == ')')
			depth--;
		else if (s[i] == c && depth == 0)
			return i;
	}
	return len;
}

static bool is_param(const struct translator *t, const char *id)
{
	for (int i = 0; i < t->sig->nparams; i++)
		if (!strcmp(t->sig->params[i].name, id))
			return true;
	return false;
}

static int identifier(struct translator *t, const char *id, struct out *o)
{
	char value[KERNEL_CONST_VALUE_MAX * 4];
	const char *v = kernels_dict_get(&t->k->consts, id);
	if (!v && kernels_default_value(t->k, id, value, sizeof value))
		v = value;
	if (v) { /* a constant: its value, itself translated (defaults are expressions) */
		if (++t->depth > 16) {
			snprintf(t->err, t->errlen, "constant %s: definitions nest too deep", id);
			return -1;
		}
		puts_(o, "(");
		int rc = translate(t, v, strlen(v), o);
		puts_(o, ")");
		t->depth--;
		return rc;
	}
	if (is_param(t, id)) {
		t->uses_param = true;
		puts_(o, id);
		return 0;
	}
	struct geometry *g = t->g;
	bool known = false;
	for (int i = 0; i < g->nextra; i++)
		known |= !strcmp(g->extra[i], id);
	if (!known) {
		if (g->nextra == GEOMETRY_MAX_EXTRA) {
			snprintf(t->err, t->errlen, "too many unknown identifiers (%s)", id);
			return -1;
		}
		snprintf(g->extra[g->nextra++], sizeof g->extra[0], "%s", id);
	}
	t->uses_param = true;
	puts_(o, id);
	return 0;
}

/* f(args) for f in max, min, ceil. */
static int call(struct translator *t, const char *f, const char *args, size_t len, struct out *o)
{
	if (!strcmp(f, "ceil")) {
		size_t slash = top_level(args, len, '/');
		if (slash == len) {
			snprintf(t->err, t->errlen, "ceil(%.*s) is not ceil(a / b)", (int)len, args);
			return -1;
		}
		puts_(o, "MOEC_CEIL_DIV(");
		if (translate(t, args, slash, o))
			return -1;
		puts_(o, ", ");
		if (translate(t, args + slash + 1, len - slash - 1, o))
			return -1;
		puts_(o, ")");
		return 0;
	}
	puts_(o, !strcmp(f, "max") ? "MOEC_MAX(" : "MOEC_MIN(");
	size_t comma = top_level(args, len, ',');
	if (comma == len) {
		snprintf(t->err, t->errlen, "%s() needs two arguments", f);
		return -1;
	}
	if (translate(t, args, comma, o))
		return -1;
	puts_(o, ", ");
	if (translate(t, args + comma + 1, len - comma - 1, o))
		return -1;
	puts_(o, ")");
	return 0;
}

static int translate(struct translator *t, const char *s, size_t len, struct out *o)
{
	for (size_t i = 0; i < len;) {
		if (isalpha((unsigned char)s[i]) || s[i] == '_') {
			size_t j = i;
			while (j < len && (isalnum((unsigned char)s[j]) || s[j] == '_'))
				j++;
			char id[64];
			snprintf(id, sizeof id, "%.*s", (int)(j - i), s + i);
			size_t k = j;
			while (k < len && s[k] == ' ')
				k++;
			if ((!strcmp(id, "max") || !strcmp(id, "min") || !strcmp(id, "ceil")) && k < len && s[k] == '(') {
				size_t end = group_end(s + k, len - k);
				if (!end) {
					snprintf(t->err, t->errlen, "unbalanced parentheses after %s", id);
					return -1;
				}
				if (call(t, id, s + k + 1, end - 1, o))
					return -1;
				i = k + end + 1;
				continue;
			}
			if (identifier(t, id, o))
				return -1;
			i = j;
			continue;
		}
		if (isdigit((unsigned char)s[i])) { /* a number, with C suffixes as written */
			size_t j = i;
			while (j < len && (isalnum((unsigned char)s[j]) || s[j] == '.'))
				j++;
			put(o, s + i, j - i);
			i = j;
			continue;
		}
		if (!strchr(" +-*/%()?:<>=!&|", s[i])) {
			snprintf(t->err, t->errlen, "unexpected '%c'", s[i]);
			return -1;
		}
		put(o, s + i, 1);
		i++;
	}
	return o->overflow ? (snprintf(t->err, t->errlen, "expression too long"), -1) : 0;
}

/* The body of key=( ... ) in the launch line; false when absent. */
static bool field(const char *line, const char *key, const char **body, size_t *len)
{
	const char *p = strstr(line, key);
	if (!p || p[strlen(key)] != '(')
		return false;
	p += strlen(key);
	size_t end = group_end(p, strlen(p));
	if (!end)
		return false;
	*body = p + 1;
	*len = end - 1;
	return true;
}

/* dims of a grid=( ) or block=( ): up to three top-level comma-separated expressions. */
static int dims(struct translator *t, const char *body, size_t len, char out[3][GEOMETRY_EXPR_MAX])
{
	for (int d = 0; d < 3; d++)
		snprintf(out[d], GEOMETRY_EXPR_MAX, "1");
	for (int d = 0; len; d++) {
		if (d == 3) {
			snprintf(t->err, t->errlen, "more than three dimensions");
			return -1;
		}
		size_t comma = top_level(body, len, ',');
		struct out o = {out[d], GEOMETRY_EXPR_MAX, 0, false};
		out[d][0] = 0;
		if (translate(t, body, comma, &o))
			return -1;
		if (comma == len)
			break;
		body += comma + 1;
		len -= comma + 1;
	}
	return 0;
}

int geometry_translate(const struct kernel_inst *k, const struct kernel_sig *sig, struct geometry *g, char *err,
		       size_t errlen)
{
	memset(g, 0, sizeof *g);
	struct translator t = {.k = k, .sig = sig, .g = g, .err = err, .errlen = errlen};
	const char *body;
	size_t len;
	if (!field(k->launch, "grid=", &body, &len)) {
		snprintf(err, errlen, "no grid=( ) in the launch line");
		return -1;
	}
	if (dims(&t, body, len, g->grid))
		return -1;
	if (!field(k->launch, "block=", &body, &len)) {
		snprintf(err, errlen, "no block=( ) in the launch line");
		return -1;
	}
	if (dims(&t, body, len, g->block))
		return -1;
	snprintf(g->smem, sizeof g->smem, "0");
	g->smem_constant = true;
	if (field(k->launch, "smem=", &body, &len)) {
		struct out o = {g->smem, sizeof g->smem, 0, false};
		g->smem[0] = 0;
		t.uses_param = false;
		if (translate(&t, body, len, &o))
			return -1;
		g->smem_constant = !t.uses_param;
	}
	return 0;
}
