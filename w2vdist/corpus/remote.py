"""Prepared shards at a URL, copied into a local cache before training reads them.

`--data.shards` may name a `w2vdist prepare` output that was copied to a web server or an
object store (`https://host/corpus/`, `s3://bucket/corpus/`, `gs://bucket/corpus/`). The
loader reads a rank's samples in a new order every pass, which needs random access, so each
rank first copies the shards it is about to read (its own, and on a run resumed on another
number of ranks what it owes of the epoch in progress) into `data.cache_dir`: a node holds
its ranks' share of the corpus, not all of it. `manifest.json` is fetched at every start; the
cache is keyed by the URL and the manifest's bytes, so a corpus prepared again at the same URL
never mixes with the old one's shards (whose copies stay until the user removes them: the log
says where), and a run resumed on the same node fetches nothing.
Every copy is checked against the manifest's size and SHA-256 and appears whole or not at all.

http(s), ftp and file URLs are read with Python's own client; any other scheme through a
command that writes the object to its standard output (`data.fetch_command`, `{url}`
replaced, environment variables expanded as it runs; by default `aws s3 cp {url} -` for s3
and `gcloud storage cat {url}` for gs; given, it serves http(s) too). Every
wait is bounded: a read, or a command's output, that stalls for `data.fetch_timeout_seconds`
fails the copy; a failed copy is tried twice more (not after HTTP 4xx), then the run stops
with one line naming the URL. A manifest out of reach (not refused) gives way to the copy
fetched before, with a warning, so that a job requeued while its store is down resumes.

Single files at a URL (pretrained vectors, which gensim opens by URL) are copied the same way,
once, into the cache's `files` folder (`cached_file`).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shlex
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import quote, unquote, urlsplit

from w2vdist.corpus.shards import MANIFEST_FILE, Manifest, ShardInfo
from w2vdist.corpus.vocab import VOCAB_FILE
from w2vdist.errors import UsageError
from w2vdist.files import atomic_file, locked, sha256_file, user_cache

log = logging.getLogger("w2vdist")

COMMANDS = {"s3": "aws s3 cp {url} -", "gs": "gcloud storage cat {url}"}
READ_SCHEMES = ("http", "https", "ftp", "file")  # what urllib reads
ATTEMPTS = 3
PARALLEL = 4  # copies at a time: object stores serve one stream far below a node's bandwidth
_BLOCK = 1 << 20
_POLL_SECONDS = 0.1


def is_url(location: str) -> bool:
    """Whether `location` is a URL (`scheme://...`) rather than a local path."""
    return "://" in location and len(urlsplit(location).scheme) > 1


class Unreachable(UsageError):
    """A copy that failed every attempt for a reason that may pass (no connection, a stall, a
    server error, the fetch command failing), where a URL that refuses (HTTP 4xx) is a plain
    UsageError."""


class _Failed(Exception):
    """One copy failed; `again`: whether trying again may help."""

    def __init__(self, why: str, again: bool = True) -> None:
        super().__init__(why)
        self.again = again


@dataclass(frozen=True)
class Remote:
    """A prepared corpus at `url` (ending with '/'), and how its files are copied."""

    url: str
    command: str  # a command line with {url}, or "" for urllib's schemes
    timeout: float

    @classmethod
    def at(cls, location: str, command: str, timeout: float) -> "Remote":
        url = location if location.endswith("/") else location + "/"
        scheme = urlsplit(url).scheme.lower()
        if not command and scheme not in READ_SCHEMES:
            command = COMMANDS.get(scheme, "")
            if not command:
                raise UsageError(f"{location}: no way to fetch {scheme}:// URLs; give "
                                 "--data.fetch_command, a command that writes {url} to its output")
        if command and "{url}" not in command:
            raise UsageError(f"data.fetch_command: {command!r} does not contain {{url}}")
        return cls(url, command, timeout)

    def cached(self, root: str) -> Path:
        """The folder of this URL's current corpus under `root` ('': w2vdist's cache), holding
        its manifest.json and vocab.tsv, fetched now (out of reach: as fetched before); the
        shards come with `fetch_shards`."""
        base = (Path(root) if root else user_cache() / "shards") / _digest(self.url.encode())
        base.mkdir(parents=True, exist_ok=True)
        latest = base / MANIFEST_FILE
        try:
            self.fetch(MANIFEST_FILE, latest)
        except Unreachable as exc:
            if not latest.is_file():
                raise
            # A requeued job resumes while the store is out of reach: the copy fetched before
            # serves, as a model hub's cache does offline (a URL that refuses, HTTP 4xx, stops
            # the run instead); shards missing from the cache still fail, naming their URL.
            fetched = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(latest.stat().st_mtime))
            log.warning("%s; training on its corpus as fetched at %s, from %s", exc, fetched,
                        base)
        manifest = latest.read_bytes()
        Manifest.parse(manifest, self.url + MANIFEST_FILE)  # a page that is not one, named
        local = base / _digest(manifest)
        local.mkdir(exist_ok=True)
        if not (local / MANIFEST_FILE).is_file():
            with atomic_file(local / MANIFEST_FILE) as f:
                f.write(manifest)
        if not (local / VOCAB_FILE).is_file():
            self.fetch(VOCAB_FILE, local / VOCAB_FILE)
        _tell_of_older(local)
        return local

    def fetch_shards(self, local: Path, shards: Iterable[ShardInfo],
                     tally: Tally | None = None) -> None:
        """Copy the `shards` that `local` lacks or holds at another size, a few at a time, each
        checked against the manifest's size and SHA-256 (where it records them) as it arrives;
        `tally` counts their bytes as they come."""
        tally = tally or Tally()
        missing = [s for s in shards if not (local / s.name).is_file()
                   or s.bytes and (local / s.name).stat().st_size != s.bytes]
        if not missing:
            return
        tally.expected = sum(s.bytes for s in missing)
        log.info("fetching %d shard(s), %.1f MB, from %s into %s", len(missing),
                 tally.expected / 1e6, self.url, local)
        start = time.monotonic()
        with ThreadPoolExecutor(PARALLEL) as pool:
            for done in [pool.submit(self.fetch, s.name, local / s.name, s.bytes or None,
                                     tally, s.sha256) for s in missing]:
                done.result()
        seconds = time.monotonic() - start
        log.info("fetched %.1f MB in %.1f s (%.0f MB/s)", tally.expected / 1e6, seconds,
                 tally.expected / 1e6 / max(seconds, 1e-9))

    def fetch(self, name: str, dest: Path, size: int | None = None,
              tally: Tally | None = None, sha256: str = "") -> None:
        """`name` under the URL copied to `dest` (`copy`)."""
        self.copy(self.url + quote(name), dest, size, tally, sha256)

    def copy(self, url: str, dest: Path, size: int | None = None,
             tally: Tally | None = None, sha256: str = "") -> None:
        """`url` copied to `dest`, whole or not at all (of `size` bytes and this `sha256` when
        given); tried ATTEMPTS times, then a one-line error naming the URL. `tally` counts the
        bytes of the copy that succeeds."""
        tally = tally or Tally()
        for attempt in range(1, ATTEMPTS + 1):
            this = Tally()  # the attempt's own bytes, taken back from `tally` if it fails
            try:
                with atomic_file(dest) as out:
                    got = self._copy(url, out, this.joined(tally))
                    if size is not None and got != size:
                        raise _Failed(f"{got:,} bytes, but the manifest says {size:,}")
                    out.flush()
                    if sha256 and sha256_file(out.name) != sha256:
                        raise _Failed("its SHA-256 is not the manifest's (changed since "
                                      "prepare, or damaged on the way)")
                return
            except _Failed as exc:
                tally.add(-this.copied)
                if not exc.again:
                    raise UsageError(f"{url}: {exc}") from None
                if attempt == ATTEMPTS:
                    raise Unreachable(f"{url}: {exc} ({ATTEMPTS} attempts)") from None
                log.warning("%s: %s; trying again", url, exc)
                time.sleep(attempt)

    def _copy(self, url: str, out: IO[bytes], count: Callable[[int], None]) -> int:
        return self._run(url, out, count) if self.command else self._read(url, out, count)

    def _read(self, url: str, out: IO[bytes], count: Callable[[int], None]) -> int:
        """urllib's copy: its timeout bounds the connection and every read."""
        copied = 0
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                while block := response.read(_BLOCK):
                    out.write(block)
                    copied += len(block)
                    count(len(block))
        except urllib.error.HTTPError as exc:
            raise _Failed(f"HTTP {exc.code} {exc.reason}",
                          again=exc.code >= 500 or exc.code in (408, 429)) from None
        except urllib.error.URLError as exc:
            raise _Failed(str(getattr(exc.reason, "strerror", None) or exc.reason)) from None
        except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            raise _Failed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                          ) from None
        return copied

    def _run(self, url: str, out: IO[bytes], count: Callable[[int], None]) -> int:
        """The fetch command's copy, killed when its output stalls for the timeout."""
        # Variables expand here, not when the setting is saved: a token stays out of config.json
        args = [os.path.expandvars(a).replace("{url}", url) for a in shlex.split(self.command)]
        out.flush()
        with tempfile.TemporaryFile() as err:
            try:
                process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out,
                                           stderr=err)
            except OSError as exc:
                raise _Failed(f"cannot run {args[0]!r}: {exc.strerror}", again=False) from None
            size, moved = 0, time.monotonic()
            while process.poll() is None:
                time.sleep(_POLL_SECONDS)
                now = os.fstat(out.fileno()).st_size
                if now != size:
                    count(now - size)
                    size, moved = now, time.monotonic()
                elif time.monotonic() - moved > self.timeout:
                    process.kill()
                    process.wait()
                    raise _Failed(f"{args[0]} wrote nothing for {self.timeout:g} s")
            if process.returncode != 0:
                err.seek(0)
                lines = err.read().decode(errors="replace").strip().splitlines()
                said = f": {lines[-1].strip()}" if lines else ""
                raise _Failed(f"{args[0]} exited with status {process.returncode}{said}")
            now = os.fstat(out.fileno()).st_size
            count(now - size)
            return now


