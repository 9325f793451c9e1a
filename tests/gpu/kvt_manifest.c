/* kvt_manifest.c - kernel_vs_twin's inputs from a moec build: manifest.json (a strict JSON
 * reader of its own: no dependency the GPU machine lacks) and the kernels' parameter lists in
 * gen/launch.h, which every driver's sig must match. */
#include "kvt.h"

/* ---- a strict JSON reader (RFC 8259), enough for manifest.json -------------------------- */
enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jv {
	int t;
	int b;
	double d;
	char *s;
	int n;
	struct jv *v; /* J_ARR / J_OBJ: n values */
	char **k;     /* J_OBJ: n keys */
};

struct jparse {
	const char *s, *p;
	char err[200];
	int depth;
};

static void jerr(struct jparse *j, const char *msg)
{
	if (j->err[0])
		return;
	int line = 1, col = 1;
	for (const char *q = j->s; q < j->p; q++) {
		if (*q == '\n')
			line++, col = 1;
		else
			col++;
	}
	snprintf(j->err, sizeof j->err, "%d:%d: %s", line, col, msg);
}

static void jws(struct jparse *j)
{
	while (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')
		j->p++;
}

static void jfree(struct jv *v)
{
	if (v->t == J_STR)
		free(v->s);
	if (v->t == J_ARR || v->t == J_OBJ) {
		for (int i = 0; i < v->n; i++) {
			jfree(&v->v[i]);
			if (v->t == J_OBJ)
				free(v->k[i]);
		}
		free(v->v);
		free(v->k);
	}
	memset(v, 0, sizeof *v);
}

static int jhex4(const char *p, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static int jstring(struct jparse *j, char **out)
{
	size_t cap = 32, n = 0;
	char *b = xmalloc(cap);
	j->p++; /* the opening quote */
	for (;;) {
		unsigned char ch = (unsigned char)*j->p;
		char tmp[4];
		int tn = 0;
		if (ch == '"') {
			j->p++;
			break;
		}
		if (ch == 0 || ch < 0x20) {
			jerr(j, ch ? "control character in a string" : "unterminated string");
			free(b);
			return -1;
		}
		if (ch == '\\') {
			j->p++;
			switch (*j->p) {
			case '"': tmp[tn++] = '"'; break;
			case '\\': tmp[tn++] = '\\'; break;
			case '/': tmp[tn++] = '/'; break;
			case 'b': tmp[tn++] = '\b'; break;
			case 'f': tmp[tn++] = '\f'; break;
			case 'n': tmp[tn++] = '\n'; break;
			case 'r': tmp[tn++] = '\r'; break;
			case 't': tmp[tn++] = '\t'; break;
			case 'u': {
				unsigned cp, lo;
				if (jhex4(j->p + 1, &cp)) {
					jerr(j, "bad \\u escape");
					free(b);
					return -1;
				}
				j->p += 4;
				if (cp >= 0xd800 && cp < 0xdc00) {
					if (j->p[1] != '\\' || j->p[2] != 'u' || jhex4(j->p + 3, &lo) || lo < 0xdc00 || lo > 0xdfff) {
						jerr(j, "unpaired surrogate in a \\u escape");
						free(b);
						return -1;
					}
					j->p += 6;
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				} else if (cp >= 0xdc00 && cp < 0xe000) {
					jerr(j, "unpaired surrogate in a \\u escape");
					free(b);
					return -1;
				}
				if (cp == 0) {
					jerr(j, "\\u0000 in a string");
					free(b);
					return -1;
				}
				if (cp < 0x80) {
					tmp[tn++] = (char)cp;
				} else if (cp < 0x800) {
					tmp[tn++] = (char)(0xc0 | (cp >> 6));
					tmp[tn++] = (char)(0x80 | (cp & 0x3f));
				} else if (cp < 0x10000) {
					tmp[tn++] = (char)(0xe0 | (cp >> 12));
					tmp[tn++] = (char)(0x80 | ((cp >> 6) & 0x3f));
					tmp[tn++] = (char)(0x80 | (cp & 0x3f));
				} else {
					tmp[tn++] = (char)(0xf0 | (cp >> 18));
					tmp[tn++] = (char)(0x80 | ((cp >> 12) & 0x3f));
					tmp[tn++] = (char)(0x80 | ((cp >> 6) & 0x3f));
					tmp[tn++] = (char)(0x80 | (cp & 0x3f));
				}
				break;
			}
			default:
				jerr(j, "bad escape in a string");
				free(b);
				return -1;
			}
			j->p++;
		} else {
			tmp[tn++] = (char)ch;
			j->p++;
		}
		if (n + (size_t)tn + 1 > cap) {
			cap = 2 * cap + (size_t)tn;
			char *nb = realloc(b, cap);
			if (!nb) {
				free(b);
				jerr(j, "out of memory");
				return -1;
			}
			b = nb;
		}
		memcpy(b + n, tmp, (size_t)tn);
		n += (size_t)tn;
	}
	b[n] = 0;
	*out = b;
	return 0;
}

static int jnumber(struct jparse *j, double *out)
{
	const char *q = j->p;
	if (*q == '-')
		q++;
	if (*q == '0')
		q++;
	else if (*q >= '1' && *q <= '9')
		while (*q >= '0' && *q <= '9')
			q++;
	else
		goto bad;
	if (*q == '.') {
		q++;
		if (!(*q >= '0' && *q <= '9'))
			goto bad;
		while (*q >= '0' && *q <= '9')
			q++;
	}
	if (*q == 'e' || *q == 'E') {
		q++;
		if (*q == '+' || *q == '-')
			q++;
		if (!(*q >= '0' && *q <= '9'))
			goto bad;
		while (*q >= '0' && *q <= '9')
			q++;
	}
	char tmp[64];
	if ((size_t)(q - j->p) >= sizeof tmp)
		goto bad;
	memcpy(tmp, j->p, (size_t)(q - j->p));
	tmp[q - j->p] = 0;
	*out = strtod(tmp, NULL);
	j->p = q;
	return 0;
bad:
	jerr(j, "bad number");
	return -1;
}

static int jvalue(struct jparse *j, struct jv *v)
{
	memset(v, 0, sizeof *v);
	jws(j);
	if (++j->depth > 64) {
		jerr(j, "nesting too deep");
		return -1;
	}
	int rc = 0;
	char c = *j->p;
	if (c == '{' || c == '[') {
		const int obj = c == '{';
		v->t = obj ? J_OBJ : J_ARR;
		int cap = 0;
		j->p++;
		jws(j);
		if (*j->p == (obj ? '}' : ']')) {
			j->p++;
			goto done;
		}
		for (;;) {
			if (v->n == cap) {
				cap = cap ? 2 * cap : 8;
				struct jv *nv = realloc(v->v, (size_t)cap * sizeof *nv);
				if (!nv) {
					jerr(j, "out of memory");
					rc = -1;
					goto done;
				}
				v->v = nv;
				if (obj) {
					char **nk = realloc(v->k, (size_t)cap * sizeof *nk);
					if (!nk) {
						jerr(j, "out of memory");
						rc = -1;
						goto done;
					}
					v->k = nk;
				}
			}
			if (obj) {
				jws(j);
				if (*j->p != '"') {
					jerr(j, "expected a key string");
					rc = -1;
					goto done;
				}
				char *key;
				if (jstring(j, &key)) {
					rc = -1;
					goto done;
				}
				for (int i = 0; i < v->n; i++)
					if (!strcmp(v->k[i], key)) {
						jerr(j, "duplicate key");
						free(key);
						rc = -1;
						goto done;
					}
				jws(j);
				if (*j->p != ':') {
					free(key);
					jerr(j, "expected ':'");
					rc = -1;
					goto done;
				}
				j->p++;
				v->k[v->n] = key;
			}
			if (jvalue(j, &v->v[v->n])) {
				if (obj)
					free(v->k[v->n]);
				rc = -1;
				goto done;
			}
			v->n++;
			jws(j);
			if (*j->p == ',') {
				j->p++;
				continue;
			}
			if (*j->p == (obj ? '}' : ']')) {
				j->p++;
				break;
			}
			jerr(j, obj ? "expected ',' or '}'" : "expected ',' or ']'");
			rc = -1;
			goto done;
		}
	} else if (c == '"') {
		v->t = J_STR;
		rc = jstring(j, &v->s);
		if (rc)
			v->t = J_NULL;
	} else if (!strncmp(j->p, "true", 4) || !strncmp(j->p, "false", 5)) {
		v->t = J_BOOL;
		v->b = c == 't';
		j->p += v->b ? 4 : 5;
	} else if (!strncmp(j->p, "null", 4)) {
		v->t = J_NULL;
		j->p += 4;
	} else if (c == '-' || (c >= '0' && c <= '9')) {
		v->t = J_NUM;
		rc = jnumber(j, &v->d);
	} else {
		jerr(j, c ? "unexpected character" : "unexpected end of input");
		rc = -1;
	}
done:
	j->depth--;
	if (rc)
		jfree(v);
	return rc;
}

static const struct jv *jget(const struct jv *o, const char *key)
{
	if (o->t != J_OBJ)
		return NULL;
	for (int i = 0; i < o->n; i++)
		if (!strcmp(o->k[i], key))
			return &o->v[i];
	return NULL;
}


static int ident_ok(const char *s)
{
	if (!*s)
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_'))
			return 0;
	return 1;
}

void manifest_free(struct manifest *m)
{
	for (int i = 0; i < m->n; i++) {
		struct kinst *k = &m->k[i];
		free(k->name);
		free(k->tmpl);
		free(k->launch);
		free(k->cubin);
		for (int c = 0; c < k->nc; c++) {
			free(k->ck[c]);
			free(k->cv[c]);
		}
		free(k->ck);
		free(k->cv);
	}
	free(m->k);
	free(m->arch);
	memset(m, 0, sizeof *m);
}

int manifest_load(const char *path, struct manifest *m, char *err, size_t errlen)
{
	memset(m, 0, sizeof *m);
	char *text = read_text(path, NULL, err, errlen);
	if (!text)
		return -1;
	struct jparse jp = {.s = text, .p = text};
	struct jv root;
	int rc = jvalue(&jp, &root);
	if (!rc) {
		jws(&jp);
		if (*jp.p) {
			jerr(&jp, "trailing characters after the JSON value");
			jfree(&root);
			rc = -1;
		}
	}
	if (rc) {
		snprintf(err, errlen, "%.300s:%s", path, jp.err);
		free(text);
		return -1;
	}
	free(text);
	const struct jv *arch = jget(&root, "arch"), *ks = jget(&root, "kernels");
	if (!arch || arch->t != J_STR || !ks || ks->t != J_ARR) {
		snprintf(err, errlen, "%.300s: needs a string \"arch\" and an array \"kernels\"", path);
		jfree(&root);
		return -1;
	}
	m->arch = xstrdup(arch->s);
	m->k = xcalloc((size_t)ks->n, sizeof *m->k);
	for (int i = 0; i < ks->n; i++) {
		const struct jv *o = &ks->v[i];
		const struct jv *name = jget(o, "name"), *tm = jget(o, "template"), *la = jget(o, "launch"),
				*cu = jget(o, "cubin"), *co = jget(o, "constants");
		if (!name || name->t != J_STR || !tm || tm->t != J_STR || !la || la->t != J_STR || !cu || cu->t != J_STR ||
		    !co || co->t != J_OBJ) {
			snprintf(err, errlen, "%.300s: kernels[%d] needs strings name, template, launch, cubin and an object constants",
				 path, i);
			goto bad;
		}
		if (!ident_ok(name->s) || !ident_ok(tm->s)) {
			snprintf(err, errlen, "%.300s: kernels[%d]: name/template is not an identifier", path, i);
			goto bad;
		}
		struct kinst *k = &m->k[m->n++];
		k->name = xstrdup(name->s);
		k->tmpl = xstrdup(tm->s);
		k->launch = xstrdup(la->s);
		k->cubin = xstrdup(cu->s);
		k->ck = xcalloc((size_t)co->n, sizeof *k->ck);
		k->cv = xcalloc((size_t)co->n, sizeof *k->cv);
		for (int c = 0; c < co->n; c++) {
			if (co->v[c].t != J_STR) {
				snprintf(err, errlen, "%.300s: kernels[%d].constants.%s is not a string", path, i, co->k[c]);
				goto bad;
			}
			k->ck[k->nc] = xstrdup(co->k[c]);
			k->cv[k->nc] = xstrdup(co->v[c].s);
			k->nc++;
		}
	}
	jfree(&root);
	return 0;
bad:
	jfree(&root);
	manifest_free(m);
	return -1;
}

const char *kconst(const struct kinst *k, const char *key)
{
	for (int i = 0; i < k->nc; i++)
		if (!strcmp(k->ck[i], key))
			return k->cv[i];
	return NULL;
}

/* an integer constant ("128"); -1 when absent or not an integer */
int kconst_int(const struct kinst *k, const char *key, long *out)
{
	const char *s = kconst(k, key);
	if (!s || !*s)
		return -1;
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (*end || errno)
		return -1;
	*out = v;
	return 0;
}


/* ---- gen/launch.h: the kernels' parameter lists (what lint read from the templates) ------- */
/* whitespace collapsed to single spaces, none around '*' on the right ("const act_t *") */
static void norm_ws(const char *s, size_t n, char *out, size_t cap)
{
	size_t o = 0;
	int sp = 0;
	for (size_t i = 0; i < n && o + 2 < cap; i++) {
		char c = s[i];
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
			sp = o > 0;
			continue;
		}
		if (sp && o + 2 < cap)
			out[o++] = ' ';
		sp = 0;
		out[o++] = c;
	}
	out[o] = 0;
}

/* "const act_t *x" -> type "const act_t *", name "x" */
static int split_param(const char *s, size_t n, char *type, size_t tcap, char *name, size_t ncap)
{
	char buf[160];
	norm_ws(s, n, buf, sizeof buf);
	size_t len = strlen(buf), e = len;
	while (e > 0 && (buf[e - 1] == '_' || (buf[e - 1] >= '0' && buf[e - 1] <= '9') || (buf[e - 1] >= 'a' && buf[e - 1] <= 'z') ||
			 (buf[e - 1] >= 'A' && buf[e - 1] <= 'Z')))
		e--;
	if (e == len || e == 0 || len - e >= ncap)
		return -1;
	memcpy(name, buf + e, len - e);
	name[len - e] = 0;
	/* canonical pointer spelling: no blanks next to a '*', one blank before the first one
	 * ("float*", "float * " and "float *" all become "float *"; "float **" stays) */
	char t[160];
	size_t o = 0;
	for (size_t i = 0; i < e; i++) {
		if (buf[i] == ' ' && ((i + 1 < e && buf[i + 1] == '*') || (i > 0 && buf[i - 1] == '*') || i + 1 == e))
			continue;
		t[o++] = buf[i];
	}
	t[o] = 0;
	char *star = strchr(t, '*');
	if (star) {
		memmove(star + 1, star, strlen(star) + 1);
		*star = ' ';
	}
	if (strlen(t) >= tcap)
		return -1;
	snprintf(type, tcap, "%s", t);
	return 0;
}

/* params of a comma-separated list, skipping moec_* launch parameters */
int parse_params(const char *s, size_t n, struct params *p)
{
	p->n = 0;
	size_t i = 0;
	while (i < n) {
		size_t j = i;
		while (j < n && s[j] != ',')
			j++;
		char type[48], name[32];
		if (split_param(s + i, j - i, type, sizeof type, name, sizeof name))
			return -1;
		if (strncmp(name, "moec_", 5)) {
			if (p->n == MAXA)
				return -1;
			snprintf(p->type[p->n], sizeof p->type[p->n], "%s", type);
			snprintf(p->name[p->n], sizeof p->name[p->n], "%s", name);
			p->n++;
		}
		i = j + 1;
	}
	return 0;
}

int launch_h_params(const char *text, const char *kname, struct params *p, char *err, size_t errlen)
{
	char pat[200];
	snprintf(pat, sizeof pat, "CUresult launch_%s(", kname);
	const char *s = strstr(text, pat);
	if (!s) {
		snprintf(err, errlen, "gen/launch.h has no launch_%s(", kname);
		return -1;
	}
	s += strlen(pat);
	const char *e = strchr(s, ')');
	if (!e || parse_params(s, (size_t)(e - s), p)) {
		snprintf(err, errlen, "gen/launch.h: cannot read the parameters of launch_%s", kname);
		return -1;
	}
	return 0;
}

void params_str(const struct params *p, char *out, size_t cap)
{
	out[0] = 0;
	for (int i = 0; i < p->n; i++)
		moert_adderr(out, cap, "%s%s%s%s", i ? ", " : "", p->type[i], p->type[i][strlen(p->type[i]) - 1] == '*' ? "" : " ",
		     p->name[i]);
}

