/* lint.c - pass 6: libclang over every emitted kernel instance and CPU twin.
 *
 * Requires: instance files as compiler/emit.c writes them (format in lint.h): a prelude
 *   of #defines, then `#line 1 "<template>"` and the template text; templates that include
 *   moec_device.cuh (kernels/) and twins that include moec_host.h (kernels/cpu/).
 * Establishes: every clang diagnostic of severity warning or worse printed through diag.c
 *   at clang's presumed location, which the #line maps into the template, so a template
 *   error reads kernels/x.cu:LINE:COL with the template's own line and a caret; each
 *   instance's one kernel (or twin function) and its parameters as spelled.
 *
 * Why libclang and not NVRTC alone: NVRTC reports errors against the generated file and
 * says nothing about signatures; clang gives both, and checks twins with the same tool.
 */
#include "lint.h"

#include <clang-c/Index.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "diag.h"

/* Warnings as the project builds its C (tests compile the twins with these), minus
 * -Wsign-compare for CUDA, where `threadIdx.x < n` is the idiom and not a bug. */
#define LINT_WARNINGS "-Wall", "-Wextra", "-Wshadow", "-Wno-unused-parameter", "-Wno-missing-field-initializers"

static const char *kernels_dir(const struct lint_options *o)
{
	if (o && o->kernels_dir)
		return o->kernels_dir;
	const char *env = getenv("MOEC_KERNELS_DIR");
	return env && *env ? env : MOEC_SOURCE_DIR "/kernels";
}

static const char *stub_dir(const struct lint_options *o)
{
	return o && o->stub_dir ? o->stub_dir : MOEC_SOURCE_DIR "/templates";
}

/* Even with -nocudainc, clang looks for a CUDA installation and warns that the one it
 * finds (CUDA 13) is newer than it knows. An empty directory as --cuda-path means none.
 * One per user, kept: a directory per process would be left behind by every moec that is
 * killed. 0700 and checked to be ours, so no one else can make it look like a CUDA. */
static char nocuda[PATH_MAX];

static const char *nocuda_dir(void)
{
	if (nocuda[0])
		return nocuda;
	const char *tmp = getenv("TMPDIR");
	if (!tmp || !*tmp)
		tmp = "/tmp";
	snprintf(nocuda, sizeof nocuda, "%s/moec-nocuda-%u", tmp, (unsigned)getuid());
	struct stat st;
	int err = mkdir(nocuda, 0700) == 0 || errno == EEXIST ? 0 : errno;
	if (!err && lstat(nocuda, &st) != 0)
		err = errno;
	if (err || !S_ISDIR(st.st_mode) || st.st_uid != getuid()) {
		diag_at(DIAG_ERROR, NULL, 0, 0, "lint: cannot use %s as clang's empty --cuda-path: %s", nocuda,
		        err ? strerror(err) : "it is someone else's, or not a directory");
		nocuda[0] = 0;
		return NULL;
	}
	return nocuda;
}

/* ---- the instance's prelude: which function to look for, which template it holds ---- */

struct prelude {
	char fn[160];        /* value of MOEC_KERNEL (CUDA) or MOEC_KERNEL_CPU (twin) */
	char template[512];  /* the #line file */
};

/* Reads the lines before `#line`; the rest is the template, which clang reads. */
static int read_prelude(const char *path, const char *macro, struct prelude *p)
{
	memset(p, 0, sizeof *p);
	FILE *f = fopen(path, "r");
	if (!f) {
		diag_at(DIAG_ERROR, NULL, 0, 0, "lint: cannot read %s: %s", path, strerror(errno));
		return -1;
	}
	char line[1024];
	size_t mlen = strlen(macro);
	for (int n = 0; n < 256 && fgets(line, sizeof line, f); n++) {
		line[strcspn(line, "\r\n")] = 0;
		if (!strncmp(line, "#define ", 8) && !strncmp(line + 8, macro, mlen) && line[8 + mlen] == ' ') {
			const char *v = line + 8 + mlen;
			while (*v == ' ' || *v == '\t')
				v++;
			snprintf(p->fn, sizeof p->fn, "%.*s", (int)strcspn(v, " \t"), v);
		} else if (!strncmp(line, "#line ", 6)) {
			const char *q = strchr(line, '"');
			size_t k = 0;
			/* The #line string is a C string literal: undo \\ and \" escapes. */
			for (q = q ? q + 1 : line + strlen(line); *q && *q != '"' && k + 1 < sizeof p->template; q++) {
				if (*q == '\\' && q[1])
					q++;
				p->template[k++] = *q;
			}
			p->template[k] = 0;
			break;
		}
	}
	fclose(f);
	return 0;
}

