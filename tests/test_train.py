"""`w2vdist train`: checkpoints, exact resume, compatibility checks, dry run (one process)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from w2vdist.train import checkpoint
from w2vdist.cli import main
from w2vdist.config import Config, from_dict
from w2vdist.errors import UsageError
from w2vdist.train.loop import train


def write_zipf_corpus(path: Path, lines: int, seed: int = 0, vocab: int = 400) -> Path:
    """Zipfian text with some co-occurrence structure: each line draws from one of 8 topics."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(vocab)]
    ranks = np.arange(1, vocab + 1)
    with open(path, "w") as f:
        for _ in range(lines):
            topic = rng.integers(8)
            p = 1.0 / ranks * np.where(ranks % 8 == topic, 6.0, 1.0)
            ids = rng.choice(vocab, size=rng.integers(5, 30), p=p / p.sum())
            f.write(" ".join(words[i] for i in ids) + "\n")
    return path


def prepare(corpus: Path, out: Path, shard_tokens: int = 8000) -> Path:
    code = main(
        ["prepare", str(corpus), "-o", str(out), "--min-count", "2",
         "--shard-tokens", str(shard_tokens), "--block-tokens", "1000", "--workers", "1"]
    )
    assert code == 0
    return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    return prepare(write_zipf_corpus(root / "corpus.txt", 2000), root / "shards")


def config(shards: Path, run_dir: Path, **sections) -> Config:
    tree = {
        "data": {"shards": str(shards), "loader_workers": 0},
        "model": {"dim": 16},
        "optim": {"batch_words": 500},
        "train": {"run_dir": str(run_dir), "epochs": 2, "backend": "torch", "threads": 1},
        "checkpoint": {"every_minutes": 0},
        "wandb": {"mode": "disabled"},
    }
    for section, values in sections.items():
        tree.setdefault(section, {}).update(values)
    return from_dict(Config, tree)


