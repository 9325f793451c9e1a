/* ckpt.c - training checkpoints (see ckpt.h for the layout and the commit protocol).
 *
 * The invariant everything here keeps: a name matching step_* in CKDIR only ever refers to
 * a complete, fsynced checkpoint. New ones are built under a .tmp-* name and renamed in;
 * old ones are renamed to a .tmp-* name before anything in them is deleted. Readers skip
 * .tmp-*, so no crash point exposes a half-written or half-deleted step dir.
 */
#define _GNU_SOURCE
#include "ckpt.h"
#include "moert.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define MODEL_FILE "model.safetensors"
#define OPTIM_FILE "optimizer.safetensors"

/* snprintf into a PATH_MAX buffer; -1 when the path does not fit. */
static int pathf(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int pathf(char *buf, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, PATH_MAX, fmt, ap);
	va_end(ap);
	return n < 0 || n >= PATH_MAX ? -1 : 0;
}

/* ---- file system helpers ---- */

static int fsync_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	int e = errno;
	close(fd);
	errno = e;
	return rc;
}

/* mkdir -p; a directory created here is made durable in its parent, so a committed
 * checkpoint cannot vanish with a CKDIR entry lost in a crash. */
static int mkdir_p(const char *path, char *err, size_t errlen)
{
	char p[PATH_MAX];
	if (pathf(p, "%s", path)) {
		moert_seterr(err, errlen, "%s: path too long", path);
		return -1;
	}
	for (char *s = p + 1;; s++) {
		if (*s && *s != '/')
			continue;
		char c = *s;
		*s = 0;
		if (!mkdir(p, 0755)) {
			char *slash = strrchr(p, '/');
			if (slash) {
				*slash = 0;
				fsync_dir(*p ? p : "/");
				*slash = '/';
			} else {
				fsync_dir(".");
			}
		} else if (errno != EEXIST) {
			moert_seterr(err, errlen, "%s: cannot create directory %s: %s", path, p, strerror(errno));
			return -1;
		}
		*s = c;
		if (!c)
			break;
	}
	struct stat sb;
	if (stat(path, &sb) || !S_ISDIR(sb.st_mode)) {
		moert_seterr(err, errlen, "%s: not a directory (the checkpoint root must be one)", path);
		return -1;
	}
	return 0;
}

/* Write and fsync a new file. No temp file + rename: it lives in the checkpoint's own temp
 * directory, whose rename is the commit. */
