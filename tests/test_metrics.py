"""Metrics and logging, checked against the files a real offline wandb run writes."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import wandb

from w2vdist import logs
from w2vdist.settings import from_dict
from w2vdist.training import metrics
from w2vdist.training.config import Config

from tests.helpers import offline_runs

WANDB_VARS = ("API_KEY", "MODE", "PROJECT", "ENTITY", "NAME", "TAGS", "RUN_ID", "RESUME", "DIR",
              "IDENTITY_TOKEN_FILE", "BASE_URL", "DISABLED")


def _isolate(mp: pytest.MonkeyPatch, home: Path) -> None:
    """No API key, netrc or wandb settings of the user's can be seen; wandb stays quiet."""
    for name in WANDB_VARS:
        mp.delenv(f"WANDB_{name}", raising=False)
    mp.setenv("HOME", str(home))
    mp.setenv("NETRC", str(home / "netrc"))
    mp.setenv("WANDB_CONFIG_DIR", str(home / "wandb-config"))
    mp.setenv("WANDB_CACHE_DIR", str(home / "wandb-cache"))
    mp.setenv("WANDB_DATA_DIR", str(home / "wandb-data"))
    mp.setenv("WANDB_SILENT", "true")
    mp.setenv("WANDB_X_DISABLE_STATS", "true")  # no system-metrics sampler: faster start/stop


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _isolate(monkeypatch, tmp_path / "home")
    yield monkeypatch
    wandb.teardown()  # forget settings read from this test's environment


def _cfg(**wandb_fields) -> Config:
    return from_dict(Config, {"model": {"dim": 37}, "wandb": wandb_fields})


# --- one run and its resumption, shared by the tests below (wandb start-up is slow) ----------


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("resumed")
    run_dir = tmp / "my-run"
    with pytest.MonkeyPatch.context() as mp:
        _isolate(mp, tmp / "home")
        mp.setenv("WANDB_PROJECT", "from-env")  # an explicit config project wins over it
        cfg = _cfg(mode="offline", project="w2v-test", tags=["a", "b"])
        first = metrics.build_metrics(cfg, run_dir, 0, None, total_words=1000, start_words=0)
        for step in (1, 2, 3):
            first.progress(step * 100, loss=3.0 - step, words_per_s=500.0, extra={"lr": 0.02})
            first.log(step, {"loss": 3.0 - step, "lr": 0.025 / step,
                             "words_per_s": np.float32(500.0)})
        first.log(3, {"analogy/total": 0.25})  # same step: merged into the same row
        first.close()
        second = metrics.build_metrics(cfg, run_dir, 0, first.run_id, 1000, 300)
        second.log(4, {"loss": 0.5})
        second.log(5, {"loss": 0.25, "similarity/spearman": 0.6})
        second.close()
    return run_dir, first, second


def test_offline_run_holds_logged_steps_values_and_config(resumed):
    run_dir, first, _ = resumed
    run = offline_runs(run_dir)[0]
    assert run["run"].run_id == first.run_id
    assert run["run"].project == "w2v-test"
    assert run["run"].display_name == "my-run"
    assert list(run["run"].tags) == ["a", "b"]
    assert run["config"]["model"]["dim"] == 37
    assert run["config"]["wandb"]["mode"] == "offline"
    assert run["rows"] == {
        1: {"loss": 2.0, "lr": 0.025, "words_per_s": 500.0},
        2: {"loss": 1.0, "lr": 0.0125, "words_per_s": 500.0},
        3: {"loss": 0.0, "lr": pytest.approx(0.025 / 3), "words_per_s": 500.0,
            "analogy/total": 0.25},
    }


def test_resume_continues_the_same_run_at_later_steps(resumed):
    run_dir, first, second = resumed
    runs = offline_runs(run_dir)
    assert len(runs) == 2
    assert second.run_id == first.run_id
    assert [r["run"].run_id for r in runs] == [first.run_id] * 2
    assert runs[1]["rows"] == {4: {"loss": 0.5}, 5: {"loss": 0.25, "similarity/spearman": 0.6}}


def test_metrics_jsonl_has_every_log_call_of_both_sessions(resumed):
    run_dir, _, _ = resumed
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 3, 4, 5]
    assert lines[0]["words_per_s"] == 500.0 and lines[3]["analogy/total"] == 0.25
    assert all(isinstance(line["time"], float) for line in lines)


# --- ranks, modes and environment ----------------------------------------------------------


def test_other_ranks_write_nothing(tmp_path: Path, isolated):
    run_dir = tmp_path / "run"
    m = metrics.build_metrics(_cfg(mode="offline"), run_dir, 3, "keepme", 1000, 0)
    assert isinstance(m, metrics.NullMetrics) and m.run_id == "keepme"
    m.progress(10, 1.0, 5.0)
    m.log(1, {"loss": 1.0})
    m.close()
    assert not run_dir.exists()


def test_disabled_writes_jsonl_but_no_wandb_files(tmp_path: Path, isolated):
    m = metrics.build_metrics(_cfg(mode="disabled"), tmp_path, 0, "old-id", 1000, 0)
    m.log(1, {"loss": 1.0})
    m.close()
    assert m.run_id == "old-id"  # kept, so re-enabling W&B later continues the same run
    assert not (tmp_path / "wandb").exists()
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["loss"] == 1.0


