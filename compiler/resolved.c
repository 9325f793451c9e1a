/* resolved.c - the resolved spec with origins, as text and JSON. See resolved.h. */
#include "resolved.h"

#include <string.h>

#include "diag.h"
#include "schema.h"

static const char *const origin_names[] = {"unset", "default", "derived", "preset", "hf_config", "cluster", "file", "--set"};

void origin_describe(const struct origin *o, char *buf, size_t n)
{
	if (o->src && o->line)
		snprintf(buf, n, "%s %s:%d:%d", origin_names[o->kind], o->src->name, o->line, o->col);
	else
		snprintf(buf, n, "%s", origin_names[o->kind]);
}

void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(f, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(f, "\\u%04x", *p);
		else
			fputc(*p, f);
	}
	fputc('"', f);
}

/* Write one field's value; json selects quoting of strings. */
static void print_value(FILE *f, const struct spec *s, const struct field *fl, int json)
{
	const void *p = (const char *)s + fl->offset;
	switch (fl->type) {
	case FIELD_INT: fprintf(f, "%lld", (long long)*(const int64_t *)p); break;
	case FIELD_FLOAT: fprintf(f, "%.10g", *(const double *)p); break;
	case FIELD_BOOL: fputs(*(const bool *)p ? "true" : "false", f); break;
	case FIELD_ENUM:
		if (json)
			json_string(f, schema_enum_name(fl->enum_names, *(const int *)p));
		else
			fputs(schema_enum_name(fl->enum_names, *(const int *)p), f);
		break;
	case FIELD_STRING: {
		const char *str = *(char *const *)p;
		if (json)
			str ? json_string(f, str) : (void)fputs("null", f);
		else
			fputs(str ? str : "~", f);
		break;
	}
	case FIELD_INT_LIST: {
		const struct int_list *l = p;
		fputc('[', f);
		for (int i = 0; i < l->n; i++)
			fprintf(f, "%s%lld", i ? ", " : "", (long long)l->v[i]);
		fputc(']', f);
		break;
	}
	case FIELD_STR_LIST: {
		const struct str_list *l = p;
		fputc('[', f);
		for (int i = 0; i < l->n; i++) {
			fputs(i ? ", " : "", f);
			json ? json_string(f, l->v[i]) : (void)fputs(l->v[i], f);
		}
		fputc(']', f);
		break;
	}
	}
}

void spec_print(FILE *f, const struct spec *s)
{
	char where[512];
	for (int i = 0; i < schema_nfields; i++) {
		const struct field *fl = &schema_fields[i];
		if (s->origin[i].kind == ORIGIN_UNSET)
			continue;
		char val[256];
		FILE *m = fmemopen(val, sizeof val, "w");
		print_value(m, s, fl, 0);
		fclose(m);
		val[sizeof val - 1] = 0;
		origin_describe(&s->origin[i], where, sizeof where);
		fprintf(f, "  %-36s %-24s # %s\n", fl->path, val, where);
	}
}

void spec_print_json(FILE *f, const struct spec *s)
{
	fputc('{', f);
	int first = 1;
	for (int i = 0; i < schema_nfields; i++) {
		const struct field *fl = &schema_fields[i];
		const struct origin *o = &s->origin[i];
		if (o->kind == ORIGIN_UNSET)
			continue;
		fprintf(f, "%s\n    ", first ? "" : ",");
		first = 0;
		json_string(f, fl->path);
		fputs(": {\"value\": ", f);
		print_value(f, s, fl, 1);
		fprintf(f, ", \"from\": \"%s\"", origin_names[o->kind]);
		if (o->src && o->line) {
			char at[512];
			snprintf(at, sizeof at, "%s:%d:%d", o->src->name, o->line, o->col);
			fputs(", \"at\": ", f);
			json_string(f, at);
		}
		fputc('}', f);
	}
	fputs("\n  }", f);
}
