/* ckpt.h - training checkpoints: one directory per step, atomic commit, keep-last-N, resume.
 *
 * Layout: CKDIR/step_00000100/ (the step, zero-padded to 8 digits) holding
 *   model.safetensors      the weights, full-shaped, by HF name, with {"format": "pt"}
 *                          metadata, so with a config.json beside it the directory loads
 *                          in transformers as it is
 *   optimizer.safetensors  optimizer state tensors (AdamW: "<hf name>.exp_avg",
 *                          "<hf name>.exp_avg_sq") and the trainer state (step, data cursor,
 *                          RNG, hashes: the caller's keys) as __metadata__ strings
 *   any extra files        the caller's (manifest.json, config.json), byte for byte
 * Every tensor is full-shaped and named, never a rank's slice, so a run may resume with a
 * different EP/TP/DP layout: each rank reads what it holds.
 *
 * Commit protocol (ckpt_write): everything is written into CKDIR/.tmp-step_XXXXXXXX-<pid>/
 * and fsynced, then that directory is renamed to step_XXXXXXXX in one step and CKDIR is
 * fsynced. A step_* directory therefore only ever appears complete, and old ones are first
 * renamed to a .tmp-* name and only then removed, so a crash (SIGKILL, power loss after
 * fsync) at any instant leaves every committed checkpoint intact and loadable; what a crash
 * leaves behind are .tmp-* directories, which readers ignore and the next ckpt_write of any
 * process removes once their pid is dead. One process writes a CKDIR at a time (rank 0).
 */
#ifndef MOERT_CKPT_H
#define MOERT_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "hf.h"
#include "safetensors.h"

/* One full-shaped tensor by name; data in host memory. */
struct ckpt_tensor {
	const char *name;
	enum st_dtype dtype;
	int ndim;
	uint64_t shape[ST_MAX_DIMS];
	const void *data;
};

/* An extra file written into the step directory; name is a plain file name (no '/'). */
struct ckpt_file {
	const char *name;
	const void *data;
	size_t size;
};

struct ckpt_save {
	const char *dir;                 /* checkpoint root (created with parents if missing) */
	long long step;                  /* >= 0 */
	int keep;                        /* keep this many newest step dirs; <= 0 keeps all */
	const struct ckpt_tensor *model;
	size_t n_model;
	const struct ckpt_tensor *optim; /* names as they are to be read back by ckpt_read_optim */
	size_t n_optim;
	const struct st_kv *state;       /* -> optimizer.safetensors __metadata__ */
	size_t n_state;
	const struct ckpt_file *files;
	size_t n_files;
};

/* Write and commit CKDIR/step_XXXXXXXX as above. A complete directory for the same step is
 * replaced atomically (swapped with the new one, then removed). Then the oldest step dirs
 * beyond keep are removed (never the one just written, even when newer steps exist, as after
 * a rollback), and stale .tmp-* dirs whose pid is not alive. 0, or -1 with err; when only
 * the clean-up fails, err says that the checkpoint itself was committed. */
int ckpt_write(const struct ckpt_save *s, char *err, size_t errlen);

/* The newest complete checkpoint under CKDIR: the step_* dir with the highest step whose
 * model.safetensors and optimizer.safetensors both have valid headers. .tmp-* dirs are
 * ignored; a damaged step_* dir is skipped silently when an older valid one exists.
 * 1 and path filled; 0 when there is none (CKDIR missing or holding no step_* dir);
 * -1 with err on I/O errors, and when step_* dirs exist but none is valid (err names the
 * newest and what is wrong with it): a run asked to resume must not silently start over
 * and then prune the damaged checkpoints. err is "" on 0 and 1. */
int ckpt_latest(const char *dir, char *path, size_t pathlen, char *err, size_t errlen);

struct ckpt;

/* Open a step dir: model (through hf.h) and optimizer file, headers validated. */
int ckpt_open(const char *stepdir, struct ckpt **out, char *err, size_t errlen);
void ckpt_close(struct ckpt *c);

/* model.safetensors through hf.h; owned by c. */
struct hf_model *ckpt_model(struct ckpt *c);

/* Read optimizer tensor name (as written: "<hf name>.exp_avg", ...) as f32 with the exact
 * shape check and messages of hf_read_f32. */
int ckpt_read_optim(struct ckpt *c, const char *name, int ndim, const uint64_t *shape, float *dst, char *err,
                    size_t errlen);

/* Trainer state value by key; NULL when absent. */
const char *ckpt_state(const struct ckpt *c, const char *key);
/* The step dir given to ckpt_open. */
const char *ckpt_path(const struct ckpt *c);

/* Parse state values strictly (decimal, no sign for u64, no spaces, no trailing text, in
 * range): 0 and *out, or -1 with "FILE: state KEY = 'text' is not ..." (or "FILE: no state
 * KEY ..." when absent). */
int ckpt_state_i64(const struct ckpt *c, const char *key, long long *out, char *err, size_t errlen);
int ckpt_state_u64(const struct ckpt *c, const char *key, unsigned long long *out, char *err, size_t errlen);

/* Additions. */

/* CKDIR/step_XXXXXXXX for a step, as ckpt_write names it: 0, or -1 when it does not fit. */
int ckpt_step_path(const char *dir, long long step, char *path, size_t pathlen);

/* The optimizer file's tensor as stored (NULL when absent), e.g. to read a slice. */
const struct st_tensor *ckpt_find_optim(struct ckpt *c, const char *name);

#endif