/* ---- diagnostics at clang's presumed locations ---- */

/* Sources loaded while reporting one instance: each template is loaded once per call, and
 * only when it has something to report. (Not kept across calls: diag_free_sources() may
 * free them in between.) */
struct srccache {
	int n;
	struct {
		char name[512];
		const struct source *src;
	} e[8];
};

/* A source to print name:line:col and the caret line from; when the file cannot be read
 * (a path relative to another directory), an empty one still prints name:line:col. */
static const struct source *source_for(struct srccache *c, const char *name)
{
	for (int i = 0; c && i < c->n; i++)
		if (!strcmp(c->e[i].name, name))
			return c->e[i].src;
	const struct source *s = source_load(name);
	if (!s)
		s = source_from_string(name, "");
	if (c && c->n < (int)(sizeof c->e / sizeof c->e[0])) {
		snprintf(c->e[c->n].name, sizeof c->e[c->n].name, "%s", name);
		c->e[c->n++].src = s;
	}
	return s;
}

static void report(CXDiagnostic d, struct srccache *c, const char *path, int is_child)
{
	enum CXDiagnosticSeverity sev = clang_getDiagnosticSeverity(d);
	enum diag_level level;
	if (sev >= CXDiagnostic_Error)
		level = DIAG_ERROR;
	else if (sev == CXDiagnostic_Warning)
		level = DIAG_WARNING;
	else if (sev == CXDiagnostic_Note && is_child)
		level = DIAG_NOTE;
	else
		return;

	CXString msg = clang_getDiagnosticSpelling(d);
	CXString opt = clang_getDiagnosticOption(d, NULL);
	const char *o = clang_getCString(opt);
	char suffix[96] = "";
	if (level == DIAG_WARNING && o && *o)
		snprintf(suffix, sizeof suffix, " [%s]", o);

	CXString file;
	unsigned line = 0, col = 0;
	clang_getPresumedLocation(clang_getDiagnosticLocation(d), &file, &line, &col);
	const char *fname = clang_getCString(file);
	if (fname && *fname && line)
		diag_at(level, source_for(c, fname), (int)line, (int)col, "%s%s", clang_getCString(msg), suffix);
	else /* the driver's, or one about the command line: name the instance */
		diag_at(level, source_for(c, path), 0, 0, "%s%s", clang_getCString(msg), suffix);
	clang_disposeString(file);
	clang_disposeString(opt);
	clang_disposeString(msg);

	if (is_child)
		return;
	/* Notes ("candidate function not viable: ...") hang under their diagnostic; the set
	 * belongs to d. */
	CXDiagnosticSet kids = clang_getChildDiagnostics(d);
	for (unsigned i = 0; i < clang_getNumDiagnosticsInSet(kids); i++) {
		CXDiagnostic k = clang_getDiagnosticInSet(kids, i);
		report(k, c, path, 1);
		clang_disposeDiagnostic(k);
	}
}

/* ---- finding the kernel / twin function ---- */

struct search {
	CXFile main;         /* the instance */
	int twin;            /* look for a function named want, else __global__ definitions */
	const char *want;
	int n;               /* matching definitions seen */
	CXCursor first, second;
};

static enum CXChildVisitResult find_global_attr(CXCursor c, CXCursor parent, CXClientData data)
{
	if (clang_getCursorKind(c) == CXCursor_CUDAGlobalAttr) {
		*(int *)data = 1;
		return CXChildVisit_Break;
	}
	return CXChildVisit_Continue;
}

