"""Compiled training kernels behind the `train.backend` choices (`cpu` for `cpu-kernel`)."""
