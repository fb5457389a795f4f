"""The chunked Triton SGNS kernel against a float64 reference, its draws, its sm_90 build, and
the GPU step's freedom from host synchronisation.

The kernel runs on CPU tensors through Triton's interpreter, which runs programs one after
another in grid order, so the kernel must equal a float64 reference that trains chunk after
chunk (each chunk's gradients from the tables as the earlier chunks left them: Hogwild,
serialised) to float32 rounding. The learning rates are high enough that this order matters:
the same pairs trained all at once (every gradient from the first tables) differ measurably.
The reference is written pair by pair, as word2vec.c trains, from the draws the kernel
records, so the kernel's matrix-product formulation, masks and negative skipping are checked
against the plain definition.

Interpretation is decided when triton is imported and a process that imported it so can no
longer compile for a GPU, so the kernel runs in a child process (this file as a script, with
TRITON_INTERPRET=1) and the references are computed here.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import w2vdist
from benchmarks.kernel_compile import compile_kernel
from benchmarks.kernel_reference import reference_sgd


def _scenario(vocab, dim, words, sentence_len, lr, share, seed, track=False, keep=0.8,
              damp=False, sequential=False, negative=5, window=5):
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(1, 1000, (vocab,), generator=g)
    # (crowd_in, crowd_out, centres, factor): rows damped by up to 1 / 3.5 at first.
    damping = (torch.rand(vocab, generator=g) * 20, torch.rand(vocab, generator=g) * 100,
               16.0, 0.5) if damp else None  # fmt: skip
    return dict(
        w_in=torch.randn(vocab, dim, generator=g) * 0.3,  # large rows: errors cannot hide
        w_out=torch.randn(vocab, dim, generator=g) * 0.3,
        counts=counts,
        tokens=torch.randint(0, vocab, (words,), generator=g),
        sentence=torch.arange(words) // sentence_len,
        keep=torch.full((vocab,), keep),
        lr=lr, share=share, seed=seed, track=track, damping=damping, window=window,
        negative=negative, sequential=sequential,
    )  # fmt: skip


SCENARIOS = {
    "centre-100": lambda: _scenario(300, 100, 160, 23, (0.05, 0.03), "centre", 1),
    # A program a launch, as gpu_check's CORRECT launches it on a GPU.
    "centre-100-sequential": lambda: _scenario(300, 100, 160, 23, (0.05, 0.03), "centre", 1,
                                               sequential=True),
    "chunk-100": lambda: _scenario(300, 100, 160, 23, (0.05, 0.03), "chunk", 2),
    "centre-300": lambda: _scenario(400, 300, 100, 40, (0.05, 0.05), "centre", 3),
    "chunk-37": lambda: _scenario(200, 37, 130, 17, (0.05, 0.02), "chunk", 4),
    "centre-37-saturation": lambda: _scenario(200, 37, 100, 17, (0.05, 0.05), "centre", 5, True),
    "chunk-37-saturation": lambda: _scenario(200, 37, 100, 17, (0.05, 0.05), "chunk", 6, True),
    "centre-100-damped": lambda: _scenario(300, 100, 160, 23, (0.05, 0.03), "centre", 10,
                                           damp=True),
    "chunk-37-damped": lambda: _scenario(200, 37, 130, 17, (0.05, 0.02), "chunk", 11, True,
                                         damp=True),
    # More negatives than a 16-centre tile holds: 8 centres a program at 10, 4 at 20.
    "centre-100-negative-10": lambda: _scenario(300, 100, 160, 23, (0.05, 0.03), "centre", 12,
                                                negative=10),
    "centre-37-negative-20-damped": lambda: _scenario(200, 37, 130, 17, (0.05, 0.02), "centre",
                                                      13, True, damp=True, negative=20),
    # A window past 24: 8 centres a program, over a 64-row band.
    "centre-37-window-25": lambda: _scenario(200, 37, 160, 70, (0.05, 0.02), "centre", 14,
                                             window=25),
    # Twelve words: every row recurs across chunks, as frequent words do.
    "hot-rows": lambda: _scenario(12, 24, 200, 30, (0.1, 0.1), "centre", 7, keep=1.0),
    "nothing-kept": lambda: _scenario(50, 16, 64, 10, (0.05, 0.05), "centre", 8, keep=0.0),
    # Many draws for their distributions: five words of very different counts.
    "draws": lambda: {**_scenario(5, 16, 1600, 100, (0.0, 0.0), "centre", 9),
                      "counts": torch.tensor([5000, 1000, 200, 40, 8])},
}


def _norms(w_in: torch.Tensor, w_out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Norms of a last merge unlike the rows' own, which the CPU kernel's saturation reads and
    the Triton kernel's must not."""
    return (w_in**2).sum(1) * 0.5, (w_out**2).sum(1) * 2.0


