"""Helpers shared by test modules: small corpora, shards, configs, checkpoints, wandb files."""

from __future__ import annotations

import json
import socket
import struct
import zlib
from dataclasses import astuple
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from wandb.proto import wandb_internal_pb2 as pb

from w2vdist.cli import main
from w2vdist.corpus.shards import encode_sample
from w2vdist.corpus.vocab import Vocab
from w2vdist.settings import flatten, from_dict, to_dict
from w2vdist.training import checkpoint
from w2vdist.training.checkpoint import Checkpointer, TrainState
from w2vdist.training.config import CheckpointConfig, Config
from w2vdist.training.data import Position
from w2vdist.training.spec import Plan, RunSpec


def write_zipf_corpus(path: Path, lines: int, seed: int = 0, vocab: int = 400) -> Path:
    """Zipfian text with some co-occurrence structure: each line draws from one of 8 topics."""
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(vocab)])
    ranks = np.arange(1, vocab + 1)
    # Each topic's cumulative distribution, made and searched as `rng.choice(vocab, n, p=p)`
    # does, so that the text is the same as that call's, about six times faster.
    cdfs = []
    for topic in range(8):
        p = 1.0 / ranks * np.where(ranks % 8 == topic, 6.0, 1.0)
        cdf = (p / p.sum()).cumsum()
        cdfs.append(cdf / cdf[-1])
    with open(path, "w") as f:
        for _ in range(lines):
            cdf = cdfs[rng.integers(8)]
            ids = cdf.searchsorted(rng.random(rng.integers(5, 30)), side="right")
            f.write(" ".join(words[ids]) + "\n")
    return path


def prepare(corpus: Path, out: Path, shard_tokens: int = 8000) -> Path:
    code = main(
        ["prepare", str(corpus), "-o", str(out), "--min-count", "2",
         "--shard-tokens", str(shard_tokens), "--block-tokens", "1000", "--workers", "1"]
    )
    assert code == 0
    return out


def settings(shards: Path, run_dir: Path, **sections) -> dict[str, dict[str, Any]]:
    """A small, fast torch run's settings as a tree, `sections` overriding them."""
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
    return tree


def config(shards: Path, run_dir: Path, **sections) -> Config:
    return from_dict(Config, settings(shards, run_dir, **sections))


def flags(shards: Path, run_dir: Path, **sections) -> list[str]:
    """The same settings as `w2vdist train` flags."""
    return [arg for key, value in flatten(settings(shards, run_dir, **sections)).items()
            for arg in (f"--{key}", str(value))]


def checkpoint_info(path: Path) -> dict[str, Any]:
    """The newest checkpoint of a run directory (or one step folder), as plain values."""
    found = checkpoint.load(checkpoint.resolve(path))
    state, spec = found.state, found.spec
    return {
        "step": state.step,
        "words": state.step * spec.plan.words_per_step,
        "total_steps": spec.plan.total_steps,
        "world_size": spec.world_size,
        "wandb_run_id": state.wandb_run_id,
        "rng": state.rng,
        "data": [astuple(p) for p in state.data],
        "streams": state.streams,
        "config": to_dict(spec.config),
    }


WORDS = ["the", "of", "Ünïcode", "日本語", "naïve", "x", "ελληνικά", "emoji🙂"]


