"""Backend choice and step sizes."""

import dataclasses

import pytest
import torch

from w2vdist.errors import UsageError
from w2vdist.settings import from_dict
from w2vdist.training.backends import (
    GRAPH_STEP_WORDS, SYNC_STEP_WORDS, alpha, batch_warning, batch_words, choose, cuda_graph,
    damping, edge_warning, global_step_words, negatives_warning,
)
from w2vdist.training.config import Config, OptimConfig, SyncConfig, TrainConfig

CPU = torch.device("cpu")


def cfg(**sections) -> Config:
    return from_dict(Config, sections)


def test_auto_picks_the_cpu_kernel_where_in_place_updates_are_allowed():
    from w2vdist.training.backends import cpu

    expected = "cpu-kernel" if cpu.available() else "torch"
    assert choose(cfg(), CPU, 1) == expected
    assert choose(cfg(sync={"strategy": "local"}), CPU, 2) == expected
    assert choose(cfg(sync={"strategy": "exact"}), CPU, 2) == "torch"


def test_auto_on_cuda_without_the_triton_kernel_says_so(w2vdist_log, monkeypatch):
    """A GPU run whose Triton kernel is unavailable (here: said to be, so that the test means
    the same on a GPU machine) falls back to the torch step and must say why, as the CPU
    fallback does; `exact` chooses torch by design."""
    from w2vdist.training.backends import triton

    monkeypatch.setattr(triton, "available", lambda: (False, "triton is not installed"))
    cuda = torch.device("cuda")
    assert not triton.available()[0]
    assert choose(cfg(), cuda, 1) == "torch"
    assert "the Triton kernel is unavailable (triton is not installed)" in w2vdist_log.text
    w2vdist_log.clear()
    assert choose(cfg(sync={"strategy": "exact"}), cuda, 2) == "torch"
    assert "Triton" not in w2vdist_log.text


def test_triton_refuses_tiles_past_what_it_compiles_for(w2vdist_log, monkeypatch):
    """A band past 512 rows or a tile past 32,768 scores (band rows x targets) fits no GPU,
    and item2vec's whole-sentence window (2^31 - 1) would ask Triton for a band of 2^32 rows:
    refused as the run resolves, and `auto` trains such a window with the torch step, saying
    why, as it trains word2vec.c's negatives per pair, which the kernel does not draw. (The
    kernel is said to be available, so that the test means the same on a GPU machine.)"""
    from w2vdist.training.backends import triton

    monkeypatch.setattr(triton, "available", lambda: (True, ""))
    cuda = torch.device("cuda")

    def pick(backend: str, window: int, negative: int = 5, share: str = "centre") -> str:
        return choose(cfg(train={"backend": backend}, model={
            "window": window, "negative": negative, "share_negatives": share}), cuda, 1)

    assert pick("triton", 120) == "triton"  # 4 centres a program: a band of 256 rows x 32
    assert pick("triton", 250) == "triton"  # 2 centres: 512 x 16
    assert pick("triton", 248, share="chunk") == "triton"  # 512 x 32
    assert pick("triton", 5, 40) == "triton"  # 2 centres a program: 16 x 128
    assert pick("triton", 5, 200) == "triton"  # 1 centre: 16 x 256
    assert pick("triton", 120, 100, "chunk") == "triton"  # 256 x 128
    for window, negative, share, tile in ((256, 5, "centre", "1,024 band rows x 16 targets"),
                                          (64, 200, "centre", "256 band rows x 256 targets"),
                                          (249, 5, "chunk", "1,024 band rows x 32 targets")):
        with pytest.raises(UsageError, match=f"tile {tile}, past the 512 rows and 32,768 "
                                             "scores it compiles for: use a smaller window"):
            pick("triton", window, negative, share)
    assert pick("auto", 8) == "triton" and "torch backend" not in w2vdist_log.text
    assert pick("auto", 2**31 - 1) == "torch"
    assert ("model.window 2147483647 and model.negative 5 (share_negatives centre) make the "
            "Triton kernel's tile 4,294,967,296 band rows x 16 targets") in w2vdist_log.text
    assert "training with the torch backend" in w2vdist_log.text
    with pytest.raises(UsageError, match="train.backend torch with model.share_negatives centre"):
        pick("auto", 2**31 - 1, share="chunk")  # the torch step shares no chunk's negatives
    w2vdist_log.clear()
    assert pick("auto", 5, share="pair") == "torch"  # word2vec.c's draws: torch's, not triton's
    assert ("model.share_negatives pair: the Triton kernel draws a centre's or a chunk's "
            "negatives: training with the torch backend") in w2vdist_log.text


def test_in_place_backends_refuse_exact_sync_across_ranks():
    with pytest.raises(UsageError, match="cannot share exact gradients"):
        choose(cfg(train={"backend": "cpu-kernel"}), CPU, 2)


def test_triton_needs_cuda():
    with pytest.raises(UsageError, match="triton needs a CUDA device"):
        choose(cfg(train={"backend": "triton"}), CPU, 1)


