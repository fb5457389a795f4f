"""Nothing hangs, nothing lies, nothing is lost: bad shards, full disks, shared run directories,
read-only paths, odd text. Real files, real processes and signals, a bound on every wait."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pytest
import torch

from tests.helpers import config, prepare, write_zipf_corpus
from tests.test_prepare import leftovers, random_corpus
from w2vdist.cli import main
from w2vdist.corpus.shards import Manifest, ShardReader
from w2vdist.corpus.vocab import Vocab
from w2vdist.errors import UsageError
from w2vdist.training import checkpoint
from w2vdist.training.loop import train

ROOT = Path(__file__).resolve().parent.parent
TRAIN = ["--model.dim", "16", "--optim.batch_words", "400", "--train.backend", "torch",
         "--train.threads", "1", "--checkpoint.every_minutes", "0", "--wandb.mode", "disabled"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    return prepare(write_zipf_corpus(root / "corpus.txt", 2000), root / "shards", 4000)


def w2vdist(*args: str, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The CLI in its own process, killed (and the test failed) if it outlives `timeout`."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "w2vdist", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=cwd or ROOT)


def one_line(result: subprocess.CompletedProcess) -> str:
    """The last stderr line, after checking it is the only message (progress bars aside)."""
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("w2vdist")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return lines[0]


def copy_shards(shards: Path, out: Path) -> Path:
    shutil.copytree(shards, out)
    return out


# --- 1. bad shards ---------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "deleted", "zero samples"])
def test_a_damaged_shard_set_is_refused_before_training(shards, tmp_path, damage):
    bad = copy_shards(shards, tmp_path / "bad")
    first = bad / "shard-000000.tar"
    if damage == "truncated":
        os.truncate(first, first.stat().st_size // 2)
    elif damage == "deleted":
        first.unlink()
    else:
        manifest = json.loads((bad / "manifest.json").read_text())
        manifest["shards"][0]["samples"] = 0
        (bad / "manifest.json").write_text(json.dumps(manifest))
    start = time.monotonic()
    result = w2vdist("train", "--data.shards", str(bad), "--train.run_dir", str(tmp_path / "r"),
                     *TRAIN, timeout=60)
    assert result.returncode == 2 and time.monotonic() - start < 60
    assert "shard-000000.tar" in one_line(result)
    assert not checkpoint.complete_steps(tmp_path / "r")


def _scramble(path: Path) -> None:
    """Same size, random bytes from the second 512-byte block on: passes the size check,
    fails while streaming."""
    data = bytearray(path.read_bytes())
    data[512:] = os.urandom(len(data) - 512)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_shard_that_fails_while_streaming_stops_the_run_naming_it(shards, tmp_path, workers):
    bad = copy_shards(shards, tmp_path / "bad")
    for shard in bad.glob("shard-*.tar"):
        _scramble(shard)
    start = time.monotonic()
    result = w2vdist("train", "--data.shards", str(bad), "--train.run_dir", str(tmp_path / "r"),
                     "--data.loader_workers", workers, *TRAIN, timeout=90)
    assert result.returncode == 2 and time.monotonic() - start < 90
    assert "unreadable shard" in one_line(result) and ".tar" in one_line(result)
    # No loader worker outlives the trainer.
    time.sleep(1)
    left = subprocess.run(["pgrep", "-f", str(tmp_path / "r")], capture_output=True, text=True)
    assert left.stdout.strip() == ""


def _flip_a_token_id(corpus: Path, index: int) -> Path:
    """Damage shard `index` so that it still reads: the high byte of its first sample's sixth
    token id flipped, the file's size unchanged."""
    shard = Manifest.load(corpus).shard_paths(corpus)[index]
    sample = ShardReader(shard, Manifest.load(corpus).shards[index].samples)
    (offset, _), _ = sample.where[0]
    data = bytearray(Path(shard).read_bytes())
    header = 10 + int.from_bytes(data[offset + 8 : offset + 10], "little")  # the .npy's
    data[offset + header + 4 * 5 + 3] ^= 0x40
    Path(shard).write_bytes(bytes(data))
    return Path(shard)


