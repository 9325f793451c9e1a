/* jit.c - pass 7: NVRTC -> cubin, cached, in parallel. See jit.h.
 *
 * Requires: composed instances (emit.c), an open cache (cache.c).
 * Establishes: DIR/cubin/<name>.<arch>.cubin, DIR/ptx/<name>.<arch>.ptx and
 *   DIR/log/<name>.<arch>.log (NVRTC's log: the ptxas report, or the errors) per instance,
 *   and res[i] with its ptxas resources and whether it came from the cache.
 *
 * The parent hashes every instance and serves the cache hits itself, so a warm build
 * never calls the compiler. Misses go to forked worker processes rather than threads: a
 * crash or a leak inside NVRTC stays in the worker (which leaves with _exit, so neither
 * atexit handlers nor LeakSanitizer run there), and the parent is free meanwhile: the
 * build lints while the workers compile, calling jit_poll() between instances to redraw
 * the progress line. The parent writes the misses' indices, largest source first (the
 * longest compiles start first), into a task pipe before forking; each worker reads the
 * next index, compiles it, stores it in the cache (ptx, log, then cubin) and in DIR, and
 * writes a fixed-size record (one write < PIPE_BUF, so atomic) to the result pipe.
 */
#define _GNU_SOURCE
#include "jit.h"

#include <cuda.h>
#include <errno.h>
#include <fcntl.h>
#include <nvrtc.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "diag.h"
#include "files.h"

#ifndef MOEC_CUDA_INCLUDE
#define MOEC_CUDA_INCLUDE "/usr/local/cuda/include"
#endif

static const char *const jit_archs[] = {"sm_80", "sm_86", "sm_89", "sm_90", "sm_90a", "sm_100", "sm_100a", "sm_120", NULL};

bool jit_arch_valid(const char *arch)
{
	for (int i = 0; jit_archs[i]; i++)
		if (!strcmp(arch, jit_archs[i]))
			return true;
	return false;
}

void jit_nvrtc_version(char *buf, size_t n)
{
	int major = 0, minor = 0;
	if (nvrtcVersion(&major, &minor) != NVRTC_SUCCESS)
		snprintf(buf, n, "unknown");
	else
		snprintf(buf, n, "%d.%d", major, minor);
}

void jit_cuda_version(char *buf, size_t n)
{
	snprintf(buf, n, "%d.%d", CUDA_VERSION / 1000, CUDA_VERSION % 1000 / 10);
}

static double jit_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- the ptxas report ---- */

/* The integer just before `what` in line (e.g. "32" in "Used 32 registers"), or -1. */
static int64_t jit_number_before(const char *line, const char *what)
{
	const char *at = strstr(line, what);
	if (!at)
		return -1;
	const char *p = at;
	while (p > line && p[-1] == ' ')
		p--;
	const char *end = p;
	while (p > line && p[-1] >= '0' && p[-1] <= '9')
		p--;
	return p < end ? strtoll(p, NULL, 10) : -1;
}

/* Copy the quoted or trailing name after `prefix` in line into buf. */
static bool jit_name_after(const char *line, const char *prefix, char *buf, size_t n)
{
	const char *p = strstr(line, prefix);
	if (!p)
		return false;
	p += strlen(prefix);
	size_t len = *p == '\'' ? strcspn(++p, "'") : strcspn(p, " \r\n");
	snprintf(buf, n, "%.*s", (int)len, p);
	return true;
}

