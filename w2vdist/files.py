"""Writing files and folders so that they appear whole or not at all.

Every output of w2vdist (shards, checkpoints, vectors, reports, synthetic corpora, the
compiled kernel) is written under a temporary sibling name, fsynced, and renamed onto its
final name; the rename is fsynced too. A crash or an error at any moment leaves the previous
output or the new one, never a half-written file that looks complete.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO

TMP_MARK = ".tmp-"


def temporary_sibling(final: Path) -> Path:
    """`.NAME.tmp-PID-RANDOM` beside `final`: unique even where every run has the same PID
    (containers), so a stale one never blocks a rerun."""
    return final.with_name(f".{final.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """A temporary path for the caller to fill (created as an empty folder if `directory`).

    When the block ends without error, everything under it is fsynced and it is renamed onto
    `final`, replacing what was there (a folder is moved aside first and removed after); on
    any error or interrupt it is removed and `final` is left as it was.
    """
    final = Path(final)
    tmp = temporary_sibling(final)
    if directory:
        tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        if final.is_dir() and not final.is_symlink():
            old = temporary_sibling(final)
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        fsync_dir(final.parent)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists() or tmp.is_symlink():
            tmp.unlink()


@contextlib.contextmanager
def atomic_file(final: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """`open(final, mode)` that replaces `final` only once fully written (see `atomic_path`)."""
    encoding = None if "b" in mode else "utf-8"
    with atomic_path(final) as tmp, open(tmp, mode, encoding=encoding) as f:
        yield f
        f.flush()


def write_text(final: str | os.PathLike, text: str) -> None:
    with atomic_file(final, "w") as f:
        f.write(text)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    if path.is_file():
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        return
    for root, _, names in os.walk(path):
        for name in names:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(Path(root))