def test_a_token_id_past_the_vocabulary_stops_the_run_naming_its_shard(shards, tmp_path):
    """A damaged shard that still reads would index past the tables: the loader names it."""
    bad = copy_shards(shards, tmp_path / "bad")
    shard = _flip_a_token_id(bad, 1)
    result = w2vdist("train", "--data.shards", str(bad), "--train.run_dir", str(tmp_path / "r"),
                     "--data.loader_workers", "1", *TRAIN, timeout=90)
    vocab = Manifest.load(bad).vocab_size
    assert result.returncode == 2
    assert re.fullmatch(rf"w2vdist: {shard}: unreadable shard \(sample 0 holds token id "
                        rf"\d+, but the vocabulary has {vocab:,} words\)", one_line(result)), \
        one_line(result)


def test_verify_lists_every_damaged_shard_and_passes_a_sound_copy(shards, tmp_path):
    """`w2vdist verify` on a sound copy, then on one with a shard truncated, one deleted, one
    changed in place and, in a manifest without SHA-256 (as older ones are), a token id past
    the vocabulary: each named on its own line, exit status 1."""
    corpus = copy_shards(shards, tmp_path / "corpus")
    manifest = Manifest.load(corpus)
    assert len(manifest.shards) >= 4
    sound = w2vdist("verify", str(corpus))
    assert sound.returncode == 0, sound.stderr
    assert sound.stdout.startswith(f"verified {len(manifest.shards)} shards in {corpus} (")
    assert f"{manifest.total_tokens:,} tokens" in sound.stdout

    paths = [Path(p) for p in manifest.shard_paths(corpus)]
    os.truncate(paths[0], paths[0].stat().st_size - 512)
    paths[1].unlink()
    data = bytearray(paths[2].read_bytes())
    data[len(data) // 2] ^= 1
    paths[2].write_bytes(bytes(data))
    found = w2vdist("verify", str(corpus), "--workers", "2")
    assert found.returncode == 1
    assert found.stdout.splitlines() == [
        f"{paths[0]}: {paths[0].stat().st_size:,} bytes, but the manifest says "
        f"{manifest.shards[0].bytes:,} (truncated or replaced; run prepare again)",
        f"{paths[1]}: no such file or directory",
        f"{paths[2]}: its SHA-256 is not the manifest's (damaged or replaced since prepare)",
    ]
    assert one_line(found) == (f"w2vdist: 3 of {len(manifest.shards)} shards in {corpus} do not "
                               "match manifest.json; prepare them again or copy them anew")

    older = copy_shards(shards, tmp_path / "older")
    listed = json.loads((older / "manifest.json").read_text())
    for shard in listed["shards"]:
        del shard["sha256"]
    (older / "manifest.json").write_text(json.dumps(listed))
    flipped = _flip_a_token_id(older, 3)
    found = w2vdist("verify", str(older))
    assert found.returncode == 1
    assert re.fullmatch(rf"{flipped}: unreadable shard \(sample 0 holds token id \d+, but the "
                        rf"vocabulary has {manifest.vocab_size:,} words\)\n", found.stdout), \
        found.stdout


def test_verify_refuses_a_vocabulary_or_manifest_that_does_not_fit(shards, tmp_path):
    corpus = copy_shards(shards, tmp_path / "corpus")
    vocab = corpus / "vocab.tsv"
    vocab.write_text(vocab.read_text().replace("\t", "\t1", 1))
    found = w2vdist("verify", str(corpus))
    assert found.returncode == 2
    assert one_line(found) == f"w2vdist: {vocab}: does not match manifest.json's vocab_hash"
    shutil.copy(shards / "vocab.tsv", vocab)
    listed = json.loads((corpus / "manifest.json").read_text())
    listed["total_tokens"] += 1
    (corpus / "manifest.json").write_text(json.dumps(listed))
    found = w2vdist("verify", str(corpus))
    assert found.returncode == 2 and "total_tokens" in one_line(found)


def test_a_bad_shard_under_two_ranks_stops_both_within_seconds(shards, tmp_path):
    bad = copy_shards(shards, tmp_path / "bad")
    _scramble(sorted(bad.glob("shard-*.tar"))[0])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "w2vdist", "train", "--data.shards", str(bad), "--train.run_dir",
           str(tmp_path / "r"), "--data.loader_workers", "1", *TRAIN]
    start = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode != 0
    assert time.monotonic() - start < 100  # not sync.timeout_seconds (600 s)
    assert "unreadable shard" in result.stderr


