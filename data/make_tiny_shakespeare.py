#!/usr/bin/env python3
"""Tokenize Tiny Shakespeare into llm.c shards for examples/tiny_qwen3_moe.yaml.

    python3 data/make_tiny_shakespeare.py           # write the tokenizer and both shards
    python3 data/make_tiny_shakespeare.py --check   # decode the shards, compare with the text

Tokenizer: byte-level BPE with 512 ids. Ids 0..255 are the bytes, 256..510 are 255 merges
learned greedily on the whole text (the most frequent adjacent pair; ties go to the smaller
pair of ids), 511 is the end-of-document token <|endoftext|>. Pairs are counted inside
"words" (PATTERN below), so a merge never crosses a word boundary.

Documents: the text is cut at blank lines ("\\n\\n") into speeches. Each document keeps its
last newline and drops the blank line, which its end-of-document token stands for, so the
text is "\\n".join(documents). The first 90% of the documents (in order) are the train shard,
the rest the val shard.

Shards (llm.c format, what runtime/data.c reads): 256 little-endian int32 (20240520, 1 =
uint16 tokens, token count, then zeros), then the uint16 tokens.

Python 3 standard library only; the output is the same on every run.
"""
import argparse
import collections
import hashlib
import json
import math
import os
import re
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TEXT = os.path.join(HERE, "tiny_shakespeare.txt")
TEXT_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TOKENIZER = os.path.join(HERE, "tiny_shakespeare_tokenizer.json")
TRAIN = os.path.join(HERE, "tiny_shakespeare_train.bin")
VAL = os.path.join(HERE, "tiny_shakespeare_val.bin")

VOCAB_SIZE = 512
NUM_MERGES = VOCAB_SIZE - 256 - 1  # 255
EOD = VOCAB_SIZE - 1  # 511
EOD_TEXT = "<|endoftext|>"
PATTERN = rb" ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+"
WORD_RE = re.compile(PATTERN)

LLMC_MAGIC = 20240520
LLMC_HEADER_INTS = 256


def read_text():
    with open(TEXT, "rb") as f:
        text = f.read()
    digest = hashlib.sha256(text).hexdigest()
    if digest != TEXT_SHA256:
        sys.exit(f"{TEXT}: SHA-256 {digest}, expected {TEXT_SHA256}")
    return text


def split_documents(text):
    pieces = text.split(b"\n\n")
    if not text.endswith(b"\n") or any(not p for p in pieces):
        sys.exit(f"{TEXT}: expected text ending in a newline with no empty paragraphs")
    return [p + b"\n" for p in pieces[:-1]] + [pieces[-1]]


def words(doc):
    ws = WORD_RE.findall(doc)
    assert b"".join(ws) == doc, "PATTERN must cover every byte"
    return ws


def train_bpe(docs):
    """255 merges, as a list of (left id, right id); merge i makes id 256 + i."""
    freq = collections.Counter()
    for d in docs:
        freq.update(words(d))
    # Sorted so that everything below is independent of hash order.
    uniq = sorted(freq)
    seqs = [list(w) for w in uniq]
    counts = [freq[w] for w in uniq]

    pair_count = collections.defaultdict(int)
    where = collections.defaultdict(set)  # pair -> words that may contain it
    for wi, s in enumerate(seqs):
        for p in zip(s, s[1:]):
            pair_count[p] += counts[wi]
            where[p].add(wi)

    merges = []
    for i in range(NUM_MERGES):
        if not pair_count:
            sys.exit(f"only {i} merges possible")
        # Most frequent; on a tie the smaller (left, right).
        best = min(pair_count, key=lambda p: (-pair_count[p], p))
        new = 256 + i
        merges.append(best)
        for wi in sorted(where.pop(best)):
            s = seqs[wi]
            c = counts[wi]
            old_pairs = list(zip(s, s[1:]))
            if best not in old_pairs:
                continue  # stale entry: an earlier merge consumed the pair
            for p in old_pairs:
                pair_count[p] -= c
                if pair_count[p] == 0:
                    del pair_count[p]
            s = merge_seq(s, best, new)
            seqs[wi] = s
            for p in zip(s, s[1:]):
                pair_count[p] += c
                where[p].add(wi)
    return merges


def merge_seq(s, pair, new):
    """Replace each occurrence of pair in s, left to right, by new."""
    out = []
    i = 0
    n = len(s)
    a, b = pair
    while i < n:
        if i + 1 < n and s[i] == a and s[i + 1] == b:
            out.append(new)
            i += 2
        else:
            out.append(s[i])
            i += 1
    return out


