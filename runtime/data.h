/* data.h - pre-tokenized token shards for training: open, validate, pack, shuffle, shard.
 *
 * Formats (all little-endian, all mmap'd, nothing copied):
 *   megatron  Megatron-LM indexed dataset, PREFIX.idx + PREFIX.bin. The .idx holds
 *             "MMIDIDX\0\0", version u64 = 1, dtype code u8 (1 uint8, 2 int8, 3 int16,
 *             4 int32, 5 int64, 6 float64, 7 float32, 8 uint16 - the float codes are
 *             rejected, tokens are integers), sequence count u64, document count u64,
 *             int32 lengths[seq], int64 byte pointers[seq], int64 document indices[doc].
 *             Each sequence is one document (preprocess_data.py writes one per document).
 *   llmc      llm.c shard: 256 int32 header (magic 20240520, version 1 = uint16 tokens,
 *             2 = uint32 tokens, header[2] = token count), then the tokens.
 *   raw       a bare array of uint32 tokens.
 *   auto      per file: ".idx" or a PREFIX with PREFIX.idx -> megatron; the llm.c magic ->
 *             llmc; a ".bin" whose sibling ".idx" exists -> megatron; anything else -> raw.
 * A path may name a Megatron dataset by its prefix, its .idx or its .bin.
 *
 * data_open checks everything once, up front, so a bad file fails at start-up with its name
 * and not hours into a run: magic, version, sizes against the file size, every offset in
 * range, and every token in [0, vocab_size). llmc and raw files are cut into documents after
 * each eod_token (the eod stays the last token of its document, as Megatron appends it);
 * eod_token < 0 makes each file one document.
 *
 * Packing (the batcher). Documents, in an order shuffled per epoch, are laid end to end
 * into one token stream. Global row k is stream[k*S, k*S + S + 1): consecutive rows share
 * one token, so every next-token pair in the stream is trained exactly once. For row
 * position j < S: input = row[j], label = row[j+1], except label = -100 where row[j+1]
 * starts another document (the pair crosses a document boundary; attention is masked per
 * document, so that prediction is meaningless). positions restart at 0 at each document
 * start and at the start of each row; doc_ids number the document pieces of a micro-batch
 * 0, 1, 2, ... in row-major order (a document cut by a row end gets a new id in the next
 * row). The tail of an epoch too short for a whole global batch is dropped, so every rank
 * moves to the next epoch together.
 *
 * Shuffle: splitmix64 (Steele, Lea, Flood 2014; the constants of Vigna's reference) seeded
 * with seed ^ (0xD1B54A32D192ED03 * (epoch + 1)), then Fisher-Yates from the last index
 * down, j drawn in [0, i] by rejection (no modulo bias). Identical on every rank and every
 * platform, so a Python reader could reproduce it.
 *
 * Sharding: a step consumes micro_batch * dp_size global rows starting at the cursor; rank r
 * takes rows cursor + r, cursor + r + dp_size, ... (every dp-th row). The cursor
 * (epoch, row) is the same on every rank and is what a checkpoint saves.
 */
#ifndef MOERT_DATA_H
#define MOERT_DATA_H

#include <stddef.h>
#include <stdint.h>

enum data_format { DATA_AUTO, DATA_MEGATRON, DATA_LLMC, DATA_RAW };

/* "auto", "megatron", "llmc", "raw" -> 0 and *out; anything else -> -1. */
int data_format_parse(const char *name, enum data_format *out);
const char *data_format_name(enum data_format f);

struct data;

/* Open and validate n files. On failure returns NULL and writes one line naming the file
 * and what is wrong into err (errlen bytes). vocab_size must be in [1, 2^31 - 1]. */
struct data *data_open(const char *const *paths, int n, enum data_format format, int64_t vocab_size,
                       int64_t eod_token, char *err, size_t errlen);
void data_close(struct data *d);

int64_t data_num_docs(const struct data *d);
int64_t data_num_tokens(const struct data *d);
int64_t data_doc_len(const struct data *d, int64_t doc);
/* The format a file was read as (auto resolved). */
enum data_format data_file_format(const struct data *d, int file);
/* Copy n tokens of document doc from offset off into out; the range must be in bounds. */
void data_doc_read(const struct data *d, int64_t doc, int64_t off, int64_t n, int32_t *out);

struct data_batcher_config {
	int seq_len;        /* S: tokens per row fed to the model */
	int micro_batch;    /* B: rows per rank per micro-batch */
	int dp_rank, dp_size;
	uint64_t seed;
	int shuffle;        /* 0: documents in file order every epoch */
};

/* Where the next micro-batch starts: global row within the epoch. Saved in checkpoints. */
struct data_cursor {
	uint64_t epoch;
	uint64_t row;
};

struct data_batcher;

/* NULL and err when the configuration is invalid or the data cannot fill one global batch. */
struct data_batcher *data_batcher_new(const struct data *d, const struct data_batcher_config *c, char *err,
                                      size_t errlen);
void data_batcher_free(struct data_batcher *b);

/* Fill this rank's next micro-batch: four [B, S] row-major arrays. Returns the cursor the
 * batch was taken at. */
struct data_cursor data_batcher_next(struct data_batcher *b, int32_t *input_ids, int32_t *labels, int32_t *positions,
                                     int32_t *doc_ids);
struct data_cursor data_batcher_cursor(const struct data_batcher *b);
/* Restore a saved cursor; -1 and err when it does not fit this data and configuration. */
int data_batcher_seek(struct data_batcher *b, struct data_cursor c, char *err, size_t errlen);
/* Global rows per epoch that are used (a multiple of micro_batch * dp_size). */
uint64_t data_batcher_rows_per_epoch(const struct data_batcher *b);

#endif
