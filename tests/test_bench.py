"""`w2vdist bench`: real steps and loader on tiny data; sane figures, JSON, usage errors.

Timings are never asserted: only that the figures exist, are positive and add up.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import config, prepare, write_zipf_corpus
from benchmarks.run_figures import run_figures
from w2vdist.training.bench import Synthetic
from w2vdist.cli import main
from w2vdist.training import chunks
from w2vdist.training.backends import cpu
from w2vdist.training.loop import train

SMALL = ["--model.dim", "16", "--optim.batch_words", "512", "--train.device", "cpu",
         "--train.threads", "1", "--warmup", "1"]
REPORT_KEYS = {"settings", "device_name", "torch_version", "commit", "date", "figures"}
BACKENDS = ["torch", pytest.param("cpu-kernel", marks=pytest.mark.skipif(
    not cpu.available(), reason=f"no CPU kernel: {cpu.unavailable_reason()}"))]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    return prepare(write_zipf_corpus(root / "corpus.txt", 600), root / "shards", 3000)


def run_bench(args: list[str], out: Path) -> dict:
    assert main(["bench", *args, "--json", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize("backend", BACKENDS)
def test_synthetic_stream_trains_with_the_chosen_backend(backend, tmp_path, capsys):
    report = run_bench(
        ["--synthetic-vocab", "500", "--synthetic-tokens", "3000", "--steps", "4",
         "--train.backend", backend, *SMALL], tmp_path / "bench.json",
    )
    assert REPORT_KEYS <= set(report)
    assert report["settings"]["backend"] == backend
    assert report["settings"]["source"]["synthetic"]["vocab"] == 500
    assert report["settings"]["config"]["model"]["dim"] == 16
    assert report["torch_version"] == torch.__version__
    f = report["figures"]
    assert f["steps"] == 4 and f["words"] == 4 * 512
    assert f["seconds"] > 0 and f["words_per_s"] == pytest.approx(f["words"] / f["seconds"])
    assert f["pairs"] > 0 and f["pairs_per_s"] > 0
    # Untrained output rows are zero: each pair starts at (1 + negative) * log 2.
    assert 0 < f["loss_per_pair"] < 6 * np.log(2) + 0.1
    assert f["loader_wait_share"] == 0  # a synthetic stream's batches are all made
    assert 0 < f["handover_share"] < 1
    assert 0 < f["host_cpu_share"] <= 1.5  # the step on one thread (SMALL)
    assert f["peak_host_mb"] > 10 and f["peak_device_mb"] is None
    printed = capsys.readouterr().out
    assert f"{backend} backend, dim 16" in printed and "words/s" in printed


def test_synthetic_batches_are_zipfian_token_batches_like_the_loaders():
    spec = Synthetic(vocab=200, tokens=20_000, sentence=10.0, zipf=1.0)
    batches = spec.batches(1000, seed=3, pin_memory=False)
    assert len(batches) == 20
    tokens = torch.cat([t for t, _ in batches])
    assert tokens.dtype == torch.int32 and 0 <= int(tokens.min()) and int(tokens.max()) < 200
    frequency = torch.bincount(tokens.long(), minlength=200).numpy()
    assert frequency[0] > frequency[1] > frequency[10] > frequency[100]
    assert frequency[0] / frequency[9] == pytest.approx(10, rel=0.25)
    for _, sentence in batches:
        assert sentence.dtype == torch.int32 and int(sentence[0]) == 0
        steps = torch.diff(sentence)
        assert set(steps.unique().tolist()) <= {0, 1}
    mean_length = 20 * 1000 / sum(int(s[-1]) + 1 for _, s in batches)
    assert mean_length == pytest.approx(10, rel=0.2)
    counts = spec.counts()
    assert np.all(np.diff(counts) <= 0) and counts[-1] >= 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_prepared_shards_through_the_trainers_loader(backend, shards, tmp_path):
    report = run_bench(
        ["--data.shards", str(shards), "--data.loader_workers", "1", "--steps", "6",
         "--train.backend", backend, *SMALL], tmp_path / "bench.json",
    )
    source = report["settings"]["source"]
    manifest = json.loads((shards / "manifest.json").read_text())
    assert source["shards"] == str(shards) and source["total_tokens"] == manifest["total_tokens"]
    f = report["figures"]
    assert f["steps"] == 6 and f["pairs"] > 0 and f["words_per_s"] > 0
    # Waiting for a worker's chunk (none here: the first, of 1M words, came in the warm-up)
    # and the rest of the hand-over, each a share of the whole.
    assert f["loader_wait_share"] == 0 and 0 < f["handover_share"] < 1


def test_loader_only_moves_batches_without_training(shards, tmp_path, capsys):
    report = run_bench(
        ["--data.shards", str(shards), "--loader-only", "--seconds", "0.3", *SMALL],
        tmp_path / "loader.json",
    )
    assert report["settings"]["mode"] == "loader-only"
    assert "backend" not in report["settings"]
    f = report["figures"]
    assert f["seconds"] >= 0.3 and f["steps"] >= 1 and f["words"] == 512 * f["steps"]
    assert "pairs" not in f
    # This process's CPU time: its one busy thread's at most (tiny batches keep it busy).
    assert 0 < f["host_cpu_share"] <= 1.05
    assert f["words_per_cpu_s"] == pytest.approx(f["words_per_s"] / f["host_cpu_share"])
    printed = capsys.readouterr().out
    assert "loader only" in printed and "words/s per CPU second" in printed


def test_loader_only_counts_this_process_cpu_not_its_workers(shards, tmp_path, monkeypatch):
    """A worker that burns 200 ms of CPU on every chunk keeps the trainer waiting: the share
    is the trainer's own CPU time, small, not the wall time it spent waiting. (At 50 ms a
    slowed machine once gave the trainer 62% of a 0.5 s window.)"""
    mix = chunks._mix

    def slow_mix(*args):
        until = time.perf_counter() + 0.2
        while time.perf_counter() < until:
            pass
        mix(*args)

    monkeypatch.setattr(chunks, "_mix", slow_mix)  # the forked worker inherits it
    report = run_bench(
        ["--data.shards", str(shards), "--loader-only", "--seconds", "1",
         "--data.loader_workers", "1", *SMALL], tmp_path / "loader.json",
    )
    f = report["figures"]
    assert 0 < f["host_cpu_share"] < 0.5
    assert f["words_per_cpu_s"] > 2 * f["words_per_s"]


def test_bench_logs_nothing_to_wandb_and_needs_it_not(shards, tmp_path, monkeypatch):
    """A GPU box or a container without wandb installed can still measure."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    for mode in (["--loader-only", "--seconds", "0.1"], ["--steps", "1"]):
        report = run_bench(["--data.shards", str(shards), *mode, *SMALL],
                           tmp_path / "bench.json")
        assert report["settings"]["config"]["wandb"]["mode"] == "disabled"


