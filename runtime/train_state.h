/* train_state.h - where a trainer's weights come from and go to, and where its batches come
 * from: random init, Hugging Face init, checkpoint save/resume, the golden-test dump, and
 * the data loader or a fixed batch. trainer.c calls these in order; each fails with a
 * message naming the file and what to do (moert_fatal), since a trainer cannot go on
 * without its weights or data.
 */
#ifndef MOERT_TRAIN_STATE_H
#define MOERT_TRAIN_STATE_H
#include <stdbool.h>
#include <stdint.h>

#include "data.h"
#include "log.h"
#include "trainer.h"

struct train_state {
	const struct moert_model *m;
	const char *ckpt_dir;
	char **exp_avg_names, **exp_avg_sq_names; /* "<hf name>.exp_avg", per tensor */
	double last_loss;
	/* several ranks: rank 0 writes; each rank holds its EP rank's experts */
	struct moert_comm *comm;
	int ep_index;
};

void train_state_init(struct train_state *ts, const struct moert_model *m, const char *ckpt_dir, struct moert_comm *comm);
/* Whether this rank holds tensor t (every dense tensor; its own experts). */
bool train_state_holds(const struct train_state *ts, const struct moert_tensor *t);
/* HF's init: normal(0, init_std) for matrices and embeddings, ones for norms. Each tensor
 * draws from its own stream seeded by (seed, name), so the values do not depend on the
 * arena layout or on which rank initializes which slice. */
void train_state_init_random(struct train_state *ts, struct moert_run *r, uint64_t seed);
/* Weights from a Hugging Face model dir or .safetensors file; every tensor must be there. */
void train_state_init_from(struct train_state *ts, struct moert_run *r, const char *path, struct log *lg);
/* Resume from the newest checkpoint in ckpt_dir: true and step/cursor set, false when there
 * is none. A checkpoint of another model is an error, not a fresh start. */
bool train_state_resume(struct train_state *ts, struct moert_run *r, long long *step, struct data_cursor *cursor,
			struct log *lg);
void train_state_save(struct train_state *ts, const struct moert_run *r, long long step, struct data_cursor cursor,
		      int keep, struct log *lg);
/* Write logits, the loss terms, every gradient ("grad.<name>", before clipping) and every
 * weight after the optimizer ("adamw.<name>") to one safetensors file. */
void train_state_dump(struct train_state *ts, const struct moert_run *r, const char *path, const struct moert_stats *st);

/* Batches: the data loader (spec or --data paths) or one fixed batch repeated (--batch). */
struct train_batches {
	const struct moert_model *m;
	struct data *data;
	struct data_batcher *batcher;
	int32_t *ids, *labels, *pos, *doc;
	bool fixed;
};
/* dp_rank / dp_size: which rows of each global batch are this rank's (data.h). */
void train_batches_open(struct train_batches *tb, const struct moert_model *m, const char *const *paths, int n_paths,
			const char *batch_file, uint64_t seed, struct data_cursor cursor, int dp_rank, int dp_size);
void train_batches_next(struct train_batches *tb, struct moert_batch *b);
struct data_cursor train_batches_cursor(const struct train_batches *tb);
void train_batches_close(struct train_batches *tb);

#endif