def test_batch_synchronous_steps_default_to_a_safe_size_and_warn_beyond_it():
    """`exact` multiplies the step by the rank count: its default keeps the global step at the
    largest measured safe size, and a larger step asked for is warned about."""
    exact = Config(sync=SyncConfig(strategy="exact"), train=TrainConfig(backend="torch"))
    sizes = [batch_words(exact, w, 10**12) for w in (1, 2, 4, 16, 32, 512)]
    assert sizes == [4096, 4096, 4096, 4096, SYNC_STEP_WORDS // 32, 256]
    at_32 = dataclasses.replace(exact, optim=OptimConfig(batch_words=batch_words(exact, 32, 10**12)))
    assert batch_warning(at_32, global_step_words(at_32, 32)) is None
    big = dataclasses.replace(exact, optim=OptimConfig(batch_words=SYNC_STEP_WORDS))
    assert batch_warning(big, global_step_words(big, 1)) is None
    assert "262,144 words" in batch_warning(big, global_step_words(big, 4))
    kernel = dataclasses.replace(big, train=TrainConfig(backend="cpu-kernel"))
    assert batch_warning(kernel, global_step_words(kernel, 4)) is None
    local = dataclasses.replace(big, sync=SyncConfig(strategy="local"))
    assert global_step_words(local, 4) == SYNC_STEP_WORDS  # each rank steps alone
    assert batch_warning(local, global_step_words(local, 4)) is None


def test_the_learning_rate_defaults_per_backend_and_one_asked_for_wins():
    """The torch step's damping slows its crowded rows, the more the larger its global step,
    so it starts higher, and higher still for larger steps; both start higher the harder
    frequent words are subsampled (BENCHMARKS.md)."""

    def torch_alpha(words: int, world_size: int = 1, strategy: str = "exact") -> float:
        return alpha(cfg(train={"backend": "torch"}, optim={"batch_words": words},
                         sync={"strategy": strategy}), world_size)

    assert [torch_alpha(w) for w in (500, 4096, 16384, 65536)] == [0.06, 0.06, 0.065, 0.07]
    assert torch_alpha(4096, 16) == 0.07  # exact: one update from 16 ranks' words
    assert torch_alpha(4096, 16, "local") == 0.06  # local: each rank steps alone
    assert torch_alpha(1 << 20) == 0.07  # beyond the safe step (train warns): not raised further

    def pair_alpha(sample: float, backend: str = "cpu-kernel") -> float:
        return alpha(cfg(train={"backend": backend}, model={"sample": sample}), 1)

    samples = (0, 1e-3, 1e-4, 5e-5, 3e-5, 1e-5, 1e-6)
    assert [pair_alpha(s) for s in samples] == [0.05, 0.05, 0.05, 0.055757, 0.06, 0.06, 0.06]
    assert [pair_alpha(s, "triton") for s in samples] == [pair_alpha(s) for s in samples]
    assert alpha(cfg(train={"backend": "cpu-kernel"}), 16) == 0.05  # the model's default sample

    def gpu_alpha(world_size: int, sample: float = 1e-4) -> float:
        return alpha(cfg(train={"backend": "triton"}, sync={"strategy": "local"},
                         model={"sample": sample}), world_size)

    # Several GPUs' ranks saturate frequent rows between merges: their rate rises with them.
    assert [gpu_alpha(n) for n in (1, 2, 4, 8, 16, 32, 64)] == \
        [0.05, 0.06, 0.07, 0.08, 0.09, 0.1, 0.1]
    assert gpu_alpha(8, 1e-5) == 0.09  # and with subsampling, as one GPU's
    assert alpha(cfg(train={"backend": "cpu-kernel"}, sync={"strategy": "local"}), 8) == 0.05

    def subsampled_torch_alpha(words: int, sample: float) -> float:
        return alpha(cfg(train={"backend": "torch"}, model={"sample": sample},
                         optim={"batch_words": words}), 1)

    assert [subsampled_torch_alpha(w, 1e-5) for w in (4096, 65536)] == [0.08, 0.09]
    assert subsampled_torch_alpha(4096, 0) == subsampled_torch_alpha(4096, 1e-3) == 0.06
    assert subsampled_torch_alpha(16384, 5e-5) == 0.076514
    assert alpha(cfg(train={"backend": "torch"}, optim={"alpha": 0.025}), 16) == 0.025
    with pytest.raises(UsageError, match="optim.alpha must be finite, >= 0"):
        cfg(optim={"alpha": -0.01})


def test_damping_defaults_per_crowd_and_one_asked_for_wins():
    """Chunk mode's three programs an SM make a crowd three times centre mode's, which diverged
    at 0.1 in the emulation (BENCHMARKS.md): its default is 0.3; every other step's is 0.1."""
    chunk = {"share_negatives": "chunk"}
    assert damping(cfg(train={"backend": "triton"}, model=chunk)) == 0.3
    assert damping(cfg(train={"backend": "triton"})) == 0.1
    assert damping(cfg(train={"backend": "torch"})) == 0.1
    assert damping(cfg(train={"backend": "triton"}, model=chunk, optim={"damping": 0})) == 0
    assert damping(cfg(train={"backend": "torch"}, optim={"damping": 0.5})) == 0.5
    with pytest.raises(UsageError, match="optim.damping must be finite, >= 0"):
        cfg(optim={"damping": -0.5})


def test_negative_sharing_is_checked_against_the_backend():
    for backend in ("torch", "cpu-kernel"):
        refused = f"share_negatives chunk is not a choice of the {backend}"
        with pytest.raises(UsageError, match=refused):
            choose(cfg(train={"backend": backend}, model={"share_negatives": "chunk"}), CPU, 1)
    with pytest.raises(UsageError, match="model.share_negatives must be one of centre, pair"):
        cfg(model={"share_negatives": "window"})
    assert choose(cfg(train={"backend": "torch"}, model={"share_negatives": "pair"}), CPU, 1) \
        == "torch"


def test_a_cuda_graph_is_for_the_triton_step_on_a_gpu():
    """`train.cuda_graph` captures the Triton step; elsewhere it is refused in one line, and
    the graphed step refuses tables that are not on a CUDA device."""
    from w2vdist.training.backends.gpu_step import GraphedStep, TritonStep
    from w2vdist.training.sampling import WindowSampler
    from w2vdist.training.sgns import Embeddings

    for backend in ("auto", "torch", "cpu-kernel"):  # auto on a CPU: the compiled kernel
        with pytest.raises(UsageError, match="^config: train.cuda_graph captures the Triton "
                           "step on a CUDA device; this run's backend is (torch|cpu-kernel)$"):
            choose(cfg(train={"backend": backend, "cuda_graph": True}), CPU, 1)
    tables = Embeddings(10, 4, torch.Generator().manual_seed(0))
    sampler = WindowSampler(torch.arange(10, 0, -1), cfg().model, torch.Generator(), CPU)
    with pytest.raises(ValueError, match="a CUDA graph needs the tables on a CUDA device, got "
                       "cpu"):
        GraphedStep(TritonStep(sampler, tables, None, "centre"))


def test_the_triton_step_is_captured_by_default_only_at_steps_where_it_pays():
    """Unset, `train.cuda_graph` captures the Triton step of GRAPH_STEP_WORDS a rank or
    fewer (the host's launches bound it), not larger steps or other backends; given, it is
    what was given, from the flag or its `no-` form."""
    from w2vdist.cli import build_parser
    from w2vdist.settings import from_args
    from w2vdist.training.config import TrainCommand

    def graph(backend: str, words: int, given: bool | None = None) -> bool:
        return cuda_graph(cfg(train={"backend": backend, "cuda_graph": given},
                              optim={"batch_words": words}))

    assert GRAPH_STEP_WORDS == 32_768
    assert graph("triton", 16_384) and graph("triton", GRAPH_STEP_WORDS)
    assert not graph("triton", GRAPH_STEP_WORDS + 1) and not graph("triton", 262_144)
    assert not graph("torch", 4096) and not graph("cpu-kernel", 16_384)
    assert graph("triton", 262_144, True) and not graph("triton", 16_384, False)
    for flags, given in (([], None), (["--train.cuda-graph"], True),
                         (["--train.no-cuda-graph"], False), (["--train.cuda_graph"], True)):
        args = build_parser("train").parse_args(["train", *flags])
        assert from_args(TrainCommand, args).config.train.cuda_graph is given, flags


def test_steps_of_few_words_are_warned_about():
    """Under about 117 words a rank at window 5 an edge costs over 2% of a step's pairs."""
    assert edge_warning(5, 256) is None and edge_warning(5, 117) is None
    assert edge_warning(5, 116) == (
        "steps of 116 words a rank lose 2% or more of their pairs (a window never crosses a "
        "step's edge) and train slowly (each step's fixed cost is paid for few words): use "
        "optim.batch_words 117 or more, or 0 (the backend's)")
    assert "lose 100% or more" in edge_warning(5, 1) and "lose 100%" in edge_warning(5, 0)
    assert edge_warning(20, 256) is not None  # 22 / 768 of the pairs
    # A window reaches no farther than its sentence (item2vec's 2^31 - 1: the whole of it).
    assert edge_warning(2**31 - 1, 980, 10.8) is None and edge_warning(2**31 - 1, 980)
    assert edge_warning(2**31 - 1, 116, 5.0) == edge_warning(5, 116)


def test_negatives_shared_per_chunk_are_warned_about():
    assert "1.5 analogy points" in negatives_warning(cfg(model={"share_negatives": "chunk"}))
    for share in ("centre", "pair"):
        assert negatives_warning(cfg(model={"share_negatives": share})) is None


def test_the_cpu_kernel_step_shares_negatives_as_the_config_says():
    from w2vdist.training import backends
    from w2vdist.training.sgns import Embeddings
    from w2vdist.training.sync import OneProcess

    for share, shared in (("centre", True), ("pair", False)):
        config = cfg(train={"backend": "cpu-kernel"}, model={"dim": 4, "share_negatives": share})
        step = backends.build(config, Embeddings(10, 4, torch.Generator().manual_seed(0)),
                              torch.arange(10, 0, -1).numpy(), OneProcess(1, CPU),
                              torch.Generator().manual_seed(1))
        assert step.share_negatives is shared