def write_run(
    run_dir: Path, words: list[str], dim: int = 6, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A run directory holding one real checkpoint; returns its (input, output) tables."""
    gen = torch.Generator().manual_seed(seed)
    inp, out = torch.randn(len(words), dim, generator=gen), torch.randn(
        len(words), dim, generator=gen
    )
    vocab = Vocab(list(words), np.arange(len(words), 0, -1, dtype=np.int64) * 10)
    run_dir.mkdir(parents=True, exist_ok=True)
    vocab.save(run_dir / "vocab.tsv")
    spec = RunSpec(Config(), 1, vocab.hash, Plan(7, 7, (1,)))
    state = TrainState(inp, out, step=7, rng=[torch.Generator().get_state()], data=[Position()])
    Checkpointer(run_dir, CheckpointConfig()).save(state, spec, run_dir / "vocab.tsv")
    return inp, out


def distance_c_read(path: Path) -> tuple[list[bytes], np.ndarray]:
    """Parse a binary file byte by byte the way word2vec.c's distance.c does."""
    data = path.read_bytes()
    header_end = data.index(b"\n")
    words_n, size = (int(x) for x in data[:header_end].split())  # fscanf("%lld") twice
    pos = header_end  # fscanf stops before the newline; the word loop skips it
    words, matrix = [], np.empty((words_n, size), dtype=np.float32)
    for b in range(words_n):
        word = bytearray()
        while True:  # fgetc until ' ' (or EOF); '\n' characters are read but not kept
            ch = data[pos : pos + 1]
            pos += 1
            if not ch or ch == b" ":
                break
            if ch != b"\n":
                word += ch
        words.append(bytes(word))
        for a in range(size):  # fread(&M[a + b * size], sizeof(float), 1, f)
            (matrix[b, a],) = struct.unpack("<f", data[pos : pos + 4])
            pos += 4
    return words, matrix


# --- reading wandb's transaction log (leveldb log format; wandb 0.31 ships no reader) --------

BLOCK = 32768


def read_records(path: Path) -> list[pb.Record]:
    data = path.read_bytes()
    ident, magic, _version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic) == (b":W&B", 0xBEE1)
    records, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # too little room left for a header: block trailer
            pos += BLOCK - pos % BLOCK
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        assert zlib.crc32(bytes([kind]) + chunk) == crc, f"{path}: bad checksum at {pos}"
        pending += chunk
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            record = pb.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def offline_runs(run_dir: Path) -> list[dict]:
    """Each offline run under run_dir/wandb, oldest first: run record, config, history rows,
    artifacts logged."""
    runs = []
    for path in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        records = read_records(path)
        (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        rows = {}
        for r in records:
            if r.WhichOneof("record_type") == "history":
                items = {i.key or "/".join(i.nested_key): json.loads(i.value_json)
                         for i in r.history.item}
                rows[r.history.step.num] = {k: v for k, v in items.items()
                                            if not k.startswith("_")}
        cfg = {u.key: json.loads(u.value_json) for u in run.config.update}
        artifacts = [{"type": r.artifact.type, "name": r.artifact.name,
                      "metadata": json.loads(r.artifact.metadata or "{}")}
                     for r in records if r.WhichOneof("record_type") == "artifact"]
        runs.append({"run": run, "config": cfg, "rows": rows, "artifacts": artifacts})
    # Directory names only order runs started in different seconds.
    return sorted(runs, key=lambda r: r["run"].start_time.ToNanoseconds())


def alias_probabilities(table: torch.Tensor) -> np.ndarray:
    """The exact distribution an alias table draws from."""
    t = table.numpy().astype(np.float64)
    keep = t[:, 0] / 2**31
    p = keep.copy()
    np.add.at(p, t[:, 1].astype(np.int64), 1 - keep)
    return p / len(t)


def free_port() -> int:
    """A TCP port on 127.0.0.1 free now (for a rendezvous endpoint)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_shard(path: Path, samples: list[tuple[np.ndarray, np.ndarray]]
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """A WebDataset shard of (tokens, sentence lengths) samples, as prepare writes them."""
    with wds.TarWriter(str(path)) as writer:
        for i, (tokens, lengths) in enumerate(samples):
            writer.write(encode_sample(f"{i:09d}", tokens, lengths))
    return samples


def numbered_samples(count: int, first: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Samples of a few sentences each; sentence g (over all samples, from `first`) is
    g * 100 + 0, 1, ..."""
    rng = np.random.default_rng(first)
    out, g = [], first
    for _ in range(count):
        lengths = rng.integers(1, 30, size=rng.integers(2, 9)).astype(np.int32)
        tokens = np.concatenate([(g + k) * 100 + np.arange(n) for k, n in enumerate(lengths)])
        out.append((tokens.astype(np.int32), lengths))
        g += len(lengths)
    return out