int jit_parse_ptxas(const char *log, const char *kernel, struct jit_result *r)
{
	char entry[256] = "", props[256] = "";
	bool found = false;
	r->registers = r->barriers = 0;
	r->smem = r->stack = r->spill_stores = r->spill_loads = 0;
	for (const char *p = log; p && *p;) {
		const char *eol = strchr(p, '\n');
		char line[1024];
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		snprintf(line, sizeof line, "%.*s", (int)(len < sizeof line - 1 ? len : sizeof line - 1), p);
		p = eol ? eol + 1 : NULL;
		if (jit_name_after(line, "Compiling entry function ", entry, sizeof entry)) {
			found |= !strcmp(entry, kernel);
			continue;
		}
		if (jit_name_after(line, "Function properties for ", props, sizeof props))
			continue;
		if (strstr(line, "bytes stack frame")) {
			int64_t st = jit_number_before(line, "bytes stack frame");
			int64_t ss = jit_number_before(line, "bytes spill stores");
			int64_t sl = jit_number_before(line, "bytes spill loads");
			r->spill_stores += ss > 0 ? ss : 0; /* every function compiled is this kernel's */
			r->spill_loads += sl > 0 ? sl : 0;
			if (!strcmp(props, kernel) && st > 0)
				r->stack = st;
			continue;
		}
		if (strstr(line, " registers") && !strcmp(entry, kernel)) {
			int64_t v = jit_number_before(line, " registers");
			r->registers = v > 0 ? (int)v : 0;
			v = jit_number_before(line, " barriers");
			r->barriers = v > 0 ? (int)v : 0;
			v = jit_number_before(line, " bytes smem");
			r->smem = v > 0 ? v : 0;
		}
	}
	return found ? 0 : -1;
}

/* ---- compiling ---- */

#define JIT_MAX_OPTS 8
#define JIT_MAX_WORKERS 256

/* A worker's report; written whole to the result pipe. */
struct jit_record {
	int index;                /* kernel */
	int ok;
	int err;                  /* errno of a failed write, 0 else */
	char what[160];           /* why it failed, "" when ok */
	struct jit_result res;
};

struct jit_run {
	const struct kernel_set *ks;
	const struct jit_options *o;
	const struct cache *c;
	struct jit_result *res;
	char opt_text[JIT_MAX_OPTS][PATH_MAX + 32];
	const char *opts[JIT_MAX_OPTS];
	int nopts;
	int *todo;                /* indices of the misses, largest first */
	int ntodo;
	pid_t pids[JIT_MAX_WORKERS];
	int nworkers;
	int result_fd;            /* read end of the result pipe, -1 when none */
	bool *finished;           /* [n] a record (or a hit) came in */
	char (*what)[256];        /* [n] why a kernel failed */
	int done, hits, errors;
};

static void jit_build_options(struct jit_run *j)
{
	const char *home = getenv("CUDA_HOME");
	char inc[PATH_MAX];
	if (home && *home)
		snprintf(inc, sizeof inc, "%s/include", home);
	else
		snprintf(inc, sizeof inc, "%s", MOEC_CUDA_INCLUDE);
	snprintf(j->opt_text[j->nopts++], sizeof j->opt_text[0], "--gpu-architecture=%s", j->o->arch);
	snprintf(j->opt_text[j->nopts++], sizeof j->opt_text[0], "-I%s", j->ks->dir);
	snprintf(j->opt_text[j->nopts++], sizeof j->opt_text[0], "-I%s", inc);
	snprintf(j->opt_text[j->nopts++], sizeof j->opt_text[0], "-I%s/cccl", inc);
	snprintf(j->opt_text[j->nopts++], sizeof j->opt_text[0], "-std=c++17");
	snprintf(j->opt_text[j->nopts++], sizeof j->opt_text[0], "-Xptxas=-v");
	for (int i = 0; i < j->nopts; i++)
		j->opts[i] = j->opt_text[i];
}

/* The cache key; returns the instance's size with its includes (a compile-cost guess). */
static size_t jit_key(const struct jit_run *j, const struct kernel_inst *k, char *key)
{
	char nvrtc[32];
	struct sha256 h;
	size_t bytes = 0;
	jit_nvrtc_version(nvrtc, sizeof nvrtc);
	sha256_init(&h);
	sha256_update_str(&h, "moec-jit-1\nnvrtc ");
	sha256_update_str(&h, nvrtc);
	sha256_update_str(&h, "\narch ");
	sha256_update_str(&h, j->o->arch);
	sha256_update_str(&h, "\n");
	for (int i = 0; i < j->nopts; i++) {
		sha256_update_str(&h, j->opts[i]);
		sha256_update_str(&h, "\n");
	}
	const char *dirs[] = {j->ks->dir};
	cache_hash_instance(&h, k->cu_text, dirs, 1, &bytes);
	sha256_final_hex(&h, key);
	return bytes;
}