def test_more_loader_workers_than_shards_all_read(shards, tmp_path, w2vdist_log):
    """Workers are dealt samples, not whole shards: a rank with fewer shards than the loader
    workers a GPU run asks for still gets them all."""
    count = len(json.loads((shards / "manifest.json").read_text())["shards"])
    report = run_bench(["--data.shards", str(shards), "--loader-only", "--seconds", "0.2",
                        "--data.loader_workers", str(count + 1), *SMALL],
                       tmp_path / "loader.json")
    assert report["figures"]["steps"] >= 1
    assert "data.loader_workers is" not in w2vdist_log.text


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "give --data.shards DIR"),
        (["--synthetic-vocab", "100", "--data.shards", "x"], "not both"),
        (["--synthetic-vocab", "100", "--loader-only"], "--loader-only"),
        (["--synthetic-vocab", "0"], "--synthetic-vocab must be >= 1"),
        (["--synthetic-vocab", "100", "--steps", "0"], "--steps must be >= 1"),
        (["--synthetic-vocab", "100", "--steps", "2", "--seconds", "1"], "--steps or --seconds"),
        (["--synthetic-vocab", "100", "--warmup", "-1"], "--warmup must be >= 0"),
        (["--synthetic-vocab", "100", "--model.dim", "0"], "model.dim"),
        (["--synthetic-vocab", "100", "--train.backend", "cpu-kernel", "--train.device", "cuda"],
         "train.device"),
        (["--data.shards", "/nonexistent/shards"], "manifest.json: not found"),
        (["--synthetic-vocab", "100", "--json", "/nonexistent/out.json"], "directory not found"),
    ],
)
def test_bad_flags_are_usage_errors(args, message, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", *args] + ([] if "--json" in args else ["--json", str(out)])) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("w2vdist: ") and message in err and "\n" not in err
    assert not out.exists()


def test_run_figures_summarise_a_training_runs_metrics(shards, tmp_path):
    run = tmp_path / "run"
    assert train(config(shards, run, train={"epochs": 2, "log_every_seconds": 0.05})) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    figures = run_figures(run)
    assert figures["world_size"] == 1 and figures["steps"] == records[-1]["step"]
    assert figures["words"] == figures["steps"] * 500
    assert figures["loop_seconds"] > 0 and figures["sync_time_share"] == 0
    assert 0 < figures["loader_wait_share"] < 1 and 0 < figures["handover_share"] < 1
    assert figures["words_per_s"] == pytest.approx(figures["words"] / figures["loop_seconds"])
    # The loop is slower than its fastest interval and faster than its slowest.
    speeds = [r["words_per_s"] for r in records]
    assert min(speeds) <= figures["words_per_s"] <= max(speeds)


def test_gpu_crowd_emulation_trains_and_its_damping_acts(shards, tmp_path):
    """`benchmarks/gpu_crowd.py` runs `w2vdist train` with its emulated Triton step: the run
    finishes with a checkpoint, and damping changes what it trains (its crowd is estimated
    and applied), as do negatives shared per chunk and more negatives a centre."""
    import subprocess
    import sys

    from w2vdist.training import checkpoint

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_crowd.py"
    tables = []
    for damping, share, negatives in (("0", "centre", "0"), ("1", "centre", "0"),
                                      ("1", "chunk", "0"), ("1", "centre", "7")):
        run = tmp_path / f"run-{damping}-{share}-{negatives}"
        done = subprocess.run(
            [sys.executable, str(script), "--in-flight", "64", "--damping", damping,
             "--share-negatives", share, "--negatives", negatives, "--",
             "--data.shards", str(shards), "--train.run_dir", str(run), "--model.dim", "16",
             "--optim.batch_words", "1024", "--optim.alpha", "0.05", "--train.max_steps", "4",
             "--wandb.mode", "disabled", "--train.threads", "1"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        assert "trained 4/" in done.stdout
        tables.append(checkpoint.load_tables(run)[1])
    assert all(torch.isfinite(t).all() for t in tables)
    assert not torch.allclose(tables[0], tables[1])
    assert not torch.allclose(tables[1], tables[2])
    assert not torch.allclose(tables[1], tables[3])


def test_gpu_crowd_records_what_local_merges_weigh():
    """Under `local` each rank's emulated GPU step adds lr x curvature to the saturation the
    merges weigh its changes by, on exactly the rows it changed."""
    from benchmarks.gpu_crowd import CrowdStep
    from w2vdist.training.config import ModelConfig
    from w2vdist.training.merge import Saturation
    from w2vdist.training.sampling import WindowSampler
    from w2vdist.training.sgns import Embeddings

    vocab = 40
    counts = torch.arange(vocab, 0, -1) * 10
    sampler = WindowSampler(counts, ModelConfig(dim=8, sample=0), torch.Generator().manual_seed(1),
                            torch.device("cpu"))
    tables = Embeddings(vocab, 8, torch.Generator().manual_seed(2))
    tables.output.data.normal_(generator=torch.Generator().manual_seed(3))
    before = [tables.input.data.clone(), tables.output.data.clone()]
    sat = Saturation(*(torch.zeros(vocab) for _ in range(4)))
    step = CrowdStep(sampler, tables, in_flight=16, damping=0.1, saturation=sat)
    tokens = torch.randint(0, 10, (300,), generator=torch.Generator().manual_seed(4))
    step(tokens, torch.arange(300) // 30, 0.05, 0.05)
    for table, was, summed in zip((tables.input, tables.output), before,
                                  (sat.sat_in, sat.sat_out)):
        changed = (table.data != was).any(dim=1)
        assert changed.any() and torch.equal(summed > 0, changed)


def test_gpu_crowd_chunk_mode_shares_the_first_m_draws_of_each_chunk(monkeypatch):
    """`--share-negatives chunk`: every centre of a chunk of 16 trains against the same M
    negatives, the first M its centres drew, each at the weight it was given."""
    import benchmarks.gpu_crowd as emulation
    from w2vdist.training.config import ModelConfig
    from w2vdist.training.sampling import WindowSampler
    from w2vdist.training.sgns import Embeddings, gradients

    vocab, m = 40, 16
    sampler = WindowSampler(torch.arange(vocab, 0, -1) * 10, ModelConfig(dim=8, sample=0),
                            torch.Generator().manual_seed(1), torch.device("cpu"))
    drawn = []
    sample = sampler.negatives.sample
    monkeypatch.setattr(sampler.negatives, "sample",
                        lambda *a, **k: drawn.append(sample(*a, **k)) or drawn[-1])
    seen = []
    monkeypatch.setattr(emulation, "gradients",
                        lambda *a: seen.append((a[3], a[5])) or gradients(*a))
    tables = Embeddings(vocab, 8, torch.Generator().manual_seed(2))
    step = emulation.CrowdStep(sampler, tables, in_flight=1000, damping=0.1,
                               chunk_negatives=m, negative_weight=5 / m)
    tokens = torch.randint(0, vocab, (100,), generator=torch.Generator().manual_seed(4))
    step(tokens, torch.arange(100) // 25, 0.05, 0.05)
    (negatives, weight), = seen
    assert weight == 5 / m and negatives.shape == (100, m)
    per_centre = drawn[0]  # (100, K = 5)
    for first in range(0, 96, 16):
        chunk = negatives[first:first + 16]
        assert (chunk == chunk[0]).all()
        assert torch.equal(chunk[0], per_centre[first:first + 16].reshape(-1)[:m])
    assert not torch.equal(negatives[0], negatives[16])
