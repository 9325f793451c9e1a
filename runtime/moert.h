/* moert.h - libmoert, the thin runtime every generated trainer links against.
 *
 * For now: version, fatal errors that name where they happened, and a monotonic clock.
 * Device (cuda/cpu), collectives (nccl/mpi/single), data loading, checkpoints and logging
 * join it as the trainer is built (see ../shared/DESIGN.md, "Runtime").
 */
#ifndef MOERT_H
#define MOERT_H

#include <stddef.h>

#define MOERT_VERSION "0.1.0"

/* Print "train: error: message" and exit(1); MOEC_DEBUG adds the runtime's source line.
 * Runtime errors name the file, tensor or rank involved and what to do about it. */
void moert_fatal_at(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4), noreturn));
#define moert_fatal(...) moert_fatal_at(__FILE__, __LINE__, __VA_ARGS__)

/* Seconds on a monotonic clock (for step timings). */
double moert_seconds(void);
/* Library errors: the message into err (errlen bytes; nothing when err is NULL); adderr
 * appends to what a lower layer already wrote, to say what to do about it. */
void moert_seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void moert_adderr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* write(2) all n bytes, retrying after EINTR; 0 or -1 with errno. */
int moert_write_all(int fd, const void *p, size_t n);
/* mkdir -p; 0 or -1 with errno. */
int moert_make_dirs(const char *path);

#endif
