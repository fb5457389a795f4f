"""The package's type hints hold and reach its users: mypy, as pyproject.toml configures it
(every function typed but the Triton kernel's), finds nothing in the package; and a user's
code, checked against w2vdist installed as pip installs it, gets the exact types of the public
API (PEP 561's `py.typed` marker; without it a checker treats w2vdist as untyped)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What a user's code may rely on; `assert_type` fails the check on any other type.
USER_CODE = '''
from typing import assert_type

import torch
from torch import nn

from w2vdist import Callback, TrainResult, WordVectors, prepare, train

Top = list[tuple[str, float]]
wv = WordVectors.load("vectors.bin")
assert_type(wv.most_similar("king"), Top)
assert_type(wv.most_similar(["king", "woman"], ["man"], 3), Top)
assert_type(wv.most_similar("king", topn=None), torch.Tensor)
assert_type(wv.most_similar(["king"], [], None), torch.Tensor)
assert_type(wv.most_similar_cosmul([("king", 2.0)], topn=5), Top)
assert_type(wv.most_similar_cosmul("king", topn=None), torch.Tensor)
assert_type(wv.similar_by_word("king"), Top)
assert_type(wv.similar_by_key("king", None), torch.Tensor)
assert_type(wv.similar_by_vector(wv["king"], topn=None), torch.Tensor)
assert_type(wv.analogy("man", "king", "woman"), Top)
assert_type(wv.to_embedding()[0], nn.Embedding)
kv = WordVectors.load_word2vec_format("vectors.bin.gz", binary=True, limit=1000)
assert_type(kv, WordVectors)


class Scores(Callback):
    def on_eval(self, step: int, scores: dict[str, float]) -> None:
        print(step, scores["analogy"])


summary = prepare(["corpus.txt"], "shards", min_count=5)
prepare(output="shards2", sentences=[["a", "b"], ("c",)], min_count=1)
prepare(output="shards3", sentences=(line for line in open("corpus.txt")))
result = train(data={"shards": "shards"}, train={"run_dir": "runs/a"}, callbacks=[Scores()])
assert_type(result, TrainResult)
assert_type(result.vectors, WordVectors)
assert_type(result.exit_code, int)
'''


def _mypy(*args: str, cwd: Path, env: dict[str, str] | None = None,
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mypy", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def package_check(tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[str]]:
    """mypy on the package, started when the module's first test asks for it, so that it runs
    on the second core while that test checks a user's code (both take about 20 s)."""
    cache = tmp_path_factory.mktemp("mypy-cache")
    process = subprocess.Popen([sys.executable, "-m", "mypy", "--cache-dir", str(cache)],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_a_users_code_gets_the_public_apis_types(tmp_path: Path, package_check):
    # From a copy: a build in the checkout reuses its build/ folder, files removed since too
    source, site = tmp_path / "source", tmp_path / "site"
    shutil.copytree(ROOT / "w2vdist", source / "w2vdist",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    # Without build isolation: the dev extras' setuptools builds it, no download needed
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--no-compile", "--target", str(site), str(source)],
                   check=True, capture_output=True, timeout=300)
    assert (site / "w2vdist" / "py.typed").is_file()
    (tmp_path / "user.py").write_text(USER_CODE)
    # mypy finds installed packages on the interpreter's path: this install, not the checkout
    env = {k: v for k, v in os.environ.items() if k != "MYPYPATH"} | {"PYTHONPATH": str(site)}
    result = _mypy("--cache-dir", str(tmp_path / "cache"), "--strict", "user.py",
                   cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_no_error(package_check: subprocess.Popen[str]):
    output, _ = package_check.communicate(timeout=600)
    assert package_check.returncode == 0, output
    assert "Success: no issues found" in output