static int jit_out_path(const struct jit_run *j, const struct kernel_inst *k, const char *sub, char *buf, size_t n)
{
	return snprintf(buf, n, "%s/%s/%s.%s.%s", j->o->dir, sub, k->name, j->o->arch, sub) < (int)n ? 0 : ENAMETOOLONG;
}

/* Copy a kernel's cubin, PTX and log into DIR. Returns 0 or an errno. */
static int jit_store_outputs(const struct jit_run *j, const struct kernel_inst *k, const char *cubin, size_t ncubin,
			     const char *ptx, size_t nptx, const char *log)
{
	char path[PATH_MAX];
	int err = jit_out_path(j, k, "cubin", path, sizeof path);
	if (!err)
		err = file_write_atomic(path, cubin, ncubin, true);
	if (!err)
		err = jit_out_path(j, k, "ptx", path, sizeof path);
	if (!err)
		err = file_write_atomic(path, ptx, nptx, true);
	if (!err)
		err = jit_out_path(j, k, "log", path, sizeof path);
	if (!err)
		err = file_write_atomic(path, log, strlen(log), true);
	return err;
}

static bool jit_is_elf(const char *data, size_t n)
{
	return n > 4 && !memcmp(data, "\177ELF", 4);
}

/* Serve kernel i from the cache; false when it is not (wholly) there. */
static bool jit_try_hit(struct jit_run *j, int i)
{
	const struct kernel_inst *k = &j->ks->v[i];
	struct jit_result *r = &j->res[i];
	char *cubin = NULL, *ptx = NULL, *log = NULL;
	size_t ncubin, nptx, nlog;
	bool hit = cache_get(j->c, r->key, "cubin", &cubin, &ncubin) && jit_is_elf(cubin, ncubin) &&
		   cache_get(j->c, r->key, "ptx", &ptx, &nptx) && cache_get(j->c, r->key, "log", &log, &nlog) &&
		   !jit_parse_ptxas(log, k->name, r);
	if (hit) {
		int err = jit_store_outputs(j, k, cubin, ncubin, ptx, nptx, log);
		if (err) {
			snprintf(j->what[i], sizeof j->what[i], "cannot write its outputs under %s: %s", j->o->dir, strerror(err));
			j->errors++;
		}
		r->cache_hit = true;
		r->ok = !err;
	}
	free(cubin);
	free(ptx);
	free(log);
	return hit;
}

static char *jit_program_log(nvrtcProgram prog)
{
	size_t n = 0;
	if (nvrtcGetProgramLogSize(prog, &n) != NVRTC_SUCCESS || !n)
		return strdup("");
	char *log = malloc(n + 1);
	if (log && nvrtcGetProgramLog(prog, log) == NVRTC_SUCCESS) {
		log[n] = 0;
		return log;
	}
	free(log);
	return strdup("");
}

/* Compile kernel i (a miss), in a worker. The log goes to DIR/log whether it worked or
 * not, so the parent can print the errors. */