class Tokenizer:
    def __init__(self, merges):
        self.merges = [tuple(m) for m in merges]
        self.rank = {m: i for i, m in enumerate(self.merges)}
        self.pieces = [bytes([i]) for i in range(256)]
        for a, b in self.merges:
            self.pieces.append(self.pieces[a] + self.pieces[b])
        self.cache = {}

    def encode_word(self, w):
        ids = self.cache.get(w)
        if ids is None:
            # Merging the lowest-ranked pair present, again and again, is the same as applying
            # every merge in training order: a merge's result never takes part in an earlier one.
            ids = list(w)
            while len(ids) > 1:
                r = min((self.rank.get(p, NUM_MERGES) for p in zip(ids, ids[1:])))
                if r == NUM_MERGES:
                    break
                ids = merge_seq(ids, self.merges[r], 256 + r)
            self.cache[w] = ids
        return ids

    def encode_doc(self, doc):
        out = []
        for w in words(doc):
            out.extend(self.encode_word(w))
        out.append(EOD)
        return out

    def decode_docs(self, tokens):
        """Token stream -> list of document bytes; every document must end with EOD."""
        docs, cur = [], []
        for t in tokens:
            if t == EOD:
                docs.append(b"".join(cur))
                cur = []
            else:
                cur.append(self.pieces[t])
        if cur:
            sys.exit("token stream does not end with the end-of-document token")
        return docs


def write_tokenizer(merges):
    lines = [
        "{",
        '  "type": "byte-level BPE",',
        f'  "vocab_size": {VOCAB_SIZE},',
        f'  "pattern": {json.dumps(PATTERN.decode())},',
        '  "bytes": "ids 0..255 are the bytes 0..255; merges[i] = [left, right] makes id 256 + i",',
        f'  "special_tokens": {{{json.dumps(EOD_TEXT)}: {EOD}}},',
        '  "merges": [',
    ]
    lines += [f"    [{a}, {b}]" + ("," if i + 1 < len(merges) else "") for i, (a, b) in enumerate(merges)]
    lines += ["  ]", "}", ""]
    with open(TOKENIZER, "w") as f:
        f.write("\n".join(lines))


def read_tokenizer():
    with open(TOKENIZER) as f:
        j = json.load(f)
    if j["vocab_size"] != VOCAB_SIZE or j["special_tokens"] != {EOD_TEXT: EOD} or len(j["merges"]) != NUM_MERGES:
        sys.exit(f"{TOKENIZER}: not the tokenizer this script makes")
    return Tokenizer(j["merges"])


def write_shard(path, tokens):
    header = [0] * LLMC_HEADER_INTS
    header[0], header[1], header[2] = LLMC_MAGIC, 1, len(tokens)
    with open(path, "wb") as f:
        f.write(struct.pack(f"<{LLMC_HEADER_INTS}i", *header))
        f.write(struct.pack(f"<{len(tokens)}H", *tokens))


def read_shard(path):
    with open(path, "rb") as f:
        raw = f.read()
    h = struct.unpack_from(f"<{LLMC_HEADER_INTS}i", raw)
    n = h[2]
    if h[0] != LLMC_MAGIC or h[1] != 1 or len(raw) != 4 * LLMC_HEADER_INTS + 2 * n:
        sys.exit(f"{path}: not an llm.c uint16 shard of the expected size")
    return list(struct.unpack_from(f"<{n}H", raw, 4 * LLMC_HEADER_INTS))


def unigram_entropy(tokens):
    n = len(tokens)
    return -sum(c / n * math.log(c / n) for c in collections.Counter(tokens).values())


def report(train, val):
    print(f"train: {len(train)} tokens, {train.count(EOD)} documents")
    print(f"val:   {len(val)} tokens, {val.count(EOD)} documents")
    print(f"unigram entropy of the train shard: {unigram_entropy(train):.4f} nats")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="decode the shards and compare with the text")
    args = ap.parse_args()

    text = read_text()
    if args.check:
        tok = read_tokenizer()
        train, val = read_shard(TRAIN), read_shard(VAL)
        if b"\n".join(tok.decode_docs(train + val)) != text:
            sys.exit("round trip FAILED: the decoded shards differ from the text")
        report(train, val)
        print("round trip ok: decoding train + val reproduces tiny_shakespeare.txt exactly")
        return

    docs = split_documents(text)
    t0 = time.perf_counter()
    merges = train_bpe(docs)
    print(f"{len(merges)} merges in {time.perf_counter() - t0:.2f} s")
    tok = Tokenizer(merges)
    n_train = len(docs) * 9 // 10
    train = [t for d in docs[:n_train] for t in tok.encode_doc(d)]
    val = [t for d in docs[n_train:] for t in tok.encode_doc(d)]
    write_tokenizer(merges)
    write_shard(TRAIN, train)
    write_shard(VAL, val)
    report(train, val)
    print(f"bytes per token: {len(text) / (len(train) + len(val) - len(docs)):.3f} (end-of-document tokens excluded)")


if __name__ == "__main__":
    main()
