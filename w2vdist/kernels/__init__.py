"""Compiled training kernels behind `train.backend`: `cpu` (cpu-kernel), `triton_sgns` (triton)."""