static void jit_compile_one(const struct jit_run *j, int i, struct jit_record *rec)
{
	const struct kernel_inst *k = &j->ks->v[i];
	struct jit_result *r = &rec->res;
	char name[PATH_MAX];
	char *log = NULL, *cubin = NULL, *ptx = NULL;
	size_t ncubin = 0, nptx = 0;
	const char *what = NULL;
	double t0 = jit_now();
	nvrtcProgram prog;
	*r = j->res[i];
	snprintf(name, sizeof name, "%s/gen/%s.cu", j->o->dir, k->name);
	nvrtcResult rc = nvrtcCreateProgram(&prog, k->cu_text, name, 0, NULL, NULL);
	if (rc != NVRTC_SUCCESS) {
		what = nvrtcGetErrorString(rc);
		goto out;
	}
	rc = nvrtcCompileProgram(prog, j->nopts, j->opts);
	log = jit_program_log(prog);
	if (rc != NVRTC_SUCCESS) {
		what = "compile error";
		goto out_destroy;
	}
	if (nvrtcGetCUBINSize(prog, &ncubin) != NVRTC_SUCCESS || nvrtcGetPTXSize(prog, &nptx) != NVRTC_SUCCESS ||
	    !(cubin = malloc(ncubin)) || !(ptx = malloc(nptx)) || nvrtcGetCUBIN(prog, cubin) != NVRTC_SUCCESS ||
	    nvrtcGetPTX(prog, ptx) != NVRTC_SUCCESS) {
		what = "no cubin or PTX from NVRTC";
		goto out_destroy;
	}
	if (nptx && !ptx[nptx - 1])
		nptx--; /* NVRTC counts the NUL */
	if (jit_parse_ptxas(log, k->name, r)) {
		what = "the ptxas report does not name the kernel (is it extern \"C\" __global__ void MOEC_KERNEL(...)?)";
		goto out_destroy;
	}
	/* The cubin last: its presence marks a whole entry. A failed cache write only costs a
	 * later recompile, so it is not an error. */
	if (!cache_put(j->c, r->key, "ptx", ptx, nptx) && !cache_put(j->c, r->key, "log", log, strlen(log)))
		cache_put(j->c, r->key, "cubin", cubin, ncubin);
	rec->err = jit_store_outputs(j, k, cubin, ncubin, ptx, nptx, log);
	if (rec->err)
		what = "cannot write its outputs";
out_destroy:
	nvrtcDestroyProgram(&prog);
out:
	if (what && !rec->err && log) {
		char path[PATH_MAX];
		if (!jit_out_path(j, k, "log", path, sizeof path))
			file_write_atomic(path, log, strlen(log), false);
	}
	r->seconds = jit_now() - t0;
	r->ok = !what;
	rec->ok = !what;
	snprintf(rec->what, sizeof rec->what, "%s", what ? what : "");
	free(log);
	free(cubin);
	free(ptx);
}

static void jit_write_record(int fd, const struct jit_record *rec)
{
	while (write(fd, rec, sizeof *rec) < 0 && errno == EINTR)
		;
}

/* A worker: compile the indices read from the task pipe until it is empty. Never returns. */
static void jit_worker(const struct jit_run *j, int task_fd, int result_fd)
{
	signal(SIGINT, SIG_DFL);
	for (;;) {
		int i;
		ssize_t got = read(task_fd, &i, sizeof i);
		if (got < 0 && errno == EINTR)
			continue;
		if (got != (ssize_t)sizeof i || i < 0 || i >= j->ks->n)
			break;
		struct jit_record rec = {.index = i};
		jit_compile_one(j, i, &rec);
		jit_write_record(result_fd, &rec);
	}
	_exit(0); /* no atexit handlers, no leak check: the parent owns everything */
}

static void jit_draw_progress(const struct jit_run *j, bool final)
{
	fprintf(stderr, "\r\033[K[%d/%d] kernels compiled, %d cache hit%s%s", j->done, j->ks->n, j->hits, j->hits == 1 ? "" : "s",
		final ? "\n" : "");
	fflush(stderr);
}

