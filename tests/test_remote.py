"""Shards at a URL: a real HTTP server on localhost and a real fetch command; each rank copies
the shards it reads into the cache, once, and trains as on the local copy."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from w2vdist.cli import main
from w2vdist.corpus.remote import Remote, is_url
from w2vdist.corpus.shards import Manifest
from w2vdist.errors import UsageError
from w2vdist.training.checkpoint import load_tables
from w2vdist.training.chunks import Rest, Stream
from w2vdist.training.data import assign_shards
from w2vdist.training.loop import run
from w2vdist.vectors.keyed import WordVectors
from w2vdist.vectors.word2vec import write_word2vec

from tests.helpers import config, prepare, write_zipf_corpus
from tests.test_distributed_train import env, torchrun_cmd, train_args


class Server:
    """A static file server on 127.0.0.1 that counts the paths asked for; `fail` answers
    some paths with an HTTP status (a count of times, then serves them), `slow` answers some
    after a number of seconds."""

    def __init__(self, root: Path) -> None:
        self.asked: Counter[str] = Counter()
        self.fail: dict[str, tuple[int, int]] = {}
        self.slow: dict[str, float] = {}
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                server.asked[self.path] += 1
                time.sleep(server.slow.get(self.path, 0))
                status, times = server.fail.get(self.path, (0, 0))
                if times:
                    server.fail[self.path] = (status, times - 1)
                    self.send_error(status)
                    return
                super().do_GET()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def shard_requests(self) -> Counter[str]:
        return Counter({p: n for p, n in self.asked.items() if p.endswith(".tar")})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Server]]:
    root = tmp_path_factory.mktemp("site")
    prepare(write_zipf_corpus(root / "corpus.txt", 1500), root / "shards", shard_tokens=5000)
    server = Server(root)
    yield root / "shards", server
    server.httpd.shutdown()


def test_a_run_on_shards_at_a_url_equals_the_run_on_them_here(
    served: tuple[Path, Server], tmp_path: Path
) -> None:
    shards, server = served
    here = run(config(shards, tmp_path / "here"))
    url = f"{server.url}/shards"
    server.asked.clear()
    cache = tmp_path / "cache"
    there = run(config(shards, tmp_path / "there", data={"shards": url,
                                                              "cache_dir": str(cache)}))
    assert here.exit_code == there.exit_code == 0
    for a, b in zip(load_tables(here.checkpoint)[1:], load_tables(there.checkpoint)[1:]):
        assert torch.equal(a, b)  # the torch backend on one process is bitwise reproducible
    names = sorted(p.name for p in shards.glob("*.tar"))
    assert len(names) > 2 and server.shard_requests() == {f"/shards/{n}": 1 for n in names}
    copies = [p for p in cache.rglob("*") if p.is_file()]
    assert sorted(p.name for p in copies if p.suffix == ".tar") == names
    for copy in copies:
        if copy.suffix == ".tar":
            assert copy.read_bytes() == (shards / copy.name).read_bytes()
    # Another run finds them in the cache: only the manifest is asked for again.
    server.asked.clear()
    assert run(config(shards, tmp_path / "again", data={"shards": url,
                                                            "cache_dir": str(cache)})).exit_code == 0
    assert server.asked == {"/shards/manifest.json": 1}


def test_two_ranks_copy_only_the_shards_each_reads_however_long_one_takes(
    served: tuple[Path, Server], tmp_path: Path
) -> None:
    shards, server = served
    server.asked.clear()
    manifest = Manifest.load(shards)
    names = [s.name for s in manifest.shards]
    # Rank 1's copies take twice the collectives' timeout: the ranks meet while it copies.
    server.slow = {f"/shards/{names[i]}": 6.0 for i in assign_shards(manifest, 2, shards)[1]}
    cache = tmp_path / "cache"
    try:
        done = subprocess.run(
            torchrun_cmd(2, *train_args(shards, tmp_path / "run", "--data.cache_dir", str(cache),
                                        "--sync.timeout_seconds", "3",
                                        "--data.shards", f"{server.url}/shards")),  # it wins
            env=env(), capture_output=True, text=True, timeout=180,
        )
    finally:
        server.slow = {}
    assert done.returncode == 0, done.stderr[-3000:]
    assert server.shard_requests() == {f"/shards/{n}": 1 for n in names}  # each by one rank
    # Rank 0 says where the copies stand once its own are done: all of its bytes, of both
    # ranks' (rank 1's shards are still on their way).
    said = re.search(r"fetching shards: 1 of 2 ranks done, ([\d.]+) of ([\d.]+) MB", done.stderr)
    assert said, done.stderr[-3000:]
    ranks = [sum(manifest.shards[i].bytes for i in mine) / 1e6
             for mine in assign_shards(manifest, 2, shards)]
    assert float(said[2]) == round(sum(ranks), 1) and ranks[0] - 0.1 <= float(said[1]) < sum(ranks)
    assert "trained" in done.stdout


def test_ranks_meet_while_one_works_and_all_stop_when_it_fails(tmp_path: Path) -> None:
    worker = Path(__file__).with_name("together_worker.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           str(worker), str(tmp_path)]
    done = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["waited"] >= 2.0  # rank 0 met rank 1 until its part was done
    assert ranks[0]["said"] == "copying: rank 1 failed (its error is in its output)"
    assert ranks[1]["said"] == "rank 1's own error"


def test_a_corpus_prepared_again_at_the_url_is_never_mixed_with_the_old(
    served: tuple[Path, Server], tmp_path: Path, w2vdist_log: pytest.LogCaptureFixture
) -> None:
    shards, server = served
    site = shards.parent / "changing"
    shutil.copytree(shards, site)
    remote = Remote.at(f"{server.url}/changing", "", 5)
    first = remote.cached(str(tmp_path))
    prepare(write_zipf_corpus(tmp_path / "other.txt", 1200, seed=3), tmp_path / "other",
            shard_tokens=5000)
    shutil.rmtree(site)
    shutil.copytree(tmp_path / "other", site)
    second = remote.cached(str(tmp_path))
    assert first != second and first.parent == second.parent
    assert (second / "vocab.tsv").read_bytes() == (site / "vocab.tsv").read_bytes()
    assert (first / "vocab.tsv").read_bytes() == (shards / "vocab.tsv").read_bytes()
    size = sum(f.stat().st_size for f in first.iterdir()) / 1e6
    assert f"{first.parent} holds 1 earlier version(s) of this corpus, {size:.1f} MB: remove " \
        "them once no run reads them" in w2vdist_log.text


def test_a_missing_or_cut_shard_is_named_and_nothing_half_copied_is_kept(
    served: tuple[Path, Server], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shards, server = served
    site = shards.parent / "broken"
    shutil.copytree(shards, site)
    (site / "shard-000001.tar").unlink()
    cache = tmp_path / "cache"
    flags = ["--data.shards", f"{server.url}/broken", "--data.cache_dir", str(cache),
             "--train.run_dir", str(tmp_path / "run"), "--wandb", "disabled",
             "--data.loader_workers", "0"]
    server.asked.clear()
    assert main(["train", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == f"w2vdist: {server.url}/broken/shard-000001.tar: HTTP 404 File not found"
    assert server.asked["/broken/shard-000001.tar"] == 1  # a 404 is not asked again
    shutil.copy(shards / "shard-000001.tar", site)
    with open(site / "shard-000002.tar", "r+b") as f:
        f.truncate(1000)
    shutil.rmtree(cache)  # shard-000002 came whole before
    assert main(["train", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    size = (shards / "shard-000002.tar").stat().st_size
    assert err == (f"w2vdist: {server.url}/broken/shard-000002.tar: 1,000 bytes, but the "
                   f"manifest says {size:,} (3 attempts)")
    left = sorted(p.name for p in cache.rglob("*") if p.is_file() and p.suffix == ".tar")
    assert "shard-000002.tar" not in left and not list(cache.rglob(".*tmp-*"))
    # A shard replaced at the URL by another of its size (a corpus prepared again but for its
    # manifest, a damaged copy): its bytes are not the manifest's.
    data = bytearray((shards / "shard-000002.tar").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (site / "shard-000002.tar").write_bytes(bytes(data))
    server.asked.clear()
    assert main(["train", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"w2vdist: {server.url}/broken/shard-000002.tar: its SHA-256 is not the "
                   "manifest's (changed since prepare, or damaged on the way) (3 attempts)")
    assert server.asked["/broken/shard-000002.tar"] == 3
    assert "shard-000002.tar" not in [p.name for p in cache.rglob("*.tar")]


def test_a_corpus_out_of_reach_trains_on_the_copy_fetched_before(
    served: tuple[Path, Server], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A requeued job resumes while the store is down: the cached copy serves, with a warning;
    a URL that refuses (403) still stops the run, and so does one never fetched."""
    shards, server = served

    def train(run: str, cache: str = "cache") -> tuple[int, str]:
        code = main(["train", "--data.shards", f"{server.url}/shards", "--data.cache_dir",
                     str(tmp_path / cache), "--train.run_dir", str(tmp_path / run),
                     "--wandb", "disabled", "--data.loader_workers", "0"])
        return code, capsys.readouterr().err

    assert train("first")[0] == 0
    server.asked.clear()
    server.fail["/shards/manifest.json"] = (503, 3)  # down for all three attempts
    code, err = train("down")
    assert code == 0 and server.shard_requests() == {}, err
    assert (f"{server.url}/shards/manifest.json: HTTP 503 Service Unavailable (3 attempts); "
            "training on its corpus as fetched at ") in err
    server.fail["/shards/manifest.json"] = (403, 1)
    code, err = train("refused")
    assert code == 2 and err.strip().splitlines()[-1] == \
        f"w2vdist: {server.url}/shards/manifest.json: HTTP 403 Forbidden"
    server.fail["/shards/manifest.json"] = (503, 3)
    code, err = train("never", cache="other")
    assert code == 2 and err.strip().splitlines()[-1] == (
        f"w2vdist: {server.url}/shards/manifest.json: HTTP 503 Service Unavailable (3 attempts)")