static int write_file(const char *path, const void *data, size_t size, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		moert_seterr(err, errlen, "%s: cannot create: %s", path, strerror(errno));
		return -1;
	}
	if (moert_write_all(fd, data, size) || fsync(fd)) {
		moert_seterr(err, errlen, "%s: cannot write: %s (disk full?)", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (close(fd)) {
		moert_seterr(err, errlen, "%s: cannot close: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* rm -r of name under dfd, not following symlinks. Checkpoint dirs are flat; the depth
 * limit only guards against a hostile tree. */
static int rm_at(int dfd, const char *name, int depth)
{
	if (!unlinkat(dfd, name, 0) || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -1;
	if (depth > 16) {
		errno = ELOOP;
		return -1;
	}
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -1;
	}
	int rc = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && rm_at(dirfd(d), e->d_name, depth + 1))
			rc = -1;
	int saved = errno;
	closedir(d);
	if (rc) {
		errno = saved;
		return -1;
	}
	return unlinkat(dfd, name, AT_REMOVEDIR) && errno != ENOENT ? -1 : 0;
}

static int rm_tree(const char *path)
{
	return rm_at(AT_FDCWD, path, 0);
}

/* ---- names ---- */

/* "step_" and decimal digits only: 0 and *step. */
static int parse_step(const char *name, long long *step)
{
	if (strncmp(name, "step_", 5) || !name[5])
		return -1;
	long long v = 0;
	for (const char *p = name + 5; *p; p++) {
		if (*p < '0' || *p > '9' || v > (LLONG_MAX - (*p - '0')) / 10)
			return -1;
		v = v * 10 + (*p - '0');
	}
	*step = v;
	return 0;
}

/* The pid a .tmp-* dir ends with ("-<pid>"), or 0 when it does not end with one. */
static pid_t tmp_pid(const char *name)
{
	const char *dash = strrchr(name, '-');
	if (strncmp(name, ".tmp-", 5) || !dash || !dash[1])
		return 0;
	long v = 0;
	for (const char *p = dash + 1; *p; p++) {
		if (*p < '0' || *p > '9' || v > 99999999)
			return 0;
		v = v * 10 + (*p - '0');
	}
	return (pid_t)v;
}

static int pid_alive(pid_t pid)
{
	return !kill(pid, 0) || errno != ESRCH;
}

int ckpt_step_path(const char *dir, long long step, char *path, size_t pathlen)
{
	if (step < 0)
		return -1;
	int n = snprintf(path, pathlen, "%s/step_%08lld", dir, step);
	return n < 0 || (size_t)n >= pathlen ? -1 : 0;
}

struct step_dir {
	long long step;
	char *name;
};

static int cmp_step_desc(const void *a, const void *b)
{
	const struct step_dir *x = a, *y = b;
	if (x->step != y->step)
		return x->step > y->step ? -1 : 1;
	return strcmp(x->name, y->name);
}

static void free_steps(struct step_dir *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].name);
	free(v);
}

/* The step_* entries of dir, newest first. 0, or -1 with errno (ENOENT: no dir). Entries
 * that are not directories are skipped. */
static int list_steps(const char *dir, struct step_dir **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	size_t cap = 0;
	struct step_dir *v = NULL;
	int rc = 0;
	for (;;) {
		/* errno tells the end of the listing from a read error; a failed fstatat (a
		 * dangling symlink) must not leave it set. */
		errno = 0;
		struct dirent *e = readdir(d);
		if (!e) {
			rc = errno ? -1 : 0;
			break;
		}
		long long step;
		struct stat sb;
		if (parse_step(e->d_name, &step) || fstatat(dirfd(d), e->d_name, &sb, 0) || !S_ISDIR(sb.st_mode))
			continue;
		if (*n == cap) {
			cap = cap ? 2 * cap : 16;
			struct step_dir *w = realloc(v, cap * sizeof *v);
			if (!w) {
				rc = -1;
				break;
			}
			v = w;
		}
		if (!(v[*n].name = strdup(e->d_name))) {
			rc = -1;
			break;
		}
		v[(*n)++].step = step;
	}
	int saved = errno;
	closedir(d);
	if (rc) {
		free_steps(v, *n);
		*n = 0;
		errno = saved ? saved : ENOMEM;
		return -1;
	}
	if (*n > 1)
		qsort(v, *n, sizeof *v, cmp_step_desc);
	*out = v;
	return 0;
}

/* ---- writing ---- */

static int check_save(const struct ckpt_save *s, char *err, size_t errlen)
{
	if (!s->dir || !*s->dir) {
		moert_seterr(err, errlen, "checkpoint: no directory given; set checkpoint.dir in the spec");
		return -1;
	}
	if ((s->n_model && !s->model) || (s->n_optim && !s->optim) || (s->n_state && !s->state) ||
	    (s->n_files && !s->files)) {
		moert_seterr(err, errlen, "%s: a tensor, state or file count without its array; this is a bug in the trainer", s->dir);
		return -1;
	}
	if (s->step < 0) {
		moert_seterr(err, errlen, "%s: step %lld is negative; this is a bug in the trainer", s->dir, s->step);
		return -1;
	}
	for (size_t i = 0; i < s->n_files; i++) {
		const char *n = s->files[i].name;
		if (!n || !*n || strchr(n, '/') || !strcmp(n, ".") || !strcmp(n, "..") || !strcmp(n, MODEL_FILE) ||
		    !strcmp(n, OPTIM_FILE) || (s->files[i].size && !s->files[i].data)) {
			moert_seterr(err, errlen, "%s: extra file %zu ('%s') needs a plain file name other than %s and %s, and its data",
			       s->dir, i, n ? n : "(null)", MODEL_FILE, OPTIM_FILE);
			return -1;
		}
		for (size_t k = 0; k < i; k++)
			if (!strcmp(s->files[k].name, n)) {
				moert_seterr(err, errlen, "%s: extra file '%s' given twice", s->dir, n);
				return -1;
			}
	}
	/* The reader rejects duplicate metadata keys, so a duplicate would make the checkpoint
	 * unloadable: refuse it here, where the bug is. */
	for (size_t i = 0; i < s->n_state; i++)
		for (size_t k = 0; k < i; k++)
			if (s->state[i].key && s->state[k].key && !strcmp(s->state[i].key, s->state[k].key)) {
				moert_seterr(err, errlen, "%s: state key '%s' given twice", s->dir, s->state[i].key);
				return -1;
			}
	return 0;
}

static int write_tensors(const char *path, const struct ckpt_tensor *t, size_t n, const struct st_kv *meta, size_t nmeta,
                         char *err, size_t errlen)
{
	struct st_write_tensor *w = calloc(n ? n : 1, sizeof *w);
	if (!w) {
		moert_seterr(err, errlen, "%s: out of memory", path);
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		w[i] = (struct st_write_tensor){t[i].name, t[i].dtype, t[i].ndim, t[i].shape, t[i].data};
	int rc = st_write(path, w, n, meta, nmeta, err, errlen);
	free(w);
	return rc;
}

/* Fill the temp dir: both safetensors files and the extra files, all fsynced. */
static int fill(const char *tmp, const struct ckpt_save *s, char *err, size_t errlen)
{
	char p[PATH_MAX];
	/* transformers refuses safetensors files whose metadata lacks format=pt. */
	static const struct st_kv pt = {"format", "pt"};
	if (pathf(p, "%s/" MODEL_FILE, tmp))
		goto toolong;
	if (write_tensors(p, s->model, s->n_model, &pt, 1, err, errlen))
		return -1;
	if (pathf(p, "%s/" OPTIM_FILE, tmp))
		goto toolong;
	if (write_tensors(p, s->optim, s->n_optim, s->state, s->n_state, err, errlen))
		return -1;
	for (size_t i = 0; i < s->n_files; i++) {
		if (pathf(p, "%s/%s", tmp, s->files[i].name))
			goto toolong;
		if (write_file(p, s->files[i].data, s->files[i].size, err, errlen))
			return -1;
	}
	if (fsync_dir(tmp)) {
		moert_seterr(err, errlen, "%s: cannot fsync: %s", tmp, strerror(errno));
		return -1;
	}
	return 0;
toolong:
	moert_seterr(err, errlen, "%s: path too long for the checkpoint's files; choose a shorter checkpoint.dir", tmp);
	return -1;
}

/* Rename the finished temp dir to final. When final exists, swap the two atomically, so
 * the step name never points at nothing; the old contents end up under tmp's name, which
 * *old is set to for removal. Without RENAME_EXCHANGE (some network file systems) the old
 * dir is renamed aside first: a crash in between loses that one step dir, never another. */
static int commit(const char *tmp, const char *final, const char *aside, const char **old, char *err, size_t errlen)
{
	*old = NULL;
	struct stat sb;
	if (lstat(final, &sb)) {
		if (errno != ENOENT || rename(tmp, final))
			goto fail;
		return 0;
	}
	if (!renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_EXCHANGE)) {
		*old = tmp;
		return 0;
	}
	if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
		goto fail;
	if (rename(final, aside))
		goto fail;
	if (rename(tmp, final)) {
		int e = errno;
		rename(aside, final);
		errno = e;
		goto fail;
	}
	*old = aside;
	return 0;
fail:
	moert_seterr(err, errlen, "%s: cannot rename %s to it: %s", final, tmp, strerror(errno));
	return -1;
}

/* Remove step dirs beyond keep (never the one just written), each renamed out of the
 * step_* namespace first so a crash mid-removal leaves no half checkpoint behind. */
static int prune(const char *dir, const char *written, int keep, char *err, size_t errlen)
{
	struct step_dir *v;
	size_t n;
	if (keep <= 0)
		return 0;
	if (list_steps(dir, &v, &n)) {
		moert_seterr(err, errlen, "%s: cannot list: %s", dir, strerror(errno));
		return -1;
	}
	int kept = 1, rc = 0; /* the one just written */
	for (size_t i = 0; i < n; i++) {
		char from[PATH_MAX], to[PATH_MAX];
		if (!strcmp(v[i].name, written) || kept++ < keep)
			continue;
		if (pathf(from, "%s/%s", dir, v[i].name) || pathf(to, "%s/.tmp-del-%s-%ld", dir, v[i].name, (long)getpid()))
			continue;
		if (rename(from, to) || rm_tree(to)) {
			moert_seterr(err, errlen, "%s: cannot remove old checkpoint %s: %s; remove it by hand", dir, v[i].name,
			       strerror(errno));
			rc = -1;
		}
	}
	free_steps(v, n);
	return rc;
}

/* Remove .tmp-* dirs left by dead writers (and by this process's earlier failed writes). */
static int clean_stale(const char *dir, char *err, size_t errlen)
{
	DIR *d = opendir(dir);
	if (!d) {
		moert_seterr(err, errlen, "%s: cannot list: %s", dir, strerror(errno));
		return -1;
	}
	int rc = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		pid_t pid = tmp_pid(e->d_name);
		if (pid <= 0 || (pid != getpid() && pid_alive(pid)))
			continue;
		if (rm_at(dirfd(d), e->d_name, 0)) {
			moert_seterr(err, errlen, "%s: cannot remove stale %s: %s; remove it by hand", dir, e->d_name, strerror(errno));
			rc = -1;
		}
	}
	closedir(d);
	return rc;
}

