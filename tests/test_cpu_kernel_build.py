"""Building the compiled CPU kernel: once per source, header, compiler, flags and CPU, into a
cache shared by concurrent processes; a missing compiler is reported, not raised."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from w2vdist.training.backends import cpu


def test_builds_into_cache_atomically_and_reports_missing_compiler(tmp_path: Path) -> None:
    probe = "from w2vdist.training.backends import cpu; print(cpu.available(), cpu.unavailable_reason())"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    procs = [
        subprocess.Popen([sys.executable, "-c", probe], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    assert [p.communicate()[0].strip() for p in procs] == ["True None"] * 3
    built = sorted(p.name for p in (tmp_path / "cache" / "w2vdist").iterdir())
    assert len(built) == 1 and built[0].endswith(".so"), built

    env = {**env, "CC": str(tmp_path / "no-such-cc"), "XDG_CACHE_HOME": str(tmp_path / "c2")}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert out.stdout.startswith("False ") and "no-such-cc" in out.stdout, out


def test_the_header_is_part_of_the_build_key(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A changed sgns_dot.h must not be served the library built from the old one."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cpu.build(cpu.FLAG_SETS[-1])
    header = tmp_path / "sgns_dot.h"
    header.write_text(cpu.HEADERS[0].read_text() + "/* changed */\n")
    monkeypatch.setattr(cpu, "HEADERS", [header])
    cpu.build(cpu.FLAG_SETS[-1])
    assert len(list((tmp_path / "cache" / "w2vdist").glob("*.so"))) == 2