static enum CXChildVisitResult find_function(CXCursor c, CXCursor parent, CXClientData data)
{
	struct search *s = data;
	/* Only the instance itself: moec_device.cuh and the stub define helpers, not kernels.
	 * By expansion location: the kernel's name is the macro MOEC_KERNEL, and
	 * clang_Location_isFromMainFile says no to a location inside a macro expansion. */
	CXFile file;
	clang_getExpansionLocation(clang_getCursorLocation(c), &file, NULL, NULL, NULL);
	if (!file || !clang_File_isEqual(file, s->main))
		return CXChildVisit_Continue;
	enum CXCursorKind kind = clang_getCursorKind(c);
	if (kind == CXCursor_LinkageSpec || kind == CXCursor_Namespace || kind == CXCursor_UnexposedDecl)
		return CXChildVisit_Recurse; /* extern "C" { ... } */
	if (kind != CXCursor_FunctionDecl || !clang_isCursorDefinition(c))
		return CXChildVisit_Continue;
	int match = 0;
	if (s->twin) {
		CXString name = clang_getCursorSpelling(c);
		match = !strcmp(clang_getCString(name), s->want);
		clang_disposeString(name);
	} else {
		clang_visitChildren(c, find_global_attr, &match);
	}
	if (match) {
		if (s->n == 0)
			s->first = c;
		else if (s->n == 1)
			s->second = c;
		s->n++;
	}
	return CXChildVisit_Continue;
}

static void presumed(CXCursor c, char *file, size_t n, int *line, int *col)
{
	CXString f;
	unsigned l = 0, k = 0;
	clang_getPresumedLocation(clang_getCursorLocation(c), &f, &l, &k);
	snprintf(file, n, "%s", clang_getCString(f) ? clang_getCString(f) : "");
	clang_disposeString(f);
	*line = (int)l;
	*col = (int)k;
}

static int is_ident(char ch)
{
	return ch == '_' || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
}

/* Replace the identifier `from` (whole words only) by `to`, within cap bytes. */
static void replace_word(char *s, size_t cap, const char *from, const char *to)
{
	char out[256];
	size_t k = 0, fl = strlen(from), tl = strlen(to);
	for (const char *p = s; *p && k + 1 < sizeof out;) {
		if (is_ident(*p) && (p == s || !is_ident(p[-1])) && !strncmp(p, from, fl) && !is_ident(p[fl]) &&
		    k + tl + 1 < sizeof out) {
			memcpy(out + k, to, tl);
			k += tl;
			p += fl;
		} else {
			out[k++] = *p++;
		}
	}
	if (k >= cap)
		k = cap - 1;
	memcpy(s, out, k);
	s[k] = 0;
}

/* C++ spells the CUDA __restrict__ as "__restrict" and C's bool as "bool"; the twin, in
 * C11, says "restrict" and "_Bool". One spelling each, so kernel and twin compare. */
static void normalize_type(char *t, size_t cap)
{
	replace_word(t, cap, "__restrict", "restrict");
	replace_word(t, cap, "_Bool", "bool");
}

static int fill_sig(CXCursor fn, struct kernel_sig *sig, struct srccache *c)
{
	int errors = 0;
	CXString name = clang_getCursorSpelling(fn);
	snprintf(sig->name, sizeof sig->name, "%s", clang_getCString(name));
	clang_disposeString(name);
	presumed(fn, sig->file, sizeof sig->file, &sig->line, &sig->col);
	int n = clang_Cursor_getNumArguments(fn);
	if (n > LINT_MAX_PARAMS) {
		diag_at(DIAG_ERROR, source_for(c, sig->file), sig->line, sig->col,
		        "%s has %d parameters; moec supports at most %d", sig->name, n, LINT_MAX_PARAMS);
		errors++;
		n = LINT_MAX_PARAMS;
	}
	sig->nparams = n < 0 ? 0 : n;
	for (int i = 0; i < sig->nparams; i++) {
		CXCursor arg = clang_Cursor_getArgument(fn, (unsigned)i);
		CXString t = clang_getTypeSpelling(clang_getCursorType(arg));
		CXString a = clang_getCursorSpelling(arg);
		snprintf(sig->params[i].type, sizeof sig->params[i].type, "%s", clang_getCString(t));
		snprintf(sig->params[i].name, sizeof sig->params[i].name, "%s", clang_getCString(a));
		normalize_type(sig->params[i].type, sizeof sig->params[i].type);
		clang_disposeString(t);
		clang_disposeString(a);
	}
	return errors;
}

/* ---- one instance ---- */

