"""Writing files and folders so that they appear whole or not at all; reading text files.

Every output of w2vdist (shards, checkpoints, vectors, reports, synthetic corpora, the
compiled kernel) is written under a temporary sibling name, fsynced, and renamed onto its
final name; the rename is fsynced too. A crash or an error at any moment leaves the previous
output or the new one, never a half-written file that looks complete. The text files users
give (vocabularies, evaluation sets, config files) are read a numbered line at a time, so that
a line that is not UTF-8 is named, not raised from deep in a parser.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from w2vdist.errors import UsageError

TMP_MARK = ".tmp-"
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # errors of writing, not reading


def numbered_lines(path: Path, what: str = "file") -> Iterator[tuple[int, str]]:
    """A UTF-8 text file's lines (newlines kept), numbered from 1, without the byte-order mark
    an editor may have put first (Notepad's "UTF-8 with BOM"), which would otherwise cling to
    the first word. `what`: the file's kind, for the error if it is missing."""
    if not path.is_file():
        raise UsageError(f"{path}: {what} not found")
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                yield lineno, raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError:
                raise UsageError(f"{path}:{lineno}: not valid UTF-8") from None


def sha256_file(path: str | os.PathLike) -> str:
    """The file's SHA-256, hex: what checkpoints and prepared shards record of their files."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def temporary_sibling(final: Path) -> Path:
    """`.NAME.tmp-PID-RANDOM` beside `final`: unique even where every run has the same PID
    (containers), so a stale one never blocks a rerun."""
    return final.with_name(f".{final.name}{TMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def remove_stale(directory: Path, name: str = "*") -> None:
    """Remove temporaries (of `name`, or all) in `directory` left by processes that no longer
    run: a kill -9, a container stopped mid-write. PIDs repeat across container restarts, so
    a temporary carrying this process's PID is stale too (callers run this before writing)."""
    for tmp in directory.glob(f".{name}{TMP_MARK}*"):
        pid = tmp.name.rsplit(TMP_MARK, 1)[1].split("-")[0]
        if pid.isdigit() and (int(pid) == os.getpid() or not _alive(int(pid))):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def locked(directory: Path, what: str = "run", wait: bool = False) -> Iterator[None]:
    """Hold `directory/.lock` (an flock, released by the kernel when this process ends, so a
    dead owner's lock is simply taken over); another holder is refused by host and PID, or,
    with `wait`, waited for (whose work under the lock must have its own bound)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            owner = os.pread(fd, 256, 0).decode(errors="replace").strip() or "another process"
            raise UsageError(f"{directory}: in use by the {what} of {owner}; wait for it to "
                             "end or use another directory") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, directory: bool = False) -> Iterator[Path]:
    """A temporary path for the caller to fill (created as an empty folder if `directory`).

    When the block ends without error, everything under it is fsynced and it is renamed onto
    `final`, replacing what was there (a folder is moved aside first and removed after); on
    any error or interrupt it is removed and `final` is left as it was.
    """
    final = Path(final)
    remove_stale(final.parent, final.name)
    tmp = temporary_sibling(final)
    if directory:
        tmp.mkdir()
    try:
        unnamed = None
        try:
            yield tmp
        except OSError as exc:  # a full disk says nothing of where: name what was written
            if exc.filename is not None or exc.errno not in _WRITE_ERRNOS:
                raise
            unnamed = exc.errno, exc.strerror
        if unnamed is not None:  # raised outside the handler: the failed writers go now
            raise OSError(*unnamed, str(final))
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


def user_cache() -> Path:
    """w2vdist's cache folder: `$XDG_CACHE_HOME/w2vdist` (else `~/.cache/w2vdist`), or, where
    that cannot be written (a read-only home on a cluster), `w2vdist-UID` in the temp folder."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    user = os.getuid() if hasattr(os, "getuid") else "user"
    for candidate in (base / "w2vdist", Path(tempfile.gettempdir()) / f"w2vdist-{user}"):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            if os.access(candidate, os.W_OK):
                return candidate
        except OSError:
            continue
    raise RuntimeError(f"no writable cache directory ({base / 'w2vdist'} nor the temp directory)")
