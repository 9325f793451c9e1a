/* data.c - token shards: mmap, validate, pack, shuffle, shard. See data.h.
 *
 * Every number read from a file is treated as hostile: each size and offset is checked
 * against the mapped length before anything is read through it, and products are checked
 * for overflow, because a dataset downloaded from anywhere must never crash the trainer. */
#define _GNU_SOURCE
#include "data.h"
#include "moert.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Element types of token storage; the Megatron codes map onto these. */
enum tok_type { T_U8, T_I8, T_I16, T_I32, T_I64, T_U16, T_U32 };
static const int tok_size[] = {1, 1, 2, 4, 8, 2, 4};

struct map {
	char *path;
	const uint8_t *p;
	uint64_t size;
};

struct doc {
	uint32_t file;     /* index into data.files (the token file) */
	uint8_t type;      /* enum tok_type */
	uint64_t off;      /* byte offset of the first token */
	uint64_t len;      /* tokens */
};

struct data {
	struct map *maps; /* every mapped file, .idx included */
	int nmaps;
	enum data_format *formats; /* per path */
	int nfiles;
	struct doc *docs;
	int64_t ndocs, cap;
	int64_t ntokens;
};

int data_format_parse(const char *name, enum data_format *out)
{
	static const char *names[] = {"auto", "megatron", "llmc", "raw"};
	for (int i = 0; i < 4; i++)
		if (!strcmp(name, names[i])) {
			*out = (enum data_format)i;
			return 0;
		}
	return -1;
}

const char *data_format_name(enum data_format f)
{
	static const char *names[] = {"auto", "megatron", "llmc", "raw"};
	return (unsigned)f < 4 ? names[f] : "?";
}