static int lint_instance(const char *path, const char *const *args, int nargs, int twin, struct kernel_sig *sig)
{
	struct kernel_sig scratch;
	if (!sig)
		sig = &scratch;
	memset(sig, 0, sizeof *sig);
	struct prelude pre;
	if (read_prelude(path, twin ? "MOEC_KERNEL_CPU" : "MOEC_KERNEL", &pre) != 0)
		return 1;
	struct srccache *cache = calloc(1, sizeof *cache);
	const char *where = pre.template[0] ? pre.template : path;

	CXIndex index = clang_createIndex(0, 0);
	CXTranslationUnit tu = NULL;
	enum CXErrorCode rc = clang_parseTranslationUnit2(index, path, args, nargs, NULL, 0, CXTranslationUnit_None, &tu);
	int errors = 0;
	if (rc != CXError_Success || !tu) {
		diag_at(DIAG_ERROR, NULL, 0, 0, "lint: libclang could not parse %s (error %d)", path, (int)rc);
		errors = 1;
		goto out_index;
	}

	for (unsigned i = 0; i < clang_getNumDiagnostics(tu); i++) {
		CXDiagnostic d = clang_getDiagnostic(tu, i);
		if (clang_getDiagnosticSeverity(d) >= CXDiagnostic_Error)
			errors++;
		report(d, cache, path, 0);
		clang_disposeDiagnostic(d);
	}

	struct search s = {.main = clang_getFile(tu, path), .twin = twin, .want = pre.fn};
	if (twin && !pre.fn[0]) {
		diag_at(DIAG_ERROR, source_for(cache, path), 0, 0, "no #define MOEC_KERNEL_CPU line in this twin instance");
		errors++;
		goto out_tu;
	}
	clang_visitChildren(clang_getTranslationUnitCursor(tu), find_function, &s);
	if (s.n == 0) {
		/* After a parse error the function may be what failed; that error says more. */
		if (!errors) {
			if (twin)
				diag_at(DIAG_ERROR, source_for(cache, where), 0, 0,
				        "twin defines no function named %s (MOEC_KERNEL_CPU)", pre.fn);
			else
				diag_at(DIAG_ERROR, source_for(cache, where), 0, 0,
				        "template defines no __global__ function; it must define exactly one, named MOEC_KERNEL");
			errors++;
		}
		goto out_tu;
	}
	if (s.n > 1) {
		char file[512];
		int line, col, line1, col1;
		presumed(s.second, file, sizeof file, &line, &col);
		char file1[512];
		presumed(s.first, file1, sizeof file1, &line1, &col1);
		if (twin)
			diag_at(DIAG_ERROR, source_for(cache, file), line, col, "twin defines %s a second time", pre.fn);
		else
			diag_at(DIAG_ERROR, source_for(cache, file), line, col,
			        "a second __global__ function; a template defines exactly one, named MOEC_KERNEL");
		diag_at(DIAG_NOTE, source_for(cache, file1), line1, col1, "the first is here");
		errors++;
	}
	errors += fill_sig(s.first, sig, cache);
	if (!twin) {
		/* NVRTC and the launch stubs find the kernel by its unmangled name. */
		CXString mangled = clang_Cursor_getMangling(s.first);
		if (strcmp(clang_getCString(mangled), sig->name) != 0) {
			diag_at(DIAG_ERROR, source_for(cache, sig->file), sig->line, sig->col,
			        "kernel %s must be declared extern \"C\" (the runtime looks it up by this name)", sig->name);
			errors++;
		}
		clang_disposeString(mangled);
		if (pre.fn[0] && strcmp(pre.fn, sig->name) != 0) {
			diag_at(DIAG_ERROR, source_for(cache, sig->file), sig->line, sig->col,
			        "kernel is named %s; name it MOEC_KERNEL (this instance's is %s)", sig->name, pre.fn);
			errors++;
		}
	}
out_tu:
	clang_disposeTranslationUnit(tu);
out_index:
	clang_disposeIndex(index);
	free(cache);
	return errors;
}

int lint_cuda_instance(const char *path, const struct lint_options *o, struct kernel_sig *sig)
{
	const char *cuda = nocuda_dir();
	if (!cuda)
		return 1;
	char cuda_path[PATH_MAX + 16];
	snprintf(cuda_path, sizeof cuda_path, "--cuda-path=%s", cuda);
	/* The stub is a system header: its own warnings are moec's business, not the template's. */
	const char *args[] = {
		"-x", "cuda", "--cuda-device-only", "-nocudainc", "-nocudalib", "--cuda-gpu-arch=sm_80", cuda_path,
		"-std=c++17", "-DMOEC_LINT", "-isystem", stub_dir(o), "-I", kernels_dir(o),
		LINT_WARNINGS, "-Wno-sign-compare",
	};
	return lint_instance(path, args, (int)(sizeof args / sizeof args[0]), 0, sig);
}

