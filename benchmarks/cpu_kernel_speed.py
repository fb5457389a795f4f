"""Training speed (and quality) of the compiled CPU kernel against gensim, same corpus and settings.

    python benchmarks/cpu_kernel_speed.py CORPUS --analogies questions-words.txt \
        --similarity wordsim353.tsv [--epochs 1] [--threads 2]

Both train skip-gram with negative sampling (dim 100, window 5, negative 5, sample 1e-4,
min_count 5, alpha 0.025 decaying linearly to 0.025e-4) on whitespace-split lines, with the
same number of threads and gensim's initial vectors (uniform in +-1/dim); the kernel draws its
negatives once per centre word (`--share-negatives centre`, w2vdist's default) or per pair, as
gensim does (`pair`). gensim reads the corpus in its fastest mode (`corpus_file`: each thread
takes a contiguous part of the file) or, with `--gensim-input iterable`, in file order as the
kernel does.
words/s = in-vocabulary corpus words (before subsampling) x epochs / wall-clock seconds of
training alone: vocabulary building and loading are not timed. The kernel gets blocks of
about 65,536 words (`--block`) cut at line ends (lines over 10,000 words split), as
`w2vdist prepare` writes them, in file order or (`--interleave K`) round-robin from K parts
of the file. Analogies are scored on the 30,000 most frequent words, as gensim does. The
machine's load average is printed: figures from a busy machine are not comparable.

Quality at 1 epoch depends on the learning-rate schedule: in `corpus_file` mode each gensim
thread decays alpha by its own progress over the whole corpus, so with 2 threads alpha ends
the epoch near alpha/2 instead of min_alpha (more learning in a short run). Compare quality
with `--gensim-input iterable`, or over several epochs.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections import Counter

import numpy as np
import torch
from gensim.models import KeyedVectors, Word2Vec
from gensim.models.word2vec import LineSentence

import sgns_settings  # beside this script
from w2vdist.training.backends import cpu
from w2vdist.training.sampling import alias_table, keep_probabilities

MAX_SENTENCE = 10_000  # gensim's (and `w2vdist prepare`'s) longest sentence


def read_corpus(path: str, min_count: int) -> tuple[list[str], np.ndarray, list[np.ndarray]]:
    """Vocabulary (most frequent first), counts, and each line as in-vocabulary token ids."""
    with open(path, encoding="utf-8") as f:
        lines = [line.split() for line in f]
    counter = Counter(w for line in lines for w in line)
    words = [w for w, c in counter.most_common() if c >= min_count]
    index = {w: i for i, w in enumerate(words)}
    ids = [np.array([index[w] for w in line if w in index], dtype=np.int32) for line in lines]
    return words, np.array([counter[w] for w in words], dtype=np.int64), ids


def blocks(lines: list[np.ndarray], block: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(tokens, lengths) blocks of about `block` words, sentences split at MAX_SENTENCE words."""
    pieces = [ln[i : i + MAX_SENTENCE] for ln in lines for i in range(0, len(ln), MAX_SENTENCE)]
    out, batch, size = [], [], 0
    for piece in pieces:
        batch.append(piece)
        size += len(piece)
        if size >= block:
            out.append(batch)
            batch, size = [], 0
    out.append(batch)
    return [
        (torch.from_numpy(np.concatenate(b)), torch.tensor([len(p) for p in b], dtype=torch.int32))
        for b in out
        if b
    ]