def test_a_line_a_killed_run_left_unfinished_does_not_swallow_the_next(tmp_path: Path,
                                                                       isolated):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "lo')
    m = metrics.build_metrics(_cfg(mode="disabled"), tmp_path, 0, None, 1000, 0)
    m.log(2, {"loss": 0.5})
    m.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert lines[:2] == ['{"step": 1, "loss": 1.0}', '{"step": 2, "lo']
    assert json.loads(lines[2])["loss"] == 0.5 and len(lines) == 3


def test_auto_without_api_key_runs_offline(tmp_path: Path, isolated):
    assert metrics.resolve_mode("auto") == "offline"
    m = metrics.build_metrics(_cfg(mode="auto"), tmp_path, 0, None, 1000, 0)
    m.close()
    assert len(offline_runs(tmp_path)) == 1


def test_online_that_cannot_start_falls_back_to_offline(tmp_path: Path, isolated, w2vdist_log):
    """No API key stands in for no network: either way wandb.init fails and training goes on."""
    m = metrics.build_metrics(_cfg(mode="online"), tmp_path, 0, "run-42", 1000, 0)
    m.log(1, {"loss": 1.0})
    m.close()
    assert "logging offline" in w2vdist_log.text
    (run,) = offline_runs(tmp_path)
    assert run["run"].run_id == "run-42" and run["rows"] == {1: {"loss": 1.0}}


def test_wandb_mode_env_decides_auto_only(isolated):
    isolated.setenv("WANDB_MODE", "disabled")
    assert metrics.resolve_mode("auto") == "disabled"
    assert metrics.resolve_mode("offline") == "offline"
    isolated.setenv("WANDB_MODE", "dryrun")
    assert metrics.resolve_mode("auto") == "offline"


@pytest.mark.parametrize("source", ["netrc", "env"])
def test_auto_with_api_key_means_online(tmp_path: Path, isolated, source: str):
    """In a fresh process: wandb caches credentials it has found for the whole process."""
    key = "k" * 40
    if source == "netrc":
        netrc = Path(os.environ["NETRC"])
        netrc.parent.mkdir(parents=True, exist_ok=True)
        netrc.write_text(f"machine api.wandb.ai\n  login user\n  password {key}\n")
        netrc.chmod(0o600)
    else:
        isolated.setenv("WANDB_API_KEY", key)
    out = subprocess.run(
        [sys.executable, "-c", "from w2vdist.training.metrics import resolve_mode; print(resolve_mode('auto'))"],
        capture_output=True, text=True, check=True, timeout=60,
    )
    assert out.stdout.strip() == "online"


def test_wandb_env_fills_fields_the_config_leaves_unset(tmp_path: Path, isolated):
    isolated.setenv("WANDB_PROJECT", "env-project")
    isolated.setenv("WANDB_NAME", "env-name")
    m = metrics.build_metrics(_cfg(mode="offline"), tmp_path, 0, None, 1000, 0)
    m.close()
    (run,) = offline_runs(tmp_path)
    assert (run["run"].project, run["run"].display_name) == ("env-project", "env-name")


# --- progress bar --------------------------------------------------------------------------


def test_progress_off_a_terminal_prints_whole_lines(tmp_path: Path, isolated, capsys):
    isolated.setattr(metrics, "FILE_REFRESH_SECONDS", 0.0)
    m = metrics.build_metrics(_cfg(mode="disabled"), tmp_path, 0, None, 2_000_000, 1_000_000)
    m.progress(1_500_000, loss=2.5, words_per_s=250_000.0, extra={"lr": 0.0125})
    m.close()
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert lines[0].startswith("train:  50%")  # resumed half-way: the bar starts there
    assert "75%" in lines[1] and "250kword/s" in lines[1] and "loss=2.5" in lines[1]
    assert "00:02" in lines[1]  # ETA: 0.5M words left at 250k words/s


# --- logging -------------------------------------------------------------------------------


@pytest.fixture
def reset_logging():
    yield
    logger = logging.getLogger(logs.LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logs.set_step(None)


def test_rank0_logs_info_to_stderr_and_train_log(tmp_path: Path, capsys, reset_logging):
    logs.setup_logging(tmp_path, rank=0, world_size=2)
    child = logging.getLogger("w2vdist.training.loop")
    child.info("starting")
    logs.set_step(42)
    child.warning("slow sync")
    text = (tmp_path / "train.log").read_text()
    assert capsys.readouterr().err == text
    first, second = text.splitlines()
    assert "[rank 0/2 " in first and first.endswith("] INFO starting")
    assert second.endswith("] WARNING [step 42] slow sync")


def test_other_ranks_log_warnings_only(tmp_path: Path, capsys, reset_logging):
    log = logs.setup_logging(tmp_path, rank=1, world_size=2)
    log.info("progress")
    log.error("disk full")
    err = capsys.readouterr().err
    assert "progress" not in err and "[rank 1/2 " in err and "ERROR disk full" in err
    assert not (tmp_path / "train.log").exists()