int ckpt_write(const struct ckpt_save *s, char *err, size_t errlen)
{
	if (err && errlen)
		*err = 0;
	if (check_save(s, err, errlen) || mkdir_p(s->dir, err, errlen))
		return -1;
	char name[32], tmp[PATH_MAX], final[PATH_MAX], aside[PATH_MAX];
	snprintf(name, sizeof name, "step_%08lld", s->step);
	long pid = (long)getpid();
	if (pathf(tmp, "%s/.tmp-%s-%ld", s->dir, name, pid) || pathf(final, "%s/%s", s->dir, name) ||
	    pathf(aside, "%s/.tmp-old-%s-%ld", s->dir, name, pid)) {
		moert_seterr(err, errlen, "%s: path too long for a checkpoint directory", s->dir);
		return -1;
	}
	/* A leftover of this pid's own failed attempt would make mkdir fail. */
	rm_tree(tmp);
	if (mkdir(tmp, 0755)) {
		moert_seterr(err, errlen, "%s: cannot create %s: %s", s->dir, tmp, strerror(errno));
		return -1;
	}
	const char *old;
	if (fill(tmp, s, err, errlen) || commit(tmp, final, aside, &old, err, errlen)) {
		rm_tree(tmp);
		return -1;
	}
	if (fsync_dir(s->dir)) {
		moert_seterr(err, errlen, "%s: cannot fsync after committing %s: %s", s->dir, name, strerror(errno));
		return -1;
	}
	/* Committed. What follows is clean-up; its failure leaves a valid checkpoint. */
	int rc = 0;
	if (old && rm_tree(old)) {
		moert_seterr(err, errlen, "%s: cannot remove the replaced %s (now %s): %s; remove it by hand", s->dir, name, old,
		       strerror(errno));
		rc = -1;
	}
	if (prune(s->dir, name, s->keep, err, errlen) || clean_stale(s->dir, err, errlen))
		rc = -1;
	if (rc)
		moert_adderr(err, errlen, " (checkpoint %s itself was saved)", final);
	return rc;
}