# --- 3. staging folders of killed runs --------------------------------------------------------


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_leaves_no_output(tmp_path: Path, signum: int, code: int) -> None:
    text = tmp_path / "big.txt"
    text.write_text(random_corpus(1, 40_000) * 4)  # takes a few seconds to prepare
    out = tmp_path / "out"
    argv = ["prepare", str(text), "-o", str(out), "--workers", "2", "--min-count", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "w2vdist", *argv], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".out.tmp-*")) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.3)  # into the first pass, worker processes starting or running
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert leftovers(out) == []


def test_a_killed_prepare_worker_stops_prepare_at_once(tmp_path):
    """The out-of-memory killer takes a worker: prepare says so and exits 2, leaving nothing,
    instead of waiting for its piece forever (as it did with a multiprocessing.Pool)."""
    corpus = write_zipf_corpus(tmp_path / "c.txt", 300_000)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "w2vdist", "prepare", str(corpus), "-o",
                             str(out), "--workers", "2"], stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)
    deadline = time.monotonic() + 60
    workers: list[str] = []
    while not workers:
        assert time.monotonic() < deadline and proc.poll() is None, "no worker started"
        time.sleep(0.05)
        found = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "spawn_main"],
                               capture_output=True, text=True)
        workers = found.stdout.split()
    os.kill(int(workers[0]), signal.SIGKILL)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            subprocess.run(["pkill", "-KILL", "-P", str(proc.pid)])
            proc.kill()
    assert proc.returncode == 2, err[-2000:]
    assert "prepare: a worker process died" in err and "Traceback" not in err
    assert not out.exists() and list(tmp_path.glob(".out.tmp-*")) == []


def test_prepare_reruns_after_a_hard_kill_and_removes_the_stale_staging(tmp_path):
    corpus = write_zipf_corpus(tmp_path / "c.txt", 60_000)
    out = tmp_path / "out"
    stale = tmp_path / f".out.tmp-{os.getpid()}-0000"  # a container restart reuses PIDs
    stale.mkdir()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "w2vdist", "prepare", str(corpus), "-o",
                             str(out), "--workers", "1"], env=env, cwd=ROOT)
    deadline = time.monotonic() + 60
    while not [p for p in tmp_path.glob(".out.tmp-*") if p != stale] and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert main(["prepare", str(corpus), "-o", str(out), "--workers", "1"]) == 0
    assert Manifest.load(out).total_tokens > 0
    assert list(tmp_path.glob(".out.tmp-*")) == []


# --- 4. a full disk during a checkpoint ------------------------------------------------------