def test_what_is_not_a_corpus_at_the_url_is_named_by_its_url(
    served: tuple[Path, Server], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shards, server = served
    page, odd, escape = (shards.parent / name for name in ("page", "odd", "escape"))
    page.mkdir()
    (page / "manifest.json").write_text("<html>Sign in</html>")
    shutil.copytree(shards, odd)
    (odd / "vocab.tsv").write_text("other\t9\n")
    # A manifest whose shard would be copied outside the cache, over the user's files
    shutil.copytree(shards, escape)
    listed = json.loads((escape / "manifest.json").read_text())
    listed["shards"][0]["name"] = "../../../escaped.tar"
    (escape / "manifest.json").write_text(json.dumps(listed))
    for site, said in ((page, "manifest.json: unreadable manifest: Expecting value"),
                       (odd, "vocab.tsv: does not match manifest.json's vocab_hash"),
                       (escape, "manifest.json: unreadable manifest: shard name "
                                "'../../../escaped.tar' is not a file name in the corpus folder")):
        code = main(["train", "--data.shards", f"{server.url}/{site.name}", "--data.cache_dir",
                     str(tmp_path / "cache"), "--train.run_dir", str(tmp_path / site.name)])
        assert code == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith(f"w2vdist: {server.url}/{site.name}/{said}"), err
    assert not list(tmp_path.rglob("escaped.tar"))
    shutil.copy(shards / "vocab.tsv", odd)  # mended at the URL: nothing wrong is kept
    assert main(["train", "--data.shards", f"{server.url}/odd", "--data.cache_dir",
                 str(tmp_path / "cache"), "--train.run_dir", str(tmp_path / "mended"),
                 "--wandb", "disabled", "--data.loader_workers", "0"]) == 0


def test_server_errors_are_tried_again(
    served: tuple[Path, Server], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shards, server = served
    server.asked.clear()
    server.fail["/shards/vocab.tsv"] = (503, 2)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    local = Remote.at(f"{server.url}/shards", "", 5).cached("")  # into w2vdist's cache
    assert local.parent.parent == tmp_path / "w2vdist" / "shards"
    assert server.asked["/shards/vocab.tsv"] == 3
    assert (local / "vocab.tsv").read_bytes() == (shards / "vocab.tsv").read_bytes()


def test_a_server_that_never_answers_is_given_up_on(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/shards"
        began = time.monotonic()
        with pytest.raises(UsageError, match=r"/shards/manifest.json: .*timed out.* \(3 attempts\)"):
            Remote.at(url, "", 0.3).cached(str(tmp_path))
        assert time.monotonic() - began < 10  # three timeouts and the waits between them


COPY = """import shutil, sys
url = sys.argv[1]
if "missing" in url:
    sys.exit("An error occurred (NoSuchKey) when calling the GetObject operation")
if "stall" in url:
    import time; time.sleep(60)
with open(url.replace("s3://bucket", sys.argv[2]), "rb") as f:
    shutil.copyfileobj(f, sys.stdout.buffer)
"""


def test_other_schemes_are_fetched_by_the_command(
    served: tuple[Path, Server], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shards, _ = served
    script = tmp_path / "copy.py"
    script.write_text(COPY)
    monkeypatch.setenv("W2V_BUCKET_ROOT", str(shards.parent))  # expanded as the command runs
    command = f"{sys.executable} {script} {{url}} $W2V_BUCKET_ROOT"
    cache = tmp_path / "cache"
    cfg = config(shards, tmp_path / "run",
                 data={"shards": "s3://bucket/shards", "cache_dir": str(cache),
                       "fetch_command": command})
    assert run(cfg).exit_code == 0
    assert sorted(p.name for p in cache.rglob("*.tar")) == sorted(
        p.name for p in shards.glob("*.tar"))
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["data"]
    assert saved["fetch_command"] == command  # as given: the variable's value is not saved

    failing = Remote.at("s3://bucket/missing", command, 5)
    with pytest.raises(UsageError) as err:
        failing.fetch("manifest.json", tmp_path / "m.json")
    assert str(err.value) == (
        f"s3://bucket/missing/manifest.json: {sys.executable} exited with status 1: An error "
        "occurred (NoSuchKey) when calling the GetObject operation (3 attempts)")
    began = time.monotonic()
    with pytest.raises(UsageError, match="wrote nothing for 0.3 s"):
        Remote.at("s3://bucket/stall", command, 0.3).fetch("manifest.json", tmp_path / "m.json")
    assert time.monotonic() - began < 10
    assert not (tmp_path / "m.json").exists()


def test_urls_are_told_from_paths_and_unknown_schemes_need_a_command() -> None:
    assert is_url("https://host/corpus") and is_url("s3://bucket/corpus")
    assert not is_url("shards") and not is_url("/data/shards") and not is_url("C:/x")
    with pytest.raises(UsageError, match="no way to fetch hdfs:// URLs; give --data.fetch_command"):
        Remote.at("hdfs://name/corpus", "", 5)
    with pytest.raises(UsageError, match="does not contain {url}"):
        Remote.at("s3://bucket/corpus", "aws s3 cp", 5)
    assert Remote.at("s3://b/c", "", 5).command == "aws s3 cp {url} -"
    assert Remote.at("https://h/c", "", 5).url == "https://h/c/"


def test_a_streams_owed_shards_include_those_inside_rests() -> None:
    rest = Rest("k", 0, ((4, 0), Rest("j", 0, ((7, 1),), 1, None)), 2, None)
    assert Stream("0", 1, ((2, 5), rest, (2, 6))).owed_shards() == {2, 4, 7}
    assert Stream("0").owed_shards() == set()


def test_the_benchmark_script_runs(served: tuple[Path, Server]) -> None:
    shards, _ = served
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "remote_shards.py"
    done = subprocess.run([sys.executable, script, shards, "--model.dim", "8",
                           "--data.loader_workers", "0"], capture_output=True, text=True,
                          timeout=300, check=True)
    lines = done.stdout.splitlines()
    assert [line[:16].strip() for line in lines] == ["local", "url, cold cache", "url, warm cache"]
    assert "fetched" in lines[1] and "fetched" not in lines[2], done.stdout


def test_vectors_at_a_url_load_as_gensim_opens_them(
    served: tuple[Path, Server], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shards, server = served
    words = [line.split("\t")[0] for line in (shards / "vocab.tsv").read_text().splitlines()[:3]]
    matrix = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    write_word2vec(shards.parent / "v.vec.gz", words, matrix, binary=False)
    write_word2vec(shards.parent / "v.bin", words, matrix, binary=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    server.asked.clear()
    for name in ("v.vec.gz", "v.bin"):
        wv = WordVectors.load(f"{server.url}/{name}")
        assert wv.index_to_key == words and torch.equal(wv.vectors, matrix)
        top = WordVectors.load_word2vec_format(f"{server.url}/{name}", binary=name == "v.bin",
                                               limit=2)
        assert top.index_to_key == words[:2]
    assert server.asked == {"/v.vec.gz": 1, "/v.bin": 1}  # copied once, then read here
    out = tmp_path / "out.txt"
    assert main(["export", f"{server.url}/v.bin", "-o", str(out)]) == 0
    assert json.loads((tmp_path / "out.txt.json").read_text())["converted_from"] == \
        f"{server.url}/v.bin"
    shutil.rmtree(tmp_path / "home-cache" / "w2vdist" / "files")  # the run must fetch it
    cfg = config(shards, tmp_path / "run", train={"init_from": f"{server.url}/v.vec.gz"})
    assert run(cfg).exit_code == 0 and server.asked["/v.vec.gz"] == 2
    capsys.readouterr()
    assert main(["neighbors", f"{server.url}/none.bin", words[0]]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        f"w2vdist: {server.url}/none.bin: HTTP 404 File not found"


def test_a_urls_copy_stays_inside_the_cache(
    served: tuple[Path, Server], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL whose quoted name climbs (`%2E%2E%2F`), which servers serve as the plain name."""
    shards, server = served
    write_word2vec(shards.parent / "inside.vec", ["a", "b"], torch.ones(2, 4), binary=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    wv = WordVectors.load(f"{server.url}/%2E%2E%2F%2E%2E%2Finside.vec")
    assert wv.index_to_key == ["a", "b"]
    [copy] = (tmp_path / "cache").rglob("*.vec")
    assert copy.name == "inside.vec" and copy.parent.parent == tmp_path / "cache/w2vdist/files"


def test_processes_loading_the_same_vectors_url_copy_it_once(
    served: tuple[Path, Server], tmp_path: Path
) -> None:
    """The ranks of a node that start from the same vectors: one copies, the others wait."""
    shards, server = served
    write_word2vec(shards.parent / "same.vec", ["a", "b", "c"], torch.ones(3, 4), binary=False)
    url = f"{server.url}/same.vec"
    load = ("from w2vdist.vectors.keyed import WordVectors; "
            f"print(len(WordVectors.load({url!r}).index_to_key))")
    server.asked.clear()
    server.slow = {"/same.vec": 4.0}  # the copy outlasts the other processes' start
    try:
        loads = [subprocess.Popen([sys.executable, "-c", load], stdout=subprocess.PIPE,
                                  text=True, env={**env(), "XDG_CACHE_HOME": str(tmp_path)})
                 for _ in range(3)]
        said = [process.communicate(timeout=120)[0] for process in loads]
    finally:
        server.slow = {}
    assert [process.returncode for process in loads] == [0, 0, 0] and said == ["3\n"] * 3
    assert server.asked["/same.vec"] == 1