/* Online CPUs this process may run on (nproc). */
static int jit_online_cpus(void)
{
	cpu_set_t set;
	if (!sched_getaffinity(0, sizeof set, &set) && CPU_COUNT(&set) > 0)
		return CPU_COUNT(&set);
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

static int jit_compare_cost(const void *a, const void *b, void *arg)
{
	const size_t *cost = arg;
	int x = *(const int *)a, y = *(const int *)b;
	return cost[x] != cost[y] ? (cost[x] < cost[y] ? 1 : -1) : x - y;
}

/* Take one record from a worker. */
static void jit_take_record(struct jit_run *j, const struct jit_record *rec)
{
	int i = rec->index;
	if (i < 0 || i >= j->ks->n || j->finished[i])
		return;
	j->res[i] = rec->res;
	j->finished[i] = true;
	j->done++;
	if (!rec->ok) {
		snprintf(j->what[i], sizeof j->what[i], "%s%s%s", rec->what, rec->err ? ": " : "", rec->err ? strerror(rec->err) : "");
		j->errors++;
	}
	if (j->o->debug >= 1)
		fprintf(stderr, "moec: jit %s %s in %.2f s (%d registers, %lld bytes smem)\n", j->ks->v[i].name,
			rec->ok ? "compiled" : "FAILED", rec->res.seconds, rec->res.registers, (long long)rec->res.smem);
}

/* Read every record available; block for one when `wait`. Returns false at EOF. */
static bool jit_read_records(struct jit_run *j, bool wait)
{
	if (j->result_fd < 0)
		return false;
	int flags = fcntl(j->result_fd, F_GETFL);
	fcntl(j->result_fd, F_SETFL, wait ? flags & ~O_NONBLOCK : flags | O_NONBLOCK);
	for (bool first = true;; first = false) {
		struct jit_record rec;
		if (!first && wait)
			fcntl(j->result_fd, F_SETFL, flags | O_NONBLOCK);
		ssize_t got = read(j->result_fd, &rec, sizeof rec);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return true; /* EAGAIN: nothing more now */
		if (got != (ssize_t)sizeof rec) {
			close(j->result_fd);
			j->result_fd = -1;
			return false;
		}
		jit_take_record(j, &rec);
	}
}

void jit_poll(struct jit_run *j)
{
	if (!j)
		return;
	int before = j->done;
	jit_read_records(j, false);
	if (j->o->progress_line && j->done != before)
		jit_draw_progress(j, false);
}

struct jit_run *jit_start(const struct kernel_set *ks, const struct jit_options *o, const struct cache *c, struct jit_result *res)
{
	struct jit_run *j = calloc(1, sizeof *j);
	if (!j)
		return NULL;
	j->ks = ks;
	j->o = o;
	j->c = c;
	j->res = res;
	j->result_fd = -1;
	j->todo = calloc((size_t)ks->n + 1, sizeof *j->todo);
	j->finished = calloc((size_t)ks->n + 1, sizeof *j->finished);
	j->what = calloc((size_t)ks->n + 1, sizeof *j->what);
	size_t *cost = calloc((size_t)ks->n + 1, sizeof *cost);
	if (!j->todo || !j->finished || !j->what || !cost) {
		fprintf(stderr, "moec: error: out of memory\n");
		j->errors++;
		goto out;
	}
	jit_build_options(j);
	char path[PATH_MAX];
	const char *subs[] = {"cubin", "ptx", "log"};
	for (int s = 0; s < 3; s++) {
		snprintf(path, sizeof path, "%s/%s", o->dir, subs[s]);
		int err = file_make_dirs(path);
		if (err) {
			fprintf(stderr, "moec: error: cannot create %s: %s\n", path, strerror(err));
			j->errors++;
			goto out;
		}
	}
	for (int i = 0; i < ks->n; i++) {
		memset(&res[i], 0, sizeof res[i]);
		cost[i] = jit_key(j, &ks->v[i], res[i].key);
		if (jit_try_hit(j, i)) {
			j->hits++;
			j->done++;
			j->finished[i] = true;
			if (o->debug >= 1)
				fprintf(stderr, "moec: jit %s cache hit %.16s\n", ks->v[i].name, res[i].key);
		} else {
			j->todo[j->ntodo++] = i;
		}
	}
	qsort_r(j->todo, (size_t)j->ntodo, sizeof *j->todo, jit_compare_cost, cost);
	if (!j->ntodo)
		goto out;
	int task[2], result[2];
	if (pipe2(task, O_CLOEXEC) || pipe2(result, O_CLOEXEC)) {
		fprintf(stderr, "moec: error: cannot start compile workers: %s\n", strerror(errno));
		j->errors++;
		goto out;
	}
	/* Every index goes in before any worker reads, so each 4-byte read gets one whole index
	 * (ks->n is far below the 64 KiB a pipe holds). */
	for (int t = 0; t < j->ntodo; t++)
		while (write(task[1], &j->todo[t], sizeof j->todo[t]) < 0 && errno == EINTR)
			;
	close(task[1]);
	int n = o->jobs > 0 ? o->jobs : jit_online_cpus();
	n = n < j->ntodo ? n : j->ntodo;
	n = n < JIT_MAX_WORKERS ? n : JIT_MAX_WORKERS;
	fflush(stdout);
	fflush(stderr);
	for (int w = 0; w < n; w++) {
		pid_t pid = fork();
		if (pid == 0) {
			close(result[0]);
			jit_worker(j, task[0], result[1]);
		}
		if (pid < 0)
			break;
		j->pids[j->nworkers++] = pid;
	}
	close(task[0]);
	close(result[1]);
	j->result_fd = result[0];
	if (!j->nworkers) {
		fprintf(stderr, "moec: error: cannot start compile workers: %s\n", strerror(errno));
		j->errors++;
	}
	if (o->progress_line)
		jit_draw_progress(j, false);
out:
	free(cost);
	return j;
}

/* Spills fail the build unless the spec allows them; every spilling kernel is named. */
static int jit_check_spills(const struct jit_run *j)
{
	int errors = 0;
	for (int i = 0; i < j->ks->n; i++) {
		const struct jit_result *r = &j->res[i];
		if (!r->ok || (!r->spill_stores && !r->spill_loads))
			continue;
		fprintf(stderr, "moec: %s: kernel %s spills registers on %s: %lld bytes spill stores, %lld bytes spill loads, "
			"%lld bytes stack frame, %d registers (template %s)%s\n",
			j->o->allow_spills ? "warning" : "error", j->ks->v[i].name, j->o->arch, (long long)r->spill_stores,
			(long long)r->spill_loads, (long long)r->stack, r->registers, j->ks->v[i].cu->name,
			j->o->allow_spills ? "" : "; change the template's tiles, or set train.allow_spills: true to accept it");
		errors += !j->o->allow_spills;
	}
	return errors;
}

/* Print why kernel i failed, with NVRTC's log (its positions are the template's). */
static void jit_report_failure(const struct jit_run *j, int i)
{
	const struct kernel_inst *k = &j->ks->v[i];
	char path[PATH_MAX], *log = NULL;
	size_t n = 0;
	if (jit_out_path(j, k, "log", path, sizeof path) || file_read_whole(path, &log, &n))
		log = NULL;
	fprintf(stderr, "moec: error: NVRTC could not compile %s for %s (template %s, instance %s/gen/%s.cu): %s\n%s",
		k->name, j->o->arch, k->cu->name, j->o->dir, k->name, j->what[i][0] ? j->what[i] : "the compiler process died",
		log ? log : "");
	free(log);
}

int jit_finish(struct jit_run *j, bool abandon)
{
	if (!j)
		return 1;
	if (abandon)
		for (int w = 0; w < j->nworkers; w++)
			kill(j->pids[w], SIGTERM);
	while (!abandon && jit_read_records(j, true))
		if (j->o->progress_line)
			jit_draw_progress(j, false);
	for (int w = 0; w < j->nworkers; w++)
		while (waitpid(j->pids[w], NULL, 0) < 0 && errno == EINTR)
			;
	if (j->result_fd >= 0)
		close(j->result_fd);
	if (j->o->progress_line && j->ntodo && !abandon)
		jit_draw_progress(j, true);
	int errors = j->errors;
	for (int i = 0; i < j->ks->n && !abandon; i++) {
		if (!j->finished[i]) {
			snprintf(j->what[i], sizeof j->what[i], "the compiler process died");
			errors++;
		}
		if (!j->finished[i] || j->what[i][0])
			jit_report_failure(j, i);
	}
	if (!errors && !abandon)
		errors = jit_check_spills(j);
	if (j->ntodo)
		file_sync_dir(j->c->dir);
	free(j->todo);
	free(j->finished);
	free(j->what);
	free(j);
	return errors;
}

int jit_compile_all(const struct kernel_set *ks, const struct jit_options *o, const struct cache *c, struct jit_result *res)
{
	return jit_finish(jit_start(ks, o, c, res), false);
}
