/* files.c - whole-file reads and atomic writes. See files.h. */
#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int file_read_whole(const char *path, char **data, size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	int err = 0;
	char *buf = NULL;
	if (fstat(fd, &st) != 0) {
		err = errno;
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		err = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
		goto out_close;
	}
	size_t n = (size_t)st.st_size, got = 0;
	buf = malloc(n + 1);
	if (!buf) {
		err = ENOMEM;
		goto out_close;
	}
	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			err = r < 0 ? errno : EIO; /* shrank under us */
			goto out_free;
		}
		got += (size_t)r;
	}
	buf[n] = 0;
	*data = buf;
	*len = n;
	close(fd);
	return 0;
out_free:
	free(buf);
out_close:
	close(fd);
	return err;
}

static bool file_holds(const char *path, const void *data, size_t len)
{
	char *old;
	size_t n;
	if (file_read_whole(path, &old, &n))
		return false;
	bool same = n == len && !memcmp(old, data, len);
	free(old);
	return same;
}

static int file_write_fd(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return errno;
		p += w;
		len -= (size_t)w;
	}
	return fsync(fd) ? errno : 0;
}

/* The umask, read once: umask() can only be read by setting it (moec has no threads;
 * jit's workers are processes, each with its own copy). */
static mode_t file_mode(void)
{
	static mode_t mode = (mode_t)-1;
	if (mode == (mode_t)-1) {
		mode_t m = umask(022);
		umask(m);
		mode = 0666 & ~m;
	}
	return mode;
}

int file_write_atomic(const char *path, const void *data, size_t len, bool skip_same)
{
	if (skip_same && file_holds(path, data, len))
		return 0;
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path) >= (int)sizeof tmp)
		return ENAMETOOLONG;
	int fd = mkstemp(tmp);
	if (fd < 0)
		return errno;
	int err = file_write_fd(fd, data, len);
	if (!err && fchmod(fd, file_mode()))
		err = errno;
	if (close(fd) && !err)
		err = errno;
	if (err)
		goto out_unlink;
	if (rename(tmp, path)) {
		err = errno;
		goto out_unlink;
	}
	return 0;
out_unlink:
	unlink(tmp);
	return err;
}

int file_make_dirs(const char *path)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
		return ENAMETOOLONG;
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p)
			continue;
		char c = *p;
		*p = 0;
		if (mkdir(buf, 0777) && errno != EEXIST)
			return errno;
		*p = c;
		if (!c)
			break;
	}
	struct stat st;
	if (stat(path, &st))
		return errno;
	return S_ISDIR(st.st_mode) ? 0 : ENOTDIR;
}

bool file_exists(const char *path)
{
	struct stat st;
	return !stat(path, &st) && S_ISREG(st.st_mode);
}

void file_sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}