/* Map a whole file read-only; an empty file maps to NULL/0 (mmap refuses length 0). */
static int map_file(struct data *d, const char *path, struct map **out, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		moert_seterr(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		moert_seterr(err, errlen, "%s: not a regular file", path);
		close(fd);
		return -1;
	}
	const uint8_t *p = NULL;
	if (st.st_size > 0) {
		p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (p == MAP_FAILED) {
			moert_seterr(err, errlen, "%s: cannot mmap: %s", path, strerror(errno));
			close(fd);
			return -1;
		}
	}
	close(fd);
	struct map *m = realloc(d->maps, (size_t)(d->nmaps + 1) * sizeof *m);
	if (!m)
		abort();
	d->maps = m;
	m = &d->maps[d->nmaps++];
	m->path = strdup(path);
	m->p = p;
	m->size = (uint64_t)st.st_size;
	*out = m;
	return 0;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static int64_t read_tok(const uint8_t *p, int type)
{
	switch (type) {
	case T_U8: return p[0];
	case T_I8: return (int8_t)p[0];
	case T_I16: { int16_t v; memcpy(&v, p, 2); return v; }
	case T_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
	case T_I32: { int32_t v; memcpy(&v, p, 4); return v; }
	case T_U32: { uint32_t v; memcpy(&v, p, 4); return v; }
	default: { int64_t v; memcpy(&v, p, 8); return v; }
	}
}

static void add_doc(struct data *d, uint32_t file, int type, uint64_t off, uint64_t len)
{
	if (d->ndocs == d->cap) {
		d->cap = d->cap ? 2 * d->cap : 64;
		d->docs = realloc(d->docs, (size_t)d->cap * sizeof *d->docs);
		if (!d->docs)
			abort();
	}
	d->docs[d->ndocs++] = (struct doc){file, (uint8_t)type, off, len};
	d->ntokens += (int64_t)len;
}

/* Check n tokens at byte offset off of map m; position in the message counts tokens from
 * the start of the file's token area (base). */
static int scan_tokens(const struct map *m, int type, uint64_t base, uint64_t off, uint64_t n, int64_t vocab,
                       char *err, size_t errlen)
{
	if (n == 0)
		return 0; /* an empty file maps to NULL: do not even form a pointer from it */
	int es = tok_size[type];
	const uint8_t *p = m->p + off;
	for (uint64_t i = 0; i < n; i++, p += es) {
		int64_t t = read_tok(p, type);
		if (t < 0 || t >= vocab) {
			uint64_t pos = (off - base) / (uint64_t)es + i;
			if (t < 0)
				moert_seterr(err, errlen, "%s: token %lld at position %llu is negative (wrong dtype?)", m->path,
				        (long long)t, (unsigned long long)pos);
			else
				moert_seterr(err, errlen,
				        "%s: token %lld at position %llu is >= vocab_size %lld (was the data tokenized for another model?)",
				        m->path, (long long)t, (unsigned long long)pos, (long long)vocab);
			return -1;
		}
	}
	return 0;
}

/* Cut tokens [base, base + n*es) of file f into documents after each eod. */
static void split_docs(struct data *d, uint32_t f, const struct map *m, int type, uint64_t base, uint64_t n,
                       int64_t eod)
{
	int es = tok_size[type];
	uint64_t start = 0;
	if (eod >= 0)
		for (uint64_t i = 0; i < n; i++)
			if (read_tok(m->p + base + i * es, type) == eod) {
				add_doc(d, f, type, base + start * es, i + 1 - start);
				start = i + 1;
			}
	if (start < n)
		add_doc(d, f, type, base + start * es, n - start);
}

#define LLMC_MAGIC 20240520
#define LLMC_HEADER 1024

static int open_llmc(struct data *d, uint32_t f, const char *path, int64_t vocab, int64_t eod, char *err,
                     size_t errlen)
{
	struct map *m;
	if (map_file(d, path, &m, err, errlen))
		return -1;
	if (m->size < LLMC_HEADER) {
		moert_seterr(err, errlen, "%s: truncated: %llu bytes, the llm.c header alone is %d", path,
		        (unsigned long long)m->size, LLMC_HEADER);
		return -1;
	}
	int32_t h[3];
	memcpy(h, m->p, sizeof h);
	if (h[0] != LLMC_MAGIC) {
		moert_seterr(err, errlen, "%s: wrong magic %d, an llm.c shard starts with %d", path, h[0], LLMC_MAGIC);
		return -1;
	}
	if (h[1] != 1 && h[1] != 2) {
		moert_seterr(err, errlen, "%s: unsupported llm.c shard version %d (1 = uint16 tokens, 2 = uint32 tokens)", path,
		        h[1]);
		return -1;
	}
	int type = h[1] == 1 ? T_U16 : T_U32;
	if (h[2] < 0) {
		moert_seterr(err, errlen, "%s: negative token count %d in the header", path, h[2]);
		return -1;
	}
	uint64_t n = (uint64_t)h[2], want = LLMC_HEADER + n * (uint64_t)tok_size[type];
	if (m->size < want) {
		moert_seterr(err, errlen, "%s: truncated: the header declares %llu tokens (%llu bytes) but the file has %llu bytes",
		        path, (unsigned long long)n, (unsigned long long)want, (unsigned long long)m->size);
		return -1;
	}
	if (m->size > want) {
		moert_seterr(err, errlen, "%s: %llu bytes after the %llu tokens the header declares", path,
		        (unsigned long long)(m->size - want), (unsigned long long)n);
		return -1;
	}
	if (scan_tokens(m, type, LLMC_HEADER, LLMC_HEADER, n, vocab, err, errlen))
		return -1;
	split_docs(d, f, m, type, LLMC_HEADER, n, eod);
	return 0;
}

static int open_raw(struct data *d, uint32_t f, const char *path, int64_t vocab, int64_t eod, char *err,
                    size_t errlen)
{
	struct map *m;
	if (map_file(d, path, &m, err, errlen))
		return -1;
	if (m->size % 4) {
		moert_seterr(err, errlen, "%s: size %llu is not a multiple of 4 (raw uint32 tokens)", path,
		        (unsigned long long)m->size);
		return -1;
	}
	if (scan_tokens(m, T_U32, 0, 0, m->size / 4, vocab, err, errlen))
		return -1;
	split_docs(d, f, m, T_U32, 0, m->size / 4, eod);
	return 0;
}

/* PREFIX from PREFIX, PREFIX.idx or PREFIX.bin. */
static char *megatron_prefix(const char *path)
{
	size_t n = strlen(path);
	char *p = strdup(path);
	if (n > 4 && (!strcmp(path + n - 4, ".idx") || !strcmp(path + n - 4, ".bin")))
		p[n - 4] = 0;
	return p;
}

static const char mm_magic[9] = {'M', 'M', 'I', 'D', 'I', 'D', 'X', 0, 0};
#define MM_HEADER 34 /* magic 9 + version 8 + dtype 1 + sequence count 8 + document count 8 */

static int open_megatron(struct data *d, uint32_t f, const char *path, int64_t vocab, char *err, size_t errlen)
{
	char *prefix = megatron_prefix(path);
	size_t pl = strlen(prefix) + 5;
	char *ipath = malloc(pl), *bpath = malloc(pl);
	snprintf(ipath, pl, "%s.idx", prefix);
	snprintf(bpath, pl, "%s.bin", prefix);
	free(prefix);
	int rc = -1;
	struct map *im, *bm;
	if (map_file(d, ipath, &im, err, errlen))
		goto out;
	/* map_file may move d->maps: take the index back by position after the second map. */
	size_t ii = (size_t)(im - d->maps);
	if (map_file(d, bpath, &bm, err, errlen))
		goto out;
	im = &d->maps[ii];
	const uint8_t *p = im->p;
	if (im->size < MM_HEADER) {
		moert_seterr(err, errlen, "%s: truncated: %llu bytes, the Megatron index header alone is %d", ipath,
		        (unsigned long long)im->size, MM_HEADER);
		goto out;
	}
	if (memcmp(p, mm_magic, 9)) {
		moert_seterr(err, errlen, "%s: wrong magic, a Megatron index starts with \"MMIDIDX\\0\\0\"", ipath);
		goto out;
	}
	uint64_t version = rd64(p + 9);
	if (version != 1) {
		moert_seterr(err, errlen, "%s: unsupported Megatron index version %llu (only 1)", ipath,
		        (unsigned long long)version);
		goto out;
	}
	/* Megatron's DType codes; 6 and 7 are float64/float32, which cannot hold token ids. */
	static const int code_type[] = {-1, T_U8, T_I8, T_I16, T_I32, T_I64, -1, -1, T_U16};
	int code = p[17];
	if (code < 1 || code > 8 || code_type[code] < 0) {
		moert_seterr(err, errlen, "%s: dtype code %d is not an integer token type (1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 8 uint16)",
		        ipath, code);
		goto out;
	}
	int type = code_type[code], es = tok_size[type];
	uint64_t nseq = rd64(p + 18), ndoc = rd64(p + 26), avail = im->size - MM_HEADER;
	/* Bound each count by what the file could hold before multiplying, so nothing overflows. */
	if (nseq > avail / 12 || ndoc > (avail - nseq * 12) / 8) {
		moert_seterr(err, errlen, "%s: truncated: %llu sequences and %llu documents need more than the %llu bytes present",
		        ipath, (unsigned long long)nseq, (unsigned long long)ndoc, (unsigned long long)im->size);
		goto out;
	}
	uint64_t want = MM_HEADER + nseq * 12 + ndoc * 8;
	if (im->size != want) {
		moert_seterr(err, errlen, "%s: %llu bytes after the %llu sequences and %llu documents the header declares", ipath,
		        (unsigned long long)(im->size - want), (unsigned long long)nseq, (unsigned long long)ndoc);
		goto out;
	}
	const uint8_t *lens = p + MM_HEADER, *ptrs = lens + nseq * 4, *docidx = ptrs + nseq * 8;
	uint64_t prev = 0;
	for (uint64_t i = 0; i < ndoc; i++) {
		uint64_t v = rd64(docidx + i * 8);
		if (v > nseq || v < prev) {
			moert_seterr(err, errlen, "%s: document index %lld at %llu is out of order or past the %llu sequences", ipath,
			        (long long)v, (unsigned long long)i, (unsigned long long)nseq);
			goto out;
		}
		prev = v;
	}
	for (uint64_t i = 0; i < nseq; i++) {
		int32_t len;
		memcpy(&len, lens + i * 4, 4);
		uint64_t ptr = rd64(ptrs + i * 8);
		if (len < 0) {
			moert_seterr(err, errlen, "%s: sequence %llu has negative length %d", ipath, (unsigned long long)i, len);
			goto out;
		}
		uint64_t bytes = (uint64_t)len * (uint64_t)es;
		if (ptr > bm->size || bytes > bm->size - ptr) {
			moert_seterr(err, errlen, "%s: sequence %llu at byte %llu with %d tokens runs past the end of %s (%llu bytes)",
			        ipath, (unsigned long long)i, (unsigned long long)ptr, len, bpath,
			        (unsigned long long)bm->size);
			goto out;
		}
		if (scan_tokens(bm, type, 0, ptr, (uint64_t)len, vocab, err, errlen))
			goto out;
		if (len > 0)
			add_doc(d, (uint32_t)(bm - d->maps), type, ptr, (uint64_t)len);
	}
	(void)f;
	rc = 0;
out:
	free(ipath);
	free(bpath);
	return rc;
}

static int exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static enum data_format detect(const char *path)
{
	size_t n = strlen(path);
	if (n > 4 && !strcmp(path + n - 4, ".idx"))
		return DATA_MEGATRON;
	char *prefix = megatron_prefix(path);
	size_t pl = strlen(prefix) + 5;
	char *idx = malloc(pl);
	snprintf(idx, pl, "%s.idx", prefix);
	int has_idx = exists(idx), is_bin = n > 4 && !strcmp(path + n - 4, ".bin");
	free(prefix);
	free(idx);
	if (!exists(path))
		return has_idx ? DATA_MEGATRON : DATA_RAW; /* raw: open names the missing file */
	unsigned char head[9] = {0};
	FILE *fp = fopen(path, "rb");
	size_t got = fp ? fread(head, 1, sizeof head, fp) : 0;
	if (fp)
		fclose(fp);
	if (got >= 9 && !memcmp(head, mm_magic, 9))
		return DATA_MEGATRON;
	int32_t magic = 0;
	memcpy(&magic, head, 4);
	if (got >= 4 && magic == LLMC_MAGIC)
		return DATA_LLMC;
	if (is_bin && has_idx)
		return DATA_MEGATRON;
	return DATA_RAW;
}

struct data *data_open(const char *const *paths, int n, enum data_format format, int64_t vocab_size,
                       int64_t eod_token, char *err, size_t errlen)
{
	if (n < 1) {
		moert_seterr(err, errlen, "no data files given");
		return NULL;
	}
	if (vocab_size < 1 || vocab_size > INT32_MAX) {
		moert_seterr(err, errlen, "vocab_size %lld is outside [1, 2^31 - 1]", (long long)vocab_size);
		return NULL;
	}
	struct data *d = calloc(1, sizeof *d);
	d->formats = calloc((size_t)n, sizeof *d->formats);
	d->nfiles = n;
	for (int i = 0; i < n; i++) {
		enum data_format f = format == DATA_AUTO ? detect(paths[i]) : format;
		d->formats[i] = f;
		int rc;
		/* Documents name their token file by its index in d->maps, which open_* appends. */
		uint32_t fi = (uint32_t)d->nmaps;
		switch (f) {
		case DATA_MEGATRON: rc = open_megatron(d, fi, paths[i], vocab_size, err, errlen); break;
		case DATA_LLMC: rc = open_llmc(d, fi, paths[i], vocab_size, eod_token, err, errlen); break;
		case DATA_RAW: rc = open_raw(d, fi, paths[i], vocab_size, eod_token, err, errlen); break;
		default: moert_seterr(err, errlen, "unknown data format %d", (int)f); rc = -1;
		}
		if (rc) {
			data_close(d);
			return NULL;
		}
	}
	if (d->ntokens == 0) {
		moert_seterr(err, errlen, "%s%s: no tokens", paths[0], n > 1 ? " and the other files" : "");
		data_close(d);
		return NULL;
	}
	return d;
}

void data_close(struct data *d)
{
	if (!d)
		return;
	for (int i = 0; i < d->nmaps; i++) {
		if (d->maps[i].p)
			munmap((void *)d->maps[i].p, (size_t)d->maps[i].size);
		free(d->maps[i].path);
	}
	free(d->maps);
	free(d->formats);
	free(d->docs);
	free(d);
}

int64_t data_num_docs(const struct data *d) { return d->ndocs; }
int64_t data_num_tokens(const struct data *d) { return d->ntokens; }
int64_t data_doc_len(const struct data *d, int64_t doc) { return (int64_t)d->docs[doc].len; }
enum data_format data_file_format(const struct data *d, int file) { return d->formats[file]; }

void data_doc_read(const struct data *d, int64_t doc, int64_t off, int64_t n, int32_t *out)
{
	const struct doc *dc = &d->docs[doc];
	int es = tok_size[dc->type];
	const uint8_t *p = d->maps[dc->file].p + dc->off + (uint64_t)off * es;
	for (int64_t i = 0; i < n; i++)
		out[i] = (int32_t)read_tok(p + i * es, dc->type);
}

/* ---- batcher ---- */

struct data_batcher {
	const struct data *d;
	struct data_batcher_config c;
	uint64_t rows_per_epoch; /* used rows, a multiple of B * dp */
	struct data_cursor cur;
	uint64_t perm_epoch;     /* the epoch perm/start describe */
	int64_t *perm;           /* document order of perm_epoch */
	uint64_t *start;         /* stream offset of perm[i]; start[ndocs] = ntokens */
	int32_t *row;            /* scratch: S + 1 tokens */
	int64_t *rowdoc;         /* scratch: stream document index of each row token */
};

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static void build_epoch(struct data_batcher *b, uint64_t epoch)
{
	int64_t n = b->d->ndocs;
	for (int64_t i = 0; i < n; i++)
		b->perm[i] = i;
	if (b->c.shuffle) {
		uint64_t s = b->c.seed ^ (0xD1B54A32D192ED03ull * (epoch + 1));
		for (int64_t i = n - 1; i > 0; i--) {
			/* Uniform j in [0, i]: reject the top sliver that would bias a plain modulo. */
			uint64_t m = (uint64_t)i + 1, lim = UINT64_MAX - UINT64_MAX % m, r;
			do
				r = splitmix64(&s);
			while (r >= lim);
			int64_t j = (int64_t)(r % m), t = b->perm[i];
			b->perm[i] = b->perm[j];
			b->perm[j] = t;
		}
	}
	uint64_t acc = 0;
	for (int64_t i = 0; i < n; i++) {
		b->start[i] = acc;
		acc += b->d->docs[b->perm[i]].len;
	}
	b->start[n] = acc;
	b->perm_epoch = epoch;
}

struct data_batcher *data_batcher_new(const struct data *d, const struct data_batcher_config *c, char *err,
                                      size_t errlen)
{
	if (c->seq_len < 1 || c->micro_batch < 1 || c->dp_size < 1 || c->dp_rank < 0 || c->dp_rank >= c->dp_size) {
		moert_seterr(err, errlen, "bad batcher configuration: seq_len %d, micro_batch %d, dp rank %d of %d", c->seq_len,
		        c->micro_batch, c->dp_rank, c->dp_size);
		return NULL;
	}
	uint64_t S = (uint64_t)c->seq_len, T = (uint64_t)d->ntokens;
	uint64_t rows = T > S ? (T - 1) / S : 0, per_step = (uint64_t)c->micro_batch * (uint64_t)c->dp_size;
	rows -= rows % per_step;
	if (rows == 0) {
		moert_seterr(err, errlen,
		        "the data has %llu tokens, too few for one global batch of %llu rows of %d tokens (micro_batch %d x dp %d)",
		        (unsigned long long)T, (unsigned long long)per_step, c->seq_len, c->micro_batch, c->dp_size);
		return NULL;
	}
	struct data_batcher *b = calloc(1, sizeof *b);
	b->d = d;
	b->c = *c;
	b->rows_per_epoch = rows;
	b->perm = malloc((size_t)d->ndocs * sizeof *b->perm);
	b->start = malloc((size_t)(d->ndocs + 1) * sizeof *b->start);
	b->row = malloc((S + 1) * sizeof *b->row);
	b->rowdoc = malloc((S + 1) * sizeof *b->rowdoc);
	if (!b->perm || !b->start || !b->row || !b->rowdoc)
		abort();
	build_epoch(b, 0);
	return b;
}

void data_batcher_free(struct data_batcher *b)
{
	if (!b)
		return;
	free(b->perm);
	free(b->start);
	free(b->row);
	free(b->rowdoc);
	free(b);
}

/* Gather stream[k*S, k*S + S + 1) into b->row, with each token's stream document index. */
static void fetch_row(struct data_batcher *b, uint64_t k)
{
	uint64_t S = (uint64_t)b->c.seq_len, pos = k * S, end = pos + S + 1;
	/* Last document whose start <= pos. */
	int64_t lo = 0, hi = b->d->ndocs - 1;
	while (lo < hi) {
		int64_t mid = lo + (hi - lo + 1) / 2;
		if (b->start[mid] <= pos)
			lo = mid;
		else
			hi = mid - 1;
	}
	uint64_t filled = 0;
	for (int64_t i = lo; pos < end; i++) {
		uint64_t off = pos - b->start[i], len = b->d->docs[b->perm[i]].len;
		if (off >= len)
			continue; /* only empty documents can be skipped over here */
		uint64_t take = len - off < end - pos ? len - off : end - pos;
		data_doc_read(b->d, b->perm[i], (int64_t)off, (int64_t)take, b->row + filled);
		for (uint64_t t = 0; t < take; t++)
			b->rowdoc[filled + t] = i;
		filled += take;
		pos += take;
	}
}

struct data_cursor data_batcher_next(struct data_batcher *b, int32_t *input_ids, int32_t *labels, int32_t *positions,
                                     int32_t *doc_ids)
{
	uint64_t per_step = (uint64_t)b->c.micro_batch * (uint64_t)b->c.dp_size;
	if (b->cur.row + per_step > b->rows_per_epoch) {
		b->cur.epoch++;
		b->cur.row = 0;
	}
	if (b->perm_epoch != b->cur.epoch)
		build_epoch(b, b->cur.epoch);
	struct data_cursor at = b->cur;
	int S = b->c.seq_len;
	int32_t next_id = 0;
	for (int r = 0; r < b->c.micro_batch; r++) {
		uint64_t k = b->cur.row + (uint64_t)b->c.dp_rank + (uint64_t)r * (uint64_t)b->c.dp_size;
		fetch_row(b, k);
		int32_t *in = input_ids + (size_t)r * S, *lb = labels + (size_t)r * S, *ps = positions + (size_t)r * S,
		        *di = doc_ids + (size_t)r * S;
		int32_t p = 0;
		for (int j = 0; j < S; j++) {
			if (j > 0 && b->rowdoc[j] != b->rowdoc[j - 1]) {
				p = 0;
				next_id++;
			}
			in[j] = b->row[j];
			lb[j] = b->rowdoc[j + 1] == b->rowdoc[j] ? b->row[j + 1] : -100;
			ps[j] = p++;
			di[j] = next_id;
		}
		next_id++;
	}
	b->cur.row += per_step;
	return at;
}

struct data_cursor data_batcher_cursor(const struct data_batcher *b) { return b->cur; }

uint64_t data_batcher_rows_per_epoch(const struct data_batcher *b) { return b->rows_per_epoch; }

int data_batcher_seek(struct data_batcher *b, struct data_cursor c, char *err, size_t errlen)
{
	uint64_t per_step = (uint64_t)b->c.micro_batch * (uint64_t)b->c.dp_size;
	/* A cursor off the step grid or past the epoch came from other data or another batch
	 * shape; continuing from it would silently repeat or skip data. */
	if (c.row > b->rows_per_epoch || c.row % per_step) {
		moert_seterr(err, errlen,
		        "data cursor row %llu does not fit this data (%llu rows per epoch, %llu rows per step): was it saved with other data or batch sizes?",
		        (unsigned long long)c.row, (unsigned long long)b->rows_per_epoch, (unsigned long long)per_step);
		return -1;
	}
	b->cur = c;
	return 0;
}