def test_a_full_disk_keeps_earlier_checkpoints_and_the_resume_works(shards, small_disk,
                                                                   monkeypatch, capfd):
    disk, real = small_disk
    run = disk / "run"
    # 2 tables x 400 words x 100 dims: 320 KB a checkpoint, so the fourth fills 1 MiB.
    cfg = config(shards, run, model={"dim": 100}, checkpoint={"every_steps": 5, "keep": 5})
    if not real:
        saves = iter(range(100))
        original = torch.save

        def fill_after_three(obj, path, *args, **kwargs):
            if "tables" in str(path) and next(saves) >= 3:
                raise OSError(28, "No space left on device", str(path))
            return original(obj, path, *args, **kwargs)

        monkeypatch.setattr(torch, "save", fill_after_three)
    with pytest.raises(UsageError, match="no space left on device") as failed:
        train(cfg)
    assert "the earlier checkpoints are kept" in str(failed.value)
    kept = checkpoint.complete_steps(run)
    assert kept and all(checkpoint.load(p) for p in kept)
    assert not list((run / "checkpoints").glob(".*tmp-*"))
    if real:
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
    else:
        monkeypatch.undo()
    capfd.readouterr()
    assert train(cfg) == 0
    assert "resuming from" in capfd.readouterr().err


def test_a_kill_while_pruning_leaves_no_complete_folder_without_its_tables(
    shards, tmp_path, monkeypatch
):
    """Found by benchmarks/chaos.py: pruning removed files one by one, so a SIGKILL part way
    left a folder that still had its COMPLETE marker but no tables."""
    run = tmp_path / "run"
    real_rmtree = shutil.rmtree
    calls = []

    def killed_midway(path, *args, **kwargs):
        calls.append(path)
        Path(path, "tables.pt").unlink()  # the first file goes, then the process dies
        raise KeyboardInterrupt

    assert train(config(shards, run, checkpoint={"every_steps": 20}, train={"max_steps": 40})) == 0
    monkeypatch.setattr(shutil, "rmtree", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        train(config(shards, run, checkpoint={"every_steps": 20}, train={"max_steps": 60}))
    monkeypatch.setattr(shutil, "rmtree", real_rmtree)
    assert calls
    for path in checkpoint.complete_steps(run):
        checkpoint.load(path)  # every folder that counts as complete loads
    assert train(config(shards, run)) == 0  # and the run goes on


# --- 5. every reader verifies checkpoints ----------------------------------------------------


def test_export_eval_and_neighbors_refuse_a_corrupt_checkpoint(shards, tmp_path):
    run = tmp_path / "run"
    assert train(config(shards, run)) == 0
    newest = checkpoint.resolve(run)
    tables = bytearray((newest / "tables.pt").read_bytes())
    tables[-200] ^= 0xFF  # one float changed
    (newest / "tables.pt").write_bytes(bytes(tables))
    pairs = tmp_path / "p.tsv"
    pairs.write_text("w1\tw2\t1\nw3\tw4\t2\nw5\tw6\t3\n")
    for args in (["export", str(run), "-o", str(tmp_path / "v.txt")],
                 ["eval", str(run), "--eval.similarity", str(pairs)],
                 ["neighbors", str(run), "w1"]):
        result = w2vdist(*args)
        assert result.returncode == 2 and "corrupt checkpoint" in one_line(result), args
    assert not (tmp_path / "v.txt").exists()


# --- 6. one run per run directory ------------------------------------------------------------


def test_a_second_run_on_the_same_directory_is_refused_and_a_dead_owner_taken_over(
    shards, tmp_path
):
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.Popen(
        [sys.executable, "-m", "w2vdist", "train", "--data.shards", str(shards),
         "--train.run_dir", str(run), *TRAIN, "--train.epochs", "1000"],
        env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )
    try:
        log, deadline = run / "train.log", time.monotonic() + 60
        while not (log.exists() and "training torch backend" in log.read_text()):
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.1)
        second = w2vdist("train", "--data.shards", str(shards), "--train.run_dir", str(run),
                         *TRAIN, timeout=60)
        assert second.returncode == 2
        assert f"in use by the run of PID {first.pid} on" in one_line(second)
    finally:
        first.kill()
        first.wait(timeout=30)
    # The owner died without cleaning up: its lock went with it.
    third = w2vdist("train", "--data.shards", str(shards), "--train.run_dir", str(run), *TRAIN,
                    "--train.epochs", "1000", "--train.max_steps", "3", timeout=120)
    assert third.returncode == 0, third.stderr[-2000:]


