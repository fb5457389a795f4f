"""docker/Dockerfile, read with Docker's own parser (the `dockerfile` package): a pinned CUDA
PyTorch base matching the torch that launch/setup.sh installs, the README's install step, a
non-root user and the w2vdist entrypoint. No Docker engine is needed."""

from __future__ import annotations

import re
from pathlib import Path

import dockerfile
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def commands() -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(ROOT / "docker" / "Dockerfile")))


def of(commands: list[dockerfile.Command], name: str) -> list[dockerfile.Command]:
    return [c for c in commands if c.cmd == name]


def base_image(commands: list[dockerfile.Command]) -> str:
    """The FROM image with ARG defaults declared before it substituted, as docker build does."""
    args = {}
    for c in commands:
        if c.cmd == "FROM":
            return re.sub(r"\$\{?(\w+)\}?", lambda m: args[m.group(1)], c.value[0])
        if c.cmd == "ARG" and "=" in c.value[0]:
            name, default = c.value[0].split("=", 1)
            args[name] = default
    raise AssertionError("no FROM")


def setup_default(name: str) -> str:
    text = (ROOT / "launch" / "setup.sh").read_text()
    return re.search(rf'^: "\$\{{{name}:?=([^}}]*)\}}"', text, re.M).group(1)


def test_base_is_a_pinned_cuda_pytorch_image_of_the_installed_torch(commands):
    assert len(of(commands, "FROM")) == 1
    image = base_image(commands)
    repo, _, tag = image.partition(":")
    assert repo == "pytorch/pytorch" and tag and tag != "latest"
    version, cuda, cudnn, flavour = tag.split("-")
    assert re.fullmatch(r"cuda1\d\.\d+", cuda) and cudnn.startswith("cudnn")
    assert flavour == "runtime"
    # The same torch as every other install, so setup.sh's `pip install torch==X` is a no-op.
    assert version == setup_default("TORCH_VERSION")


def test_installs_with_the_readme_install_step(commands):
    runs = [" ".join(c.value) for c in of(commands, "RUN")]
    installs = [r for r in runs if "pip" in r or "setup.sh" in r]
    assert installs == ["EDITABLE=0 EXTRAS=gpu,parquet bash launch/setup.sh"]
    # The README's commands install through the same script.
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```")[1]
    for script in ("launch/quickstart.sh", "launch/test.sh"):
        assert script in first_block
        assert '"$here/setup.sh"' in (ROOT / script).read_text()
    assert "exec bash launch/test.sh" in (ROOT / ".ci" / "run").read_text()
    # What the build copies is what it needs to run setup.sh, and .dockerignore lets it through.
    copied = [src.rstrip("/") for c in of(commands, "COPY") for src in c.value[:-1]]
    ignore = (ROOT / ".dockerignore").read_text().split()
    for src in copied:
        assert (ROOT / src).exists() and f"!{src}" in ignore, src
    assert {"pyproject.toml", "w2vdist", "launch"} <= set(copied)


def test_runs_as_a_user_that_is_not_root(commands):
    users = of(commands, "USER")
    assert users, "no USER: the container would run as root"
    user = users[-1].value[0].split(":")[0]
    assert user not in ("root", "0")
    created = [c for c in of(commands, "RUN") if "useradd" in c.value[0]]
    assert created and re.search(rf"\buseradd\b.*\b{user}$", created[0].value[0])
    last_user_line = users[-1].start_line
    assert all(c.start_line < last_user_line for c in of(commands, "RUN"))


def test_entrypoint_is_the_cli(commands):
    (entry,) = of(commands, "ENTRYPOINT")
    assert entry.json and entry.value == ("w2vdist",)