/* ---- reading ---- */

struct ckpt {
	char *path;
	char *optim_path;
	struct hf_model *model;
	struct st_file *optim;
};

void ckpt_close(struct ckpt *c)
{
	if (!c)
		return;
	hf_close(c->model);
	st_close(c->optim);
	free(c->optim_path);
	free(c->path);
	free(c);
}

/* Open one of the two files, turning "missing" and "damaged" into what to do. */
static int open_part(const char *stepdir, const char *file, char *path, char *err, size_t errlen)
{
	struct stat sb;
	if (pathf(path, "%s/%s", stepdir, file)) {
		moert_seterr(err, errlen, "%s: path too long", stepdir);
		return -1;
	}
	if (stat(path, &sb)) {
		moert_seterr(err, errlen, "%s: %s", path, errno == ENOENT ? "missing" : strerror(errno));
		return -1;
	}
	return 0;
}

/* ckpt_open; hint: say to resume from another step dir (ckpt_latest, which looks at all of
 * them, words its own advice). */
static int open_ckpt(const char *stepdir, int hint, struct ckpt **out, char *err, size_t errlen)
{
	*out = NULL;
	if (err && errlen)
		*err = 0;
	struct ckpt *c = calloc(1, sizeof *c);
	char mp[PATH_MAX], op[PATH_MAX];
	if (!c || !(c->path = strdup(stepdir))) {
		free(c);
		moert_seterr(err, errlen, "%s: out of memory", stepdir);
		return -1;
	}
	if (open_part(stepdir, MODEL_FILE, mp, err, errlen) || open_part(stepdir, OPTIM_FILE, op, err, errlen))
		goto fail_hint;
	if (!(c->optim_path = strdup(op))) {
		moert_seterr(err, errlen, "%s: out of memory", stepdir);
		goto fail;
	}
	if (hf_open(mp, &c->model, err, errlen) || st_open(op, &c->optim, err, errlen))
		goto fail_hint;
	*out = c;
	return 0;
fail_hint:
	if (hint)
		moert_adderr(err, errlen, " (checkpoint %s is damaged or incomplete; resume from another step_* dir)", stepdir);
fail:
	ckpt_close(c);
	return -1;
}