def tables(run_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    _, w_in, w_out = checkpoint.load_tables(run_dir)
    return w_in, w_out


@pytest.mark.parametrize("workers", [0, 2])
def test_interrupted_and_resumed_run_is_bitwise_equal(shards, tmp_path, workers):
    data = {"loader_workers": workers}
    assert train(config(shards, tmp_path / "full", data=data)) == 0
    assert train(config(shards, tmp_path / "split", data=data, train={"max_steps": 37})) == 0
    state = checkpoint.load(checkpoint.resolve(tmp_path / "split")).state
    assert state["step"] == 37 and state["data"][0][0] > 0  # resumes at a sample, not step 0
    assert train(config(shards, tmp_path / "split", data=data)) == 0
    full, split = tables(tmp_path / "full"), tables(tmp_path / "split")
    assert torch.equal(full[0], split[0]) and torch.equal(full[1], split[1])
    # ...and training did something: the output table starts at zero.
    assert full[1].abs().sum() > 0


def test_resume_with_another_worker_count_warns_and_finishes(shards, tmp_path, capfd):
    run = tmp_path / "run"
    assert train(config(shards, run, data={"loader_workers": 2}, train={"max_steps": 20})) == 0
    assert "deals the shards" not in capfd.readouterr().err  # a fresh run has nothing to warn of
    assert train(config(shards, run, data={"loader_workers": 1})) == 0
    assert "deals the shards to 1 worker(s), not 2" in capfd.readouterr().err
    state = checkpoint.load(checkpoint.resolve(run)).state
    assert state["step"] > 20 and state["data"][0][2] == 1


def test_checkpoint_folders_are_complete_pruned_and_described(shards, tmp_path):
    run = tmp_path / "run"
    assert train(config(shards, run, checkpoint={"every_steps": 10, "keep": 2})) == 0
    steps = checkpoint.complete_steps(run)
    assert len(steps) == 2
    meta = json.loads((steps[0] / "meta.json").read_text())
    state = checkpoint.load(steps[0]).state
    assert state["step"] == meta["total_steps"] == meta["step"]
    assert state["words"] == meta["total_steps"] * 500
    assert meta["world_size"] == 1 and meta["config"]["model"]["dim"] == 16
    assert len(state["rng"]) == 1 and "tokens_per_rank" in state
    assert json.loads((run / "config.json").read_text())["model"]["dim"] == 16
    assert not list((run / "checkpoints").glob(".tmp-*"))


def test_words_trained_cover_the_corpus_each_epoch(shards, tmp_path):
    run = tmp_path / "run"
    train(config(shards, run))
    manifest = json.loads((shards / "manifest.json").read_text())
    words = checkpoint.load(checkpoint.resolve(run)).state["words"]
    per_epoch = words / 2
    assert manifest["total_tokens"] <= per_epoch < manifest["total_tokens"] + 500


def test_corrupt_newest_checkpoint_is_reported_and_the_previous_used(shards, tmp_path, capfd):
    full, run = tmp_path / "full", tmp_path / "run"
    train(config(shards, full))
    train(config(shards, run, checkpoint={"every_steps": 10}, train={"max_steps": 25}))
    newest = checkpoint.complete_steps(run)[0]
    assert newest.name == checkpoint.step_name(25)
    data = (newest / "tables.pt").read_bytes()
    (newest / "tables.pt").write_bytes(data[: len(data) // 2])  # truncated
    assert train(config(shards, run, checkpoint={"every_steps": 10})) == 0
    err = capfd.readouterr().err
    assert "step-000000025: corrupt checkpoint" in err and "resuming from" in err
    # Resumed from step 20, which the uninterrupted run passed through unchanged.
    assert torch.equal(tables(full)[0], tables(run)[0])


def test_checkpoint_of_another_config_is_refused_with_the_difference(shards, tmp_path):
    run = tmp_path / "run"
    train(config(shards, run, train={"max_steps": 5}))
    with pytest.raises(UsageError, match=r"model\.dim 16 -> 32"):
        train(config(shards, run, model={"dim": 32}))


def test_checkpoint_of_another_vocabulary_is_refused(shards, tmp_path):
    run = tmp_path / "run"
    train(config(shards, run, train={"max_steps": 5}))
    other = prepare(write_zipf_corpus(tmp_path / "other.txt", 500, seed=9), tmp_path / "other")
    with pytest.raises(UsageError, match="vocabulary"):
        train(config(other, run))


def test_resume_never_refuses_a_run_directory_with_checkpoints(shards, tmp_path):
    run = tmp_path / "run"
    train(config(shards, run, train={"max_steps": 5}))
    with pytest.raises(UsageError, match="already holds checkpoints"):
        train(config(shards, run), resume="never")


def test_dry_run_prints_the_plan_and_trains_nothing(shards, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(
        ["train", "--dry-run", "--data.shards", str(shards), "--train.run_dir", str(run),
         "--optim.batch_words", "500", "--train.backend", "torch"]
    )
    out = capsys.readouterr().out
    assert code == 0 and not run.exists()
    assert '"batch_words": 500' in out and "world size: 1" in out
    assert "rank 0:" in out and "planned:" in out


def test_bad_config_value_is_one_line_naming_the_field(shards, tmp_path, capsys):
    code = main(["train", "--data.shards", str(shards), "--model.window", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "w2vdist: config: model.window must be >= 1"


def test_missing_shards_directory_is_a_usage_error(tmp_path, capsys):
    code = main(["train", "--data.shards", str(tmp_path / "nope")])
    assert code == 2 and "manifest.json: not found" in capsys.readouterr().err


def test_checkpoints_are_scored_and_logged_when_eval_files_are_set(shards, tmp_path):
    analogies = tmp_path / "analogies.txt"
    analogies.write_text(": section\nw1 w2 w3 w4\nw5 w6 w7 w8\n")
    similarity = tmp_path / "similarity.tsv"
    similarity.write_text("w1\tw2\t5\nw3\tw9\t1\nw4\tw8\t3\n")
    run = tmp_path / "run"
    cfg = config(shards, run, eval={"analogies": str(analogies), "similarity": str(similarity)},
                 checkpoint={"every_steps": 50})
    assert train(cfg) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scored = [r for r in rows if "analogy/total" in r]
    assert [r["step"] for r in scored] == [50, 100, 138]
    assert all(0 <= r["analogy/total"] <= 1 and "similarity/spearman" in r for r in scored)


@pytest.mark.parametrize("backend", ["torch", "cpu-kernel"])
def test_a_diverging_run_stops_with_an_error_and_saves_no_bad_tables(shards, tmp_path, backend):
    """A learning rate far too large turns the tables to NaN: the run must stop non-zero, name
    the cause, and leave no checkpoint of non-finite tables behind."""
    run = tmp_path / "run"
    code = main(["train", "--data.shards", str(shards), "--train.run_dir", str(run),
                 "--train.backend", backend, "--optim.alpha", "1000", "--optim.damping", "0",
                 "--train.threads", "1", "--data.loader_workers", "0", "--wandb", "disabled"])
    assert code == 3
    for step in checkpoint.complete_steps(run):
        tables = torch.load(step / "tables.pt", weights_only=True)
        assert all(torch.isfinite(t).all() for t in tables.values()), step


def test_settings_that_cannot_be_finite_are_refused():
    with pytest.raises(UsageError, match="optim.alpha"):
        from_dict(Config, {"optim": {"alpha": float("inf")}})
    with pytest.raises(UsageError, match="sync.curvature_weight"):
        from_dict(Config, {"sync": {"curvature_weight": float("nan")}})
