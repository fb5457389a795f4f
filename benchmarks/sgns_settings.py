"""The corpus, evaluation files and word2vec settings both gensim comparisons take, with the
reference run's values (dim 100, window 5, negative 5, sample 1e-4, min_count 5) as defaults."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser, epochs: int) -> None:
    parser.add_argument(
        "corpus", metavar="CORPUS", help="text file, one sentence or paragraph a line"
    )
    parser.add_argument("--analogies", metavar="FILE", help="questions-words file")
    parser.add_argument("--similarity", metavar="FILE", help="word pairs with scores (WordSim353)")
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--negative", type=int, default=5)
    parser.add_argument("--sample", type=float, default=1e-4)
    parser.add_argument("--min-count", type=int, default=5)
    parser.add_argument("--alpha", type=float, default=0.025)