def interleave(items: list, parts: int) -> list:
    """Round-robin over `parts` contiguous parts of `items` (gensim's corpus_file threads each
    read their own part of the file at the same time)."""
    size = -(-len(items) // parts)
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    return [c[i] for i in range(size) for c in chunks if i < len(c)]


def train_kernel(words, counts, lines, args) -> tuple[float, KeyedVectors]:
    rng = np.random.default_rng(args.seed)
    vocab, dim = len(words), args.dim
    w_in = torch.from_numpy(((2 * rng.random((vocab, dim)) - 1) / dim).astype(np.float32))
    w_out = torch.zeros(vocab, dim)
    keep = keep_probabilities(torch.from_numpy(counts), args.sample)
    table = alias_table(counts)
    data = interleave(blocks(lines, args.block), args.interleave)
    total = int(sum(len(t) for t, _ in data)) * args.epochs
    alpha, floor = args.alpha, args.alpha * 1e-4
    done, loss, pairs = 0, 0.0, 0
    cpu.train_block(*data[0], w_in.clone(), w_out.clone(), keep, table, 5, 5, 0, 0, 0, 1)  # build
    start = time.perf_counter()
    for epoch in range(args.epochs):
        for i, (tokens, lengths) in enumerate(data):
            a0 = max(floor, alpha * (1 - done / total))
            done += len(tokens)
            a1 = max(floor, alpha * (1 - done / total))
            block_loss, block_pairs, _ = cpu.train_block(
                tokens, lengths, w_in, w_out, keep, table, args.window, args.negative,
                a0, a1, seed=(args.seed << 32) + epoch * len(data) + i, threads=args.threads,
                share_negatives=args.share_negatives == "centre",
            )  # fmt: skip
            loss, pairs = loss + block_loss, pairs + block_pairs
    seconds = time.perf_counter() - start
    print(f"kernel: {pairs} pairs, mean loss {loss / pairs:.4f}")
    kv = KeyedVectors(dim)
    kv.add_vectors(words, w_in.numpy())
    return total / seconds, kv


def train_gensim(total_words: int, args) -> tuple[float, KeyedVectors]:
    model = Word2Vec(
        sg=1, vector_size=args.dim, window=args.window, negative=args.negative,
        sample=args.sample, min_count=args.min_count, alpha=args.alpha,
        min_alpha=args.alpha * 1e-4, workers=args.threads, seed=args.seed,
    )  # fmt: skip
    if args.gensim_input == "corpus_file":
        corpus = dict(corpus_file=args.corpus)
    else:
        corpus = dict(corpus_iterable=LineSentence(args.corpus, max_sentence_length=MAX_SENTENCE))
    model.build_vocab(**corpus)
    start = time.perf_counter()
    model.train(
        **corpus, total_examples=model.corpus_count, total_words=model.corpus_total_words,
        epochs=args.epochs,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    return total_words * args.epochs / seconds, model.wv


def scores(kv: KeyedVectors, args) -> str:
    out = []
    if args.analogies:
        acc, _ = kv.evaluate_word_analogies(args.analogies, restrict_vocab=30_000)
        out.append(f"analogy {100 * acc:.2f}%")
    if args.similarity:
        pearson, spearman, oov = kv.evaluate_word_pairs(args.similarity)
        out.append(f"wordsim spearman {spearman.statistic:.4f} (oov {oov:.1f}%)")
    return ", ".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sgns_settings.add_arguments(p, epochs=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--gensim-input", choices=("corpus_file", "iterable"), default="corpus_file")
    p.add_argument("--block", type=int, default=65_536, help="words per train_block call")
    p.add_argument("--interleave", type=int, default=1, metavar="K",
                   help="feed the kernel blocks round-robin from K parts of the corpus")
    p.add_argument("--seed", type=int, default=1, help="for both: initial vectors and draws")
    p.add_argument("--share-negatives", choices=("centre", "pair"), default="centre",
                   help="the kernel's negatives: per centre word (w2vdist's default) or per "
                   "pair (word2vec.c, gensim)")
    p.add_argument("--skip-gensim", action="store_true")
    args = p.parse_args()
    logging.getLogger("gensim").setLevel(logging.WARNING)

    words, counts, lines = read_corpus(args.corpus, args.min_count)
    total_words = int(counts.sum())
    print(f"corpus: {total_words} in-vocabulary words, vocabulary {len(words)}, "
          f"{args.epochs} epoch(s), threads {args.threads}, load average {os.getloadavg()}")  # fmt: skip
    ours, ours_kv = train_kernel(words, counts, lines, args)
    print(f"kernel: {ours:,.0f} words/s; {scores(ours_kv, args)}")
    if not args.skip_gensim:
        theirs, theirs_kv = train_gensim(total_words, args)
        print(f"gensim: {theirs:,.0f} words/s; {scores(theirs_kv, args)}")
        print(f"ratio kernel/gensim: {ours / theirs:.2f}; load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
