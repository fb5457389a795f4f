"""Backend choice, and the triton step run end to end through Triton's CPU interpreter."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from w2vdist.config import Config, OptimConfig, SyncConfig, TrainConfig
from w2vdist.errors import UsageError
from w2vdist.settings import from_dict
from w2vdist.training.backends import SYNC_STEP_WORDS, batch_warning, batch_words, choose

CPU = torch.device("cpu")


def cfg(**sections) -> Config:
    return from_dict(Config, sections)


def test_auto_picks_the_cpu_kernel_where_in_place_updates_are_allowed():
    from w2vdist.training.backends import cpu

    expected = "cpu-kernel" if cpu.available() else "torch"
    assert choose(cfg(), CPU, 1) == expected
    assert choose(cfg(sync={"strategy": "local"}), CPU, 2) == expected
    assert choose(cfg(sync={"strategy": "exact"}), CPU, 2) == "torch"


def test_in_place_backends_refuse_exact_sync_across_ranks():
    with pytest.raises(UsageError, match="cannot share exact gradients"):
        choose(cfg(train={"backend": "cpu-kernel"}), CPU, 2)


def test_triton_needs_cuda():
    with pytest.raises(UsageError, match="triton needs a CUDA device"):
        choose(cfg(train={"backend": "triton"}), CPU, 1)


_INTERPRETED_STEP = """
import torch
from w2vdist.config import Config
from w2vdist.settings import from_dict
from w2vdist.training.sgns import Embeddings
from w2vdist.training.backends import build
from w2vdist.training.sync import OneProcess
counts = torch.tensor([50, 30, 20, 10, 8, 6, 5, 4, 3, 2])
tokens = torch.randint(0, 10, (200,), generator=torch.Generator().manual_seed(0)).int()
sentence = torch.arange(200, dtype=torch.int32) // 20
for shared in (True, False):
    cfg = from_dict(Config, {"model": {"dim": 8, "sample": 0, "shared_negatives": shared},
                             "optim": {"damping": 0}})
    out = []
    for backend in ("triton", "torch"):
        tables = Embeddings(10, 8, torch.Generator().manual_seed(1))
        tables.output.data.normal_(0, 0.1, generator=torch.Generator().manual_seed(2))
        before = tables.input.data.clone(), tables.output.data.clone()
        cfg.train.backend = backend
        step = build(cfg, tables, counts.numpy(), OneProcess(1, tables.input.device),
                     torch.Generator().manual_seed(3))
        loss, pairs = step(tokens, sentence, 1e-6, 1e-6)
        out.append((loss, pairs, tables.input.data - before[0], tables.output.data - before[1]))
    (l1, p1, i1, o1), (l2, p2, i2, o2) = out
    assert p1 == p2 and abs(l1 - l2) < 1e-5 * l2, (p1, p2, l1, l2)
    assert o2.abs().max() > 0
    # Hogwild order effects are second order in lr: at a tiny lr the updates agree (up to
    # float32 rounding of tables near 0.1, about 1e-8).
    torch.testing.assert_close(i1, i2, rtol=1e-2, atol=1e-7)
    torch.testing.assert_close(o1, o2, rtol=1e-2, atol=1e-7)
print("ok")
"""


def test_triton_step_matches_the_torch_step_under_the_interpreter():
    pytest.importorskip("triton", reason="triton is not installed")
    env = dict(os.environ, TRITON_INTERPRET="1")
    result = subprocess.run(
        [sys.executable, "-c", _INTERPRETED_STEP], env=env, capture_output=True, text=True,
        timeout=300, cwd=Path(__file__).parent.parent,
    )
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]


def test_batch_synchronous_steps_default_to_a_safe_size_and_warn_beyond_it():
    """`exact` multiplies the step by the rank count: its default keeps the global step at the
    largest measured safe size, and a larger step asked for is warned about."""
    exact = Config(sync=SyncConfig(strategy="exact"), train=TrainConfig(backend="torch"))
    sizes = [batch_words(exact, w) for w in (1, 2, 4, 16, 128)]
    assert sizes == [4096, 4096, 4096, SYNC_STEP_WORDS // 16, 256]
    at_16 = dataclasses.replace(exact, optim=OptimConfig(batch_words=batch_words(exact, 16)))
    assert batch_warning(at_16, 16) is None
    big = dataclasses.replace(exact, optim=OptimConfig(batch_words=SYNC_STEP_WORDS))
    assert batch_warning(big, 1) is None
    assert "65,536 words" in batch_warning(big, 4)
    kernel = dataclasses.replace(big, train=TrainConfig(backend="cpu-kernel"))
    assert batch_warning(kernel, 4) is None
    local = dataclasses.replace(big, sync=SyncConfig(strategy="local"))
    assert batch_warning(local, 4) is None  # each rank steps alone