int ckpt_open(const char *stepdir, struct ckpt **out, char *err, size_t errlen)
{
	return open_ckpt(stepdir, 1, out, err, errlen);
}

struct hf_model *ckpt_model(struct ckpt *c)
{
	return c->model;
}

const char *ckpt_path(const struct ckpt *c)
{
	return c->path;
}

const struct st_tensor *ckpt_find_optim(struct ckpt *c, const char *name)
{
	return st_find(c->optim, name);
}

int ckpt_read_optim(struct ckpt *c, const char *name, int ndim, const uint64_t *shape, float *dst, char *err,
                    size_t errlen)
{
	const struct st_tensor *t = st_find(c->optim, name);
	if (!t) {
		moert_seterr(err, errlen,
		       "%s: no tensor %s (the checkpoint does not match this model or optimizer; compare the spec with the checkpoint's manifest)",
		       c->optim_path, name);
		return -1;
	}
	return hf_tensor_f32(c->optim_path, t, ndim, shape, dst, err, errlen);
}

const char *ckpt_state(const struct ckpt *c, const char *key)
{
	return st_metadata(c->optim, key);
}

/* Decimal digits to *v: -1 on anything else, or on overflow. */
static int parse_digits(const char *s, unsigned long long *v)
{
	*v = 0;
	if (!*s)
		return -1;
	for (; *s; s++) {
		unsigned d = (unsigned)(*s - '0');
		if (d > 9 || *v > (ULLONG_MAX - d) / 10)
			return -1;
		*v = *v * 10 + d;
	}
	return 0;
}

static const char *state_or_err(const struct ckpt *c, const char *key, char *err, size_t errlen)
{
	const char *v = ckpt_state(c, key);
	if (!v)
		moert_seterr(err, errlen, "%s: no state %s (the checkpoint was written by another trainer; start without resuming, or use a matching trainer)",
		       c->optim_path, key);
	return v;
}

int ckpt_state_i64(const struct ckpt *c, const char *key, long long *out, char *err, size_t errlen)
{
	const char *v = state_or_err(c, key, err, errlen);
	if (!v)
		return -1;
	int neg = *v == '-';
	unsigned long long u;
	if (parse_digits(v + neg, &u) || u > (unsigned long long)LLONG_MAX + neg) {
		moert_seterr(err, errlen, "%s: state %s = '%.64s' is not a signed 64-bit integer (the checkpoint is damaged)",
		       c->optim_path, key, v);
		return -1;
	}
	*out = neg ? (long long)(0 - u) : (long long)u;
	return 0;
}

int ckpt_state_u64(const struct ckpt *c, const char *key, unsigned long long *out, char *err, size_t errlen)
{
	const char *v = state_or_err(c, key, err, errlen);
	if (!v)
		return -1;
	if (parse_digits(v, out)) {
		moert_seterr(err, errlen, "%s: state %s = '%.64s' is not an unsigned 64-bit integer (the checkpoint is damaged)",
		       c->optim_path, key, v);
		return -1;
	}
	return 0;
}

/* ---- finding the newest ---- */

int ckpt_latest(const char *dir, char *path, size_t pathlen, char *err, size_t errlen)
{
	if (err && errlen)
		*err = 0;
	struct step_dir *v;
	size_t n;
	if (list_steps(dir, &v, &n)) {
		if (errno == ENOENT)
			return 0;
		moert_seterr(err, errlen, "%s: cannot list checkpoints: %s", dir, strerror(errno));
		return -1;
	}
	char first[1024] = "";
	int rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		char p[PATH_MAX], e[1024];
		struct ckpt *c;
		if (pathf(p, "%s/%s", dir, v[i].name))
			continue;
		if (open_ckpt(p, 0, &c, e, sizeof e)) {
			if (!first[0])
				snprintf(first, sizeof first, "%s", e);
			continue;
		}
		ckpt_close(c);
		if (snprintf(path, pathlen, "%s", p) >= (int)pathlen) {
			moert_seterr(err, errlen, "%s: path too long for the caller's buffer", p);
			rc = -1;
		} else {
			rc = 1;
		}
	}
	if (rc == 0 && n) {
		moert_seterr(err, errlen,
		       "%s (and none of the %zu step_* dirs in %s is a valid checkpoint; restore one, or move them away to start over)",
		       first, n, dir);
		rc = -1;
	}
	free_steps(v, n);
	return rc;
}