# --- 7. OS errors and absurd sizes are one line ------------------------------------------------


def test_read_only_outputs_are_one_line_and_nothing_half_written(shards, tmp_path, read_only_dir):
    corpus = write_zipf_corpus(tmp_path / "c.txt", 100)
    result = w2vdist("prepare", str(corpus), "-o", str(read_only_dir / "out"))
    assert result.returncode == 2 and f"{read_only_dir}: not writable" in one_line(result)

    result = w2vdist("train", "--data.shards", str(shards), "--train.run_dir",
                     str(read_only_dir / "run"), *TRAIN)
    assert result.returncode != 0 and str(read_only_dir) in one_line(result)

    run = tmp_path / "run"
    assert train(config(shards, run, train={"max_steps": 3})) == 0
    result = w2vdist("export", str(run), "-o", str(read_only_dir / "v.bin"))
    assert result.returncode == 2 and f"{read_only_dir}: not writable" in one_line(result)
    # Vectors writable, counts not: neither is written.
    result = w2vdist("export", str(run), "-o", str(tmp_path / "v.bin"), "--counts",
                     str(read_only_dir / "counts.txt"))
    assert result.returncode == 2 and f"{read_only_dir}: not writable" in one_line(result)
    assert not (tmp_path / "v.bin").exists()


def test_absurd_sizes_are_refused_before_allocating(shards, tmp_path):
    lying = tmp_path / "lying.txt"
    lying.write_text("999999999999 3\nthe 0.1 0.2 0.3\n")
    pairs = tmp_path / "p.tsv"
    pairs.write_text("a\tb\t1\n")
    result = w2vdist("eval", str(lying), "--eval.similarity", str(pairs))
    assert result.returncode == 2 and "the header promises 999,999,999,999 words" in one_line(result)

    result = w2vdist("train", "--data.shards", str(shards), "--train.run_dir",
                     str(tmp_path / "r"), "--model.dim", "1e12", "--wandb.mode", "disabled")
    assert result.returncode == 2 and "model.dim 1,000,000,000,000" in one_line(result)
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_memory_check_counts_the_last_merge_and_the_ranks_sharing_a_host(monkeypatch):
    """Tables that fit one process, but not four copies (2 CPU ranks under `local`, each with
    its last merge) on this host, are refused before allocating, saying why."""
    from w2vdist.training.config import Config
    from w2vdist.training.distributed import World, init
    from w2vdist.training.spec import _check_memory

    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    vocab = 1000
    cfg = Config()
    cfg.model.dim = int(0.4 * have / (2 * vocab * 4))  # one copy: 40% of the host
    cfg.sync.strategy = "local"
    one, two = (World(0, n, 0, torch.device("cpu"), "host") for n in (1, 2))
    _check_memory(cfg, one, vocab)
    _check_memory(cfg, two, vocab)  # 80%: one rank here with its last merge
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun's count of the ranks on this host
    assert init("cpu", 5).local_size == 2
    both_here = World(0, 2, 0, torch.device("cpu"), "host", local_size=2)
    with pytest.raises(UsageError, match="and their last merge .* over 2 ranks on this host"):
        _check_memory(cfg, both_here, vocab)
    cfg.sync.strategy = "exact"
    _check_memory(cfg, both_here, vocab)  # exact keeps no merge: 80%


# --- 8. text that is not what it seems --------------------------------------------------------


def test_text_in_another_encoding_stops_prepare_naming_the_place(tmp_path):
    latin = tmp_path / "latin.txt"
    latin.write_bytes(("le café est très bon près de la forêt\n" * 300).encode("latin-1"))
    result = w2vdist("prepare", str(latin), "-o", str(tmp_path / "out"), "--min-count", "1")
    line = one_line(result)
    assert result.returncode == 2
    assert f"{latin}:" in line and "not valid utf-8, the first at byte 6" in line
    assert "--encoding" in line
    assert main(["prepare", str(latin), "-o", str(tmp_path / "ok"), "--min-count", "1",
                 "--encoding", "latin-1"]) == 0
    assert "café" in Vocab.load(tmp_path / "ok" / "vocab.tsv").words
    assert Manifest.load(tmp_path / "ok").stats["encoding"] == "latin-1"