class Tally:
    """Bytes that copies are to make and have made: the copying threads add to it, a rank
    reports it while the others wait (`distributed.together`)."""

    def __init__(self) -> None:
        self.expected = 0
        self.copied = 0
        self._lock = threading.Lock()

    def add(self, count: int) -> None:
        with self._lock:
            self.copied += count

    def joined(self, other: Tally) -> Callable[[int], None]:
        """A counter that adds to this tally and to `other`."""
        def count(n: int) -> None:
            self.add(n)
            other.add(n)
        return count


def cached_file(url: str, timeout: float = 60.0) -> Path:
    """The file at `url`, copied once into w2vdist's cache and read from there after (removing
    the copy fetches it anew): pretrained vectors by URL, as gensim opens them."""
    name = Path(unquote(urlsplit(url).path)).name  # `%2F..`: a name, never a path
    name = "file" if name in ("", ".", "..") else name
    dest = user_cache() / "files" / _digest(url.encode()) / name
    if not dest.is_file():
        # The ranks of a node that all start from the same vectors make one copy: the first
        # copies, the others wait for it (each wait of the copy is bounded).
        with locked(dest.parent, "copy", wait=True):
            if not dest.is_file():
                log.info("fetching %s into %s", url, dest)
                Remote.at(url, "", timeout).copy(url, dest)
    return dest


def _tell_of_older(local: Path) -> None:
    """Say where the copies of the URL's earlier corpora are: removing them is the user's call,
    since another run may be reading them."""
    older = [d for d in local.parent.iterdir() if d.is_dir() and d != local]
    if older:
        size = sum(_size(f) for d in older for f in d.iterdir())
        log.info("%s holds %d earlier version(s) of this corpus, %.1f MB: remove them once no "
                 "run reads them", local.parent, len(older), size / 1e6)


def _size(path: Path) -> int:
    """A file's size, 0 for one that another run's copy has just renamed or removed."""
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]
