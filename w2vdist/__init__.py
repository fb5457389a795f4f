"""w2vdist: word2vec (skip-gram with negative sampling) trained on many GPUs or CPUs."""

__version__ = "0.1.0"