def _run_scenarios(out: str) -> None:
    """Child process: the kernel on every scenario, results and recorded draws saved."""
    from w2vdist.training.backends import triton as kernels
    from w2vdist.training.backends.crowd import Damping
    from w2vdist.training.backends.tiling import tiles
    from w2vdist.training.backends.triton import sgns_chunks
    from w2vdist.training.sampling import AliasTable, subsample
    from w2vdist.training.merge import Saturation

    # Each launch's grid, heard where the interpreted kernel is indexed by it.
    interpreted, grids = type(kernels._sgns_chunk), []
    launch = interpreted.__getitem__
    interpreted.__getitem__ = lambda kernel, grid: grids.append(grid) or launch(kernel, grid)
    results = {}
    for name, make in SCENARIOS.items():
        grids.clear()
        s = make()
        g = torch.Generator().manual_seed(s["seed"])
        tokens, sentence, kept = subsample(s["tokens"], s["sentence"], s["keep"], g)
        table = AliasTable(s["counts"], 0.75, torch.device("cpu")).table
        w_in, w_out = s["w_in"].clone(), s["w_out"].clone()
        saturation = None
        if s["track"]:
            saturation = Saturation(*_norms(w_in, w_out), torch.zeros(len(w_in)),
                                    torch.zeros(len(w_in)))
        damping = None
        if s["damping"]:
            crowd_in, crowd_out, centres, factor = s["damping"]
            damping = Damping(factor, (crowd_in.clone(), crowd_out.clone()),
                              torch.tensor(centres))
        blocks = tiles(s["window"], s["negative"], w_in.shape[1], s["share"])
        record = torch.full((-(-len(tokens) // blocks["CHUNK"]), 2, blocks["BLOCK_J"]), -1)
        loss, pairs = sgns_chunks(
            w_in, w_out, tokens, sentence, kept, table, torch.tensor([1000 + s["seed"]]),
            torch.tensor(s["lr"]), s["window"], s["negative"], s["share"], saturation, "ieee",
            record, damping, s["sequential"],
        )  # fmt: skip
        results[name] = dict(
            w_in=w_in, w_out=w_out, loss=loss, pairs=pairs, tokens=tokens, sentence=sentence,
            kept=kept, record=record, block_t=blocks["BLOCK_T"], chunk=blocks["CHUNK"],
            table=table,
            sat=(saturation.sat_in, saturation.sat_out) if saturation else None,
            crowd=tuple(t.clone() for t in (*damping.crowd, damping.centres)) if damping
            else None,
            resident=damping.resident if damping else None, launches=list(grids),
        )  # fmt: skip
        if damping:
            damping.advance(kept)
            results[name]["advanced"] = (*damping.crowd, damping.centres)
    results["no-sync"] = _count_host_syncs()
    results["built"] = _built_damping()
    results["rated"] = _rated_steps()
    results["graphed"] = _graphed_steps()
    torch.save(results, out)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """{scenario: what the interpreted kernel produced}."""
    out = tmp_path_factory.mktemp("triton") / "results.pt"
    package_root = str(Path(w2vdist.__file__).resolve().parents[1])  # the w2vdist tested here
    path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, __file__, str(out)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return torch.load(out, weights_only=False)


def _reference(scenario: dict, result: dict, all_at_once: bool = False):
    """float64 SGD, chunk after chunk (or every chunk from the first tables), pair by pair."""
    return reference_sgd(
        scenario["w_in"], scenario["w_out"], result["tokens"], result["sentence"],
        int(result["kept"]), result["record"], result["block_t"], scenario["share"],
        scenario["negative"], scenario["lr"], scenario["track"], all_at_once,
        _damping(scenario, result["chunk"]), result["chunk"],
    )  # fmt: skip


def _damping(scenario: dict, chunk: int) -> tuple | None:
    """The reference's damping: the scenario's crowd and centres, scale factor x the chunk's
    centres (under the interpreter a program's reads miss only its own chunk's updates)."""
    if scenario["damping"] is None:
        return None
    crowd_in, crowd_out, centres, factor = scenario["damping"]
    return crowd_in, crowd_out, centres, factor * chunk


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("name", ["centre-100", "chunk-100", "centre-300", "chunk-37",
                                  "hot-rows", "centre-100-damped", "chunk-37-damped",
                                  "centre-100-sequential", "centre-100-negative-10",
                                  "centre-37-negative-20-damped", "centre-37-window-25"])
def test_kernel_equals_chunk_by_chunk_float64_sgd(kernel, name):
    scenario, result = SCENARIOS[name](), kernel[name]
    want_in, want_out, want_loss, want_pairs, *_ = _reference(scenario, result)
    assert int(result["pairs"]) == want_pairs > 0
    assert result["chunk"] == {"centre-100-negative-10": 8, "centre-37-negative-20-damped": 4,
                               "centre-37-window-25": 8}.get(name, 16)
    assert result["loss"].dtype == torch.float64
    assert float(result["loss"]) == pytest.approx(want_loss, rel=1e-5)
    assert not torch.equal(result["w_in"], scenario["w_in"])
    _close(result["w_in"], want_in)
    _close(result["w_out"], want_out)
    if name == "hot-rows":  # negatives equal to their centre were drawn, and skipped
        targets = result["record"][:, 0].reshape(-1, result["block_t"])[: int(result["kept"])]
        assert (targets[:, 1:6] == targets[:, :1]).any()


def test_a_program_a_launch_trains_the_same_chunks(kernel):
    """Under the interpreter programs run in order either way: launched one at a time (each
    launch offset by its first program), the kernel must give the same tables bit for bit."""
    for key in ("w_in", "w_out", "loss", "pairs", "record"):
        assert torch.equal(kernel["centre-100-sequential"][key], kernel["centre-100"][key]), key
    programs = -(-len(kernel["centre-100"]["tokens"]) // kernel["centre-100"]["chunk"])
    assert kernel["centre-100"]["launches"] == [(programs,)]
    assert kernel["centre-100-sequential"]["launches"] == [(1,)] * programs


def test_hogwild_order_matters_at_these_learning_rates(kernel):
    """Trained all at once (every chunk from the first tables) the same pairs give other
    tables: the kernel's sequential agreement above is not a property of a tiny lr."""
    scenario, result = SCENARIOS["hot-rows"](), kernel["hot-rows"]
    at_once_in = _reference(scenario, result, all_at_once=True)[0]
    sequential_in = _reference(scenario, result)[0]
    change = (sequential_in - scenario["w_in"].double()).norm()
    assert (at_once_in - sequential_in).norm() > 0.05 * change
    assert (result["w_in"].double() - at_once_in).norm() > 0.05 * change


@pytest.mark.parametrize("name", ["centre-37-saturation", "chunk-37-saturation",
                                  "centre-37-negative-20-damped"])
def test_saturation_gathers_lr_half_abs_gradient_times_the_other_rows_norm(kernel, name):
    """For `local` merges each score adds lr |g| / 2 x |other row as read|^2 to both rows'
    totals (not the last merge's norms, which the scenario sets apart from the rows')."""
    scenario, result = SCENARIOS[name](), kernel[name]
    want_in, want_out, _, _, (sat_in, sat_out), _ = _reference(scenario, result)
    _close(result["w_in"], want_in)
    _close(result["w_out"], want_out)
    assert sat_in.sum() > 0
    torch.testing.assert_close(result["sat"][0].double(), sat_in, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(result["sat"][1].double(), sat_out, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["centre-100-damped", "chunk-37-damped",
                                  "centre-37-negative-20-damped"])
def test_damping_divides_each_rows_update_by_its_crowd_and_counts_what_it_trained(kernel, name):
    """Each row's update is divided by 1 + lr x damping x in_flight x the row's curvature per
    centre trained before it (the float64 reference above does it, program after program);
    each program then adds its |g| / 2 x |other row as read|^2 to its rows' totals and its
    centres to theirs, and `advance` decays all of them by the step's kept centres."""
    from w2vdist.training.backends.crowd import CROWD_MEMORY

    scenario, result = SCENARIOS[name](), kernel[name]
    undamped = reference_sgd(
        scenario["w_in"], scenario["w_out"], result["tokens"], result["sentence"],
        int(result["kept"]), result["record"], result["block_t"], scenario["share"],
        scenario["negative"], scenario["lr"], size=result["chunk"],
    )[0]  # fmt: skip
    damped, _, _, _, _, (crowd_in, crowd_out, centres) = _reference(scenario, result)
    assert (undamped - damped).norm() > 0.1 * (damped - scenario["w_in"].double()).norm()
    assert (crowd_in > scenario["damping"][0].double()).any()
    for got, want in zip(result["crowd"], (crowd_in, crowd_out, centres)):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)
    assert float(centres) == 16 + int(result["kept"])
    assert result["resident"] == 1  # the interpreter runs one program at a time
    decay = math.exp(-int(result["kept"]) / CROWD_MEMORY)
    for got, before in zip(result["advanced"], result["crowd"]):
        torch.testing.assert_close(got, before * decay)


def test_resident_programs_follow_registers_shared_memory_and_threads():
    """Occupancy as Triton's fused-softmax tutorial reckons it, on an H100's figures: the
    per-centre kernel's 255 registers at 8 warps leave one program an SM."""
    from w2vdist.training.backends.crowd import resident_programs

    h100 = dict(warpSize=32, max_num_regs=65536, max_shared_mem=232448,
                multiprocessor_count=132)  # fmt: skip
    assert resident_programs(255, 8, 0, h100) == 132
    assert resident_programs(170, 4, 0, h100) == 3 * 132
    assert resident_programs(64, 4, 40_000, h100) == 5 * 132  # shared memory bounds it
    assert resident_programs(16, 2, 0, h100) == 32 * 132  # threads bound it


def test_nothing_kept_changes_nothing(kernel):
    scenario, result = SCENARIOS["nothing-kept"](), kernel["nothing-kept"]
    assert int(result["kept"]) == 0 and int(result["pairs"]) == 0 and float(result["loss"]) == 0
    assert torch.equal(result["w_in"], scenario["w_in"])
    assert torch.equal(result["w_out"], scenario["w_out"])


def test_in_kernel_draws_follow_the_window_and_the_alias_table(kernel):
    result = kernel["draws"]
    block_t, kept = result["block_t"], int(result["kept"])
    record = result["record"][: -(-kept // result["chunk"])]
    reach = record[:, 1, ::block_t].reshape(-1)[:kept]
    hist = torch.bincount(reach, minlength=6)[1:].double()
    assert hist.sum() == kept and (hist - kept / 5).abs().max() < 5 * (kept / 5) ** 0.5
    negatives = record[:, 0].reshape(-1, block_t)[:kept, 1:6].reshape(-1)
    got = torch.bincount(negatives, minlength=5).double()
    counts = torch.tensor([5000, 1000, 200, 40, 8], dtype=torch.float64)
    expected = counts**0.75 / (counts**0.75).sum() * len(negatives)
    chi2 = float(((got - expected) ** 2 / expected).sum())
    assert chi2 < 25, (got, expected)  # 4 degrees of freedom: p ~ 5e-5


def test_the_gpu_step_trains_at_the_rate_it_is_given(kernel):
    """The rate goes to the kernel through a device buffer (so that a captured step reads each
    step's): at 0 the tables stay as they were, at 0.05 both change."""
    rated = kernel["rated"]
    assert rated["still"] == [False, False] and rated["still rate"] == [0.0, 0.0], rated
    assert rated["moved"] == [True, True], rated
    assert rated["moved rate"] == pytest.approx([0.05, 0.03]), rated


def test_the_graphed_step_replays_what_eager_steps_train(kernel):
    """`GraphedStep`'s own part, on CPU: each step's rate set before the replay, its batch
    copied into the captured buffers, its results copied out of the graph's outputs: with a
    stand-in capture that re-runs the recorded step, four steps of different batches and rates
    train the tables bit for bit as the eager step does (on a GPU, gpu_check GRAPH checks the
    real graph's draws)."""
    eager, graphed = kernel["graphed"]["eager"], kernel["graphed"]["graphed"]
    assert graphed["steps"] == eager["steps"], (graphed["steps"], eager["steps"])
    assert len(set(eager["steps"])) == 4, eager["steps"]
    for replayed, trained in zip(graphed["tables"], eager["tables"]):
        assert torch.equal(replayed, trained)


def test_the_gpu_step_makes_no_host_synchronisation(kernel):
    """Subsampling, seed, launch and sums: no op that reads a device value on the host or
    sizes a tensor by data (the torch step on one process neither)."""
    counts = kernel["no-sync"]
    assert counts["triton"] == {} and counts["torch"] == {}, counts
    assert counts["probe"], "the counting shim saw nothing: it does not work"


_SYNCING = {"item", "tolist", "__bool__", "__int__", "__float__", "__index__", "nonzero",
            "masked_select", "unique", "unique_consecutive", "repeat_interleave", "cpu", "numpy",
            "argwhere", "__len__"}  # fmt: skip


def _count_host_syncs() -> dict[str, dict[str, int]]:
    """Child process: each step run under a TorchFunctionMode counting the calls that would
    make a CUDA device wait for the host (reads, data-sized outputs, boolean indexing).
    Calls made by Triton's interpreter while it runs the kernel on the host are not counted:
    on a GPU the launch is asynchronous."""
    from torch.overrides import TorchFunctionMode

    from w2vdist.training.config import Config, ModelConfig
    from w2vdist.training import backends
    from w2vdist.training.sgns import Embeddings
    from w2vdist.training.sync import OneProcess

    class Count(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.seen: dict[str, int] = {}

        def __torch_function__(self, func, types, args=(), kwargs=None):
            name = getattr(func, "__name__", str(func))
            boolean_index = name == "__getitem__" and any(
                isinstance(a, torch.Tensor) and a.dtype == torch.bool
                for a in (args[1] if isinstance(args[1], tuple) else (args[1],))
            )
            if (name in _SYNCING or boolean_index) and not _inside_interpreter():
                self.seen[name] = self.seen.get(name, 0) + 1
            return func(*args, **(kwargs or {}))

    counts = torch.tensor([50, 30, 20, 10, 8, 6, 5, 4, 3, 2])
    tokens = torch.randint(0, 10, (200,), generator=torch.Generator().manual_seed(0))
    sentence = torch.arange(200) // 20
    out = {}
    for backend in ("triton", "torch"):
        cfg = Config(model=ModelConfig(dim=8, sample=0.05))
        cfg.train.backend = backend
        tables = Embeddings(10, 8, torch.Generator().manual_seed(1))
        step = backends.build(cfg, tables, counts.numpy(), OneProcess(1, tables.input.device),
                              torch.Generator().manual_seed(3))
        with Count() as mode:
            step(tokens, sentence, 0.02, 0.01)
        out[backend] = mode.seen
    with Count() as probe:
        torch.ones(2)[torch.tensor([True, False])].item()
    out["probe"] = probe.seen
    return out


def _rated_steps() -> dict[str, object]:
    """Child process: the Triton step as training builds it, at a rate of 0, then 0.05 to
    0.03: what each left of the tables, and the rate buffer the kernel read."""
    from w2vdist.training import backends
    from w2vdist.training.config import Config, ModelConfig
    from w2vdist.training.sgns import Embeddings
    from w2vdist.training.sync import OneProcess

    cfg = Config(model=ModelConfig(dim=8, sample=0))
    cfg.train.backend = "triton"
    tables = Embeddings(10, 8, torch.Generator().manual_seed(1))
    tables.output.data.normal_(generator=torch.Generator().manual_seed(2))
    step = backends.build(cfg, tables, torch.arange(10, 0, -1).numpy(),
                          OneProcess(1, tables.input.device), torch.Generator().manual_seed(3))
    tokens = torch.randint(0, 10, (200,), generator=torch.Generator().manual_seed(0))
    out: dict[str, object] = {}
    for name, rate in (("still", (0.0, 0.0)), ("moved", (0.05, 0.03))):
        before = [t.clone() for t in (tables.input, tables.output)]
        step(tokens, torch.arange(200) // 20, *rate)
        out[name] = [not torch.equal(b, t) for b, t in zip(before, (tables.input,
                                                                    tables.output))]
        out[f"{name} rate"] = step.lr.tolist()
    return out


def _graphed_steps() -> dict[str, dict]:
    """Child process: four steps of the Triton step as training builds it, eager, and as
    `GraphedStep` with a stand-in capture that has a CUDA graph's semantics (nothing runs at
    capture; each replay runs the recorded step on the same input buffers and writes the same
    output tensors): each step's (loss, pairs), read after the last, and the tables."""
    from w2vdist.training import backends
    from w2vdist.training.backends.gpu_step import GraphedStep
    from w2vdist.training.config import Config, ModelConfig
    from w2vdist.training.sgns import Embeddings
    from w2vdist.training.sync import OneProcess

    def rerun(record, generator):
        outputs = (torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.int64))

        def replay() -> None:
            for output, value in zip(outputs, record()):
                output.copy_(value)

        return outputs, replay

    g = torch.Generator().manual_seed(5)
    batches = [(torch.randint(0, 10, (200,), generator=g), torch.arange(200) // (10 + i))
               for i in range(4)]  # fmt: skip
    rates = [(0.05, 0.04), (0.04, 0.03), (0.03, 0.02), (0.02, 0.01)]
    out = {}
    for name in ("eager", "graphed"):
        cfg = Config(model=ModelConfig(dim=8, sample=0.05))
        cfg.train.backend = "triton"
        tables = Embeddings(10, 8, torch.Generator().manual_seed(1))
        step = backends.build(cfg, tables, torch.arange(10, 0, -1).numpy(),
                              OneProcess(1, tables.input.device), torch.Generator().manual_seed(3))
        if name == "graphed":
            step = GraphedStep(step, rerun)
        results = [step(tokens, sentence, *rate)
                   for (tokens, sentence), rate in zip(batches, rates)]
        out[name] = dict(steps=[(float(loss), int(pairs)) for loss, pairs in results],
                         tables=(tables.input, tables.output))  # fmt: skip
    return out


def _built_damping() -> dict[float, dict | None]:
    """Child process: the Triton step as training builds it (`backends.build`) at
    `optim.damping` 0.1 and 0, after two steps: what its damping holds."""
    from w2vdist.training import backends
    from w2vdist.training.config import Config, ModelConfig, OptimConfig
    from w2vdist.training.sgns import Embeddings
    from w2vdist.training.sync import OneProcess

    counts = torch.tensor([50, 30, 20, 10, 8, 6, 5, 4, 3, 2])
    tokens = torch.randint(0, 10, (200,), generator=torch.Generator().manual_seed(0))
    sentence = torch.arange(200) // 20
    out: dict[float, dict | None] = {}
    for factor in (0.1, 0.0):
        cfg = Config(model=ModelConfig(dim=8, sample=0), optim=OptimConfig(damping=factor))
        cfg.train.backend = "triton"
        tables = Embeddings(10, 8, torch.Generator().manual_seed(1))
        step = backends.build(cfg, tables, counts.numpy(), OneProcess(1, tables.input.device),
                              torch.Generator().manual_seed(3))
        for _ in range(2):
            step(tokens, sentence, 0.05, 0.05)
        d = step.damping
        out[factor] = None if d is None else dict(
            factor=d.factor, resident=d.resident, centres=float(d.centres),
            crowd=float(d.crowd[0].sum() + d.crowd[1].sum()))
    return out


def test_the_trainer_builds_the_triton_step_damped_at_optim_damping(kernel):
    """`backends.build` gives the step a `Damping` of `optim.damping` whose totals its steps
    fill (two steps of 200 kept centres, each decayed after it), and none at 0."""
    from w2vdist.training.backends.crowd import CROWD_MEMORY

    built = kernel["built"]
    assert built[0.0] is None
    damped = built[0.1]
    assert damped["factor"] == 0.1 and damped["resident"] == 1
    decay = math.exp(-200 / CROWD_MEMORY)
    assert damped["centres"] == pytest.approx((200 * decay + 200) * decay, rel=1e-6)
    assert damped["crowd"] > 0


def _inside_interpreter() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if "triton" + os.sep + "runtime" + os.sep + "interpreter" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


HOPPER = [(90, share, dim, track, damp) for share in ("centre", "chunk") for dim in (100, 300)
          for track, damp in ((False, False), (False, True), (True, True))]
OTHERS = [(arch, share, 300, True, True) for arch in (80, 86, 100) for share in ("centre", "chunk")]


@pytest.mark.parametrize("arch, share, dim, track, damp", HOPPER + OTHERS)
def test_kernel_compiles_without_spills(arch, share, dim, track, damp):
    """Triton compiles for a GPU it does not see: machine code from the default tiles for
    H100/H200 (sm_90) and, in the heaviest variant, A100 (sm_80), A10/A40/RTX 30xx (sm_86) and
    B200 (sm_100), with Tensor Core products and Hogwild atomics; ptxas reports no spills, and
    the shared memory fits the 48 KB any CUDA GPU gives a block without asking for more."""
    build = compile_kernel(arch, share, dim, track, damp)
    assert build.shared <= 48 * 1024
    assert re.search(r"mma\.sync\.aligned\.\S*tf32", build.ptx)  # Tensor Cores, TF32 operands
    # Hogwild atomic adds that return nothing: REDG in the machine code, whether Triton wrote
    # `red` (3.9) or an `atom` whose result is unused (3.6 and 3.7), which ptxas reduces.
    assert re.search(r"\bREDG?\.E\.ADD\.F32", build.sass)
    assert not re.search(r"\bATOMG?\.E\.ADD", build.sass)
    assert "bytes spill stores" in build.report and build.spills == (0, 0), build.report
    assert build.registers * 32 * build.warps <= 65536, build.report  # a program fits an SM


@pytest.mark.parametrize("window, negative, chunk, band, targets", [
    (5, 10, 8, 32, 128), (5, 20, 4, 16, 128), (25, 5, 8, 64, 64), (120, 5, 4, 256, 32)])
def test_more_negatives_or_a_wider_window_take_fewer_centres_and_spill_nothing(
        window, negative, chunk, band, targets):
    """Past 7 negatives a centre, or past window 24, a program trains fewer centres (8 at 10
    negatives or window 25, 4 at 20 or window 120) in at most 128 target columns and 8,192
    scores, over a band of as many rows more: word2vec.c's window 10 with 10 negatives
    compiled to 64 x 256 tiles, 148 KB of shared memory and 684 bytes spilled a thread on
    sm_90, window 25 to 128 x 128 and 3 KB spilled; now without spills."""
    from w2vdist.training.backends.tiling import tiles

    blocks = tiles(window, negative, 300, "centre")
    assert (blocks["CHUNK"], blocks["BLOCK_B"], blocks["BLOCK_J"]) == (chunk, band, targets)
    assert tiles(10, 10, 300, "centre")["BLOCK_B"] == 32  # 8 + 2 x 10 rows
    build = compile_kernel(90, "centre", 300, True, True, window=window, negative=negative)
    assert build.shared <= 64 * 1024 and build.spills == (0, 0), build.report


@pytest.mark.parametrize("share", ["centre", "chunk"])
def test_the_exact_kernel_gpu_check_runs_compiles_for_hopper(share):
    """gpu_check's CORRECT runs the kernel with exact fp32 products, recording its draws,
    damped and tracking saturation: that variant must build for sm_90 too (its products on
    CUDA cores; in centre mode it spills, which a check may)."""
    build = compile_kernel(90, share, 300, True, True, record=True, precision="ieee")
    assert not re.search(r"mma\.sync\.aligned\.\S*tf32", build.ptx)
    assert build.registers > 0, build.report


def test_a_tile_past_the_gpus_shared_memory_stops_the_run_naming_the_settings():
    """On a T4 (sm_75: 64 KB of shared memory a block) window 248 asks more (a band of 512
    rows): Triton's OutOfResources at the first launch becomes the one-line error a user can
    act on (the launch itself needs such a GPU; its figures here are the sm_75 build's)."""
    import triton

    from w2vdist.training.backends.tiling import too_wide
    from w2vdist.training.backends.triton import _launch_error

    build = compile_kernel(75, "centre", 300, False, True, window=248, negative=5)
    assert build.shared > 64 * 1024 and too_wide(248, 5, "centre") is None
    error = _launch_error(triton.OutOfResources(build.shared, 64 * 1024, "shared memory"),
                          248, 5, "centre", torch.device("cpu"))
    assert str(error) == (
        "config: model.window 248 and model.negative 5 (share_negatives centre): the Triton "
        f"kernel's tile needs {build.shared / 1024:.0f} KB of shared memory, more than the 64 "
        "KB of cpu: use a smaller window or fewer negatives, model.share_negatives chunk (a "
        "smaller tile) or train.backend torch")
    assert error.exit_code == 2
    assert str(_launch_error(triton.OutOfResources(70_000, 65_536, "shared memory"), 248, 5,
                             "chunk", torch.device("cpu"))).endswith(
        "use a smaller window or fewer negatives, or train.backend torch with "
        "model.share_negatives centre")  # the torch step shares no chunk's negatives
    smaller = compile_kernel(75, "centre", 300, False, True, window=120, negative=5)
    assert smaller.shared <= 64 * 1024  # the first way out the message names fits


def test_bad_arguments_are_refused():
    from w2vdist.training.backends import triton as kernels

    ids = torch.zeros(4, dtype=torch.int64)
    good = dict(w_in=torch.zeros(5, 8), w_out=torch.zeros(5, 8), tokens=ids, sentence=ids,
                table=torch.zeros(5, 2, dtype=torch.int32), lr=torch.zeros(2), share="centre",
                precision="tf32")
    for change, message in [
        (dict(w_in=torch.zeros(5, 8, dtype=torch.float64)), "w_in must be a contiguous float32"),
        (dict(w_out=torch.zeros(6, 8)), "w_out has shape"),
        (dict(sentence=torch.zeros(3)), "tokens (4,) and sentence (3,)"),
        (dict(table=torch.zeros(5, 2)), "table must be int32[5, 2]"),
        (dict(lr=torch.zeros(2, dtype=torch.float64)), "lr must be float32[2] on cpu"),
        (dict(lr=torch.zeros(())), "lr must be float32[2] on cpu (start, end), got "
         "torch.float32 ()"),
        (dict(share="pair"), "share must be one of centre, chunk"),
        (dict(precision="bf16"), "precision must be tf32 or ieee"),
        (dict(), "the Triton kernel needs CUDA tensors, got cpu"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            kernels._check(**{**good, **change})


def test_available_needs_triton_and_cuda():
    from w2vdist.training.backends.triton import available

    ok, reason = available()
    assert ok == (reason == "")
    if ok:
        assert torch.cuda.is_available()
    else:
        assert reason.startswith(("triton", "no CUDA"))


if __name__ == "__main__":
    if os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("run with TRITON_INTERPRET=1: the kernel runs on CPU tensors")
    _run_scenarios(sys.argv[1])