int lint_twin_instance(const char *path, const struct lint_options *o, struct kernel_sig *sig)
{
	char cpu[PATH_MAX];
	snprintf(cpu, sizeof cpu, "%s/cpu", kernels_dir(o));
	const char *args[] = {"-x", "c", "-std=gnu11", "-I", cpu, LINT_WARNINGS};
	return lint_instance(path, args, (int)(sizeof args / sizeof args[0]), 1, sig);
}

/* ---- kernel vs twin ---- */

/* The type of the parameter as the function type sees it: qualifiers on the parameter
 * itself (after the last '*', or leading on a non-pointer) do not change the ABI. */
static void type_key(const char *type, char *out, size_t n)
{
	snprintf(out, n, "%s", type);
	char *star = strrchr(out, '*');
	if (star) {
		/* Strip only if nothing but qualifiers follows ("int (*)(int)" keeps its tail). */
		char *p = star + 1;
		for (;;) {
			while (*p == ' ')
				p++;
			if (!*p) {
				star[1] = 0;
				break;
			}
			size_t w = strcspn(p, " ");
			if (!((w == 5 && !strncmp(p, "const", 5)) || (w == 8 && !strncmp(p, "volatile", 8)) ||
			      (w == 8 && !strncmp(p, "restrict", 8))))
				break;
			p += w;
		}
	} else {
		char *p = out;
		for (;;) {
			if (!strncmp(p, "const ", 6))
				p += 6;
			else if (!strncmp(p, "volatile ", 9))
				p += 9;
			else
				break;
		}
		memmove(out, p, strlen(p) + 1);
	}
}

static void param_text(char *out, size_t n, const struct kernel_param *p)
{
	size_t len = strlen(p->type);
	int glue = len > 0 && p->type[len - 1] == '*';
	snprintf(out, n, "%s%s%s", p->type, p->name[0] && !glue ? " " : "", p->name);
}

int lint_compare(const struct kernel_sig *kernel, const struct kernel_sig *twin)
{
	/* A signature lint could not extract has had its error already. */
	if (!kernel->name[0] || !twin->name[0])
		return 0;
	/* The twin's file is loaded only when there is something to say about it. */
	struct srccache cache = {0};
	int errors = 0;
	if (kernel->nparams != twin->nparams) {
		diag_at(DIAG_ERROR, source_for(&cache, twin->file), twin->line, twin->col,
		        "twin signature differs from kernel %s: %d parameters in the kernel, %d in the twin",
		        kernel->name, kernel->nparams, twin->nparams);
		errors++;
	}
	int n = kernel->nparams < twin->nparams ? kernel->nparams : twin->nparams;
	for (int i = 0; i < n; i++) {
		const struct kernel_param *k = &kernel->params[i], *t = &twin->params[i];
		char kk[160], tk[160], kt[240], tt[240];
		type_key(k->type, kk, sizeof kk);
		type_key(t->type, tk, sizeof tk);
		param_text(kt, sizeof kt, k);
		param_text(tt, sizeof tt, t);
		if (strcmp(kk, tk) != 0) {
			diag_at(DIAG_ERROR, source_for(&cache, twin->file), twin->line, twin->col,
			        "twin signature differs from kernel %s: parameter %d is '%s' in the kernel, '%s' in the twin",
			        kernel->name, i + 1, kt, tt);
			errors++;
		} else if (strcmp(k->name, t->name) != 0) {
			diag_at(DIAG_WARNING, source_for(&cache, twin->file), twin->line, twin->col,
			        "twin parameter %d is named '%s', kernel %s's '%s': check the arguments are not swapped",
			        i + 1, t->name, kernel->name, k->name);
		}
	}
	if (errors)
		diag_at(DIAG_NOTE, source_for(&cache, kernel->file), kernel->line, kernel->col, "kernel %s is defined here",
		        kernel->name);
	return errors;
}