def test_binary_files_are_refused_and_compression_is_known_by_content(tmp_path):
    result = w2vdist("prepare", "/bin/ls", "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and "/bin/ls: not text (a NUL byte" in one_line(result)
    disguised = tmp_path / "plain.txt"
    disguised.write_bytes(gzip.compress(b"alpha beta gamma\n" * 50))
    assert main(["prepare", str(disguised), "-o", str(tmp_path / "ok"), "--min-count", "1"]) == 0
    assert sorted(Vocab.load(tmp_path / "ok" / "vocab.tsv").words) == ["alpha", "beta", "gamma"]
    named = tmp_path / "named.gz"  # a name that lies the other way: plain text
    named.write_bytes(b"delta epsilon\n" * 20)
    assert main(["prepare", str(named), "-o", str(tmp_path / "ok2"), "--min-count", "1"]) == 0
    assert sorted(Vocab.load(tmp_path / "ok2" / "vocab.tsv").words) == ["delta", "epsilon"]


def test_words_with_combining_marks_stay_whole_and_nfc_is_recorded(tmp_path):
    text = " ".join(["हिन्दी", "résumé", unicodedata.normalize("NFD", "résumé"), "İstanbul"])
    corpus = tmp_path / "marks.txt"
    corpus.write_text((text + "\n") * 5, encoding="utf-8")
    assert main(["prepare", str(corpus), "-o", str(tmp_path / "out"), "--min-count", "1"]) == 0
    words = Vocab.load(tmp_path / "out" / "vocab.tsv").words
    assert sorted(words) == sorted(["हिन्दी", "résumé", "i̇stanbul"])
    assert Manifest.load(tmp_path / "out").tokenizer["normalize"] == "nfc"


def test_writes_that_fail_for_space_name_what_was_being_written(tmp_path):
    """A file-size limit fails the write as a full disk or quota does (EFBIG, ENOSPC and
    EDQUOT carry no file name): synth, prepare and export each say which output, in one
    line, exit 1, and leave nothing beside it."""
    import resource

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    def run(*argv: str) -> str:
        done = subprocess.run([sys.executable, "-m", "w2vdist", *argv], capture_output=True,
                              text=True, timeout=300, preexec_fn=limited, check=False)
        assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
        return done.stderr

    write_zipf_corpus(tmp_path / "big.txt", 40_000)
    out = tmp_path / "out"
    out.mkdir()
    assert run("synth", str(out / "syn")) == \
        f"w2vdist: {out / 'syn' / 'corpus.txt'}: File too large\n"
    assert run("prepare", str(tmp_path / "big.txt"), "-o", str(out / "shards"),
               "--min-count", "1") == f"w2vdist: {out / 'shards'}: File too large\n"
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("30000 20\n" + "".join(f"w{i} " + " 0.125" * 20 + "\n"
                                             for i in range(30_000)))
    assert run("export", str(vectors), "-o", str(out / "v.txt")) == \
        f"w2vdist: {out / 'v.txt'}: File too large\n"
    assert list(out.iterdir()) == []  # synth takes back the folder it made
    # Into a folder that was there: the corpus fits, the analogies (60 pairs a relation) do
    # not; the folder and what was in it stay, the corpus written first goes.
    (out / "syn").mkdir()
    (out / "syn" / "notes.txt").write_text("mine\n")
    assert run("synth", str(out / "syn"), "--sentences", "1000", "--pairs", "60") == \
        f"w2vdist: {out / 'syn' / 'analogies.txt'}: File too large\n"
    assert [p.name for p in (out / "syn").iterdir()] == ["notes.txt"]
