/* files.h - whole-file reads and atomic writes, shared by emit, jit and the cache.
 *
 * Atomic write = write a temporary file in the destination's directory, fsync it, rename
 * it over the destination: a reader (another moec, a trainer starting) sees the old file
 * or the new one, never a torn one. Safe from several processes at once.
 */
#ifndef MOEC_FILES_H
#define MOEC_FILES_H

#include <stdbool.h>
#include <stddef.h>

/* Read a whole regular file; *data is NUL-terminated (and may contain NULs: binaries).
 * Returns 0, or an errno value. */
int file_read_whole(const char *path, char **data, size_t *len);
/* Atomically replace path with data (mode 0644 minus the umask). With skip_same, leave the
 * file (and its mtime) alone when it already holds exactly data. Returns 0 or an errno. */
int file_write_atomic(const char *path, const void *data, size_t len, bool skip_same);
/* mkdir -p. Returns 0 or an errno. */
int file_make_dirs(const char *path);
/* Whether a path exists and is a regular file. */
bool file_exists(const char *path);
/* Fsync a directory so renames inside it survive a crash (best effort). */
void file_sync_dir(const char *dir);

#endif
