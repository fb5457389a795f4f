"""Check a prepared corpus in place against its manifest: every shard present, of its
recorded size and SHA-256, readable, with the samples and tokens the manifest counts and only
token ids the vocabulary has; `vocab.tsv` the manifest's vocabulary.

Training checks sizes as it starts and token ids as it reads, and a copy from a URL is checked
by SHA-256 as it arrives; a corpus moved by other means (rsync, a bucket mounted, a disk
replaced) is checked here before cluster hours are spent on it. Every damaged shard is listed,
a line each; the exit status is 1 if any is, 0 if all match.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from w2vdist import settings
from w2vdist.corpus.config import VerifyCommand
from w2vdist.corpus.remote import is_url
from w2vdist.corpus.shards import (MANIFEST_FILE, Manifest, ShardInfo, ShardReader,
                                   size_problem)
from w2vdist.corpus.vocab import VOCAB_FILE, Vocab
from w2vdist.errors import UsageError
from w2vdist.files import sha256_file
from w2vdist.host import cores


@dataclass
class Verified:
    """What `verify` found: the shards' totals and a line for each shard that does not match
    the manifest (empty when all do)."""

    shards: int
    bytes: int
    samples: int
    tokens: int
    words: int
    damaged: list[str] = field(default_factory=list)


def verify(directory: str | Path, workers: int = 0) -> Verified:
    """Check the corpus `w2vdist prepare` wrote to `directory`, `workers` shards at a time (0:
    a core each). A manifest or vocabulary that does not fit raises `UsageError`; damaged
    shards are listed in the result."""
    if is_url(str(directory)):
        raise UsageError(f"{directory}: verify checks a corpus on this machine; shards at a URL "
                         "are checked against their SHA-256 as training copies them")
    directory = Path(directory)
    manifest = Manifest.load(directory)
    manifest.check_files(directory, files=False)
    vocab = Vocab.load(directory / VOCAB_FILE)
    if vocab.hash != manifest.vocab_hash:
        raise UsageError(f"{directory / VOCAB_FILE}: does not match {MANIFEST_FILE}'s vocab_hash")
    if len(vocab) != manifest.vocab_size:
        raise UsageError(f"{directory / MANIFEST_FILE}: vocab_size {manifest.vocab_size:,}, but "
                         f"{VOCAB_FILE} has {len(vocab):,} words")
    counted = sum(s.tokens for s in manifest.shards)
    if counted != manifest.total_tokens:
        raise UsageError(f"{directory / MANIFEST_FILE}: total_tokens {manifest.total_tokens:,}, "
                         f"but its shards hold {counted:,}")
    total = sum(s.bytes for s in manifest.shards)
    with tqdm(total=total or None, desc="verify", unit="B", unit_scale=True, disable=None,
              leave=False) as bar, ThreadPoolExecutor(workers or cores()) as pool:
        def check(shard: ShardInfo) -> str:
            found = _shard_problem(directory / shard.name, shard, len(vocab))
            bar.update(shard.bytes)
            return found
        problems = list(pool.map(check, manifest.shards))
    damaged = [f"{directory / s.name}: {p}" for s, p in zip(manifest.shards, problems) if p]
    return Verified(len(manifest.shards), total, sum(s.samples for s in manifest.shards),
                    manifest.total_tokens, len(vocab), damaged)


def _shard_problem(path: Path, shard: ShardInfo, vocab: int) -> str:
    """What is wrong with one shard's file ('' if nothing): the first of its size, SHA-256,
    tar layout, samples, sentence lengths, token ids and token count not to match."""
    problem = size_problem(path, shard)
    if problem:
        return problem
    try:
        if shard.sha256 and sha256_file(path) != shard.sha256:
            return "its SHA-256 is not the manifest's (damaged or replaced since prepare)"
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()
    try:
        reader = ShardReader(path, shard.samples, vocab)
        tokens = sum(len(reader.read(i)[0]) for i in range(shard.samples))
    except Exception as exc:  # noqa: BLE001 - any failure of the shard's bytes, reported
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"unreadable shard ({first})"
    if tokens != shard.tokens:
        return f"{tokens:,} tokens, but the manifest says {shard.tokens:,}"
    return ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings.add_flags(parser, VerifyCommand)


def command(args: argparse.Namespace) -> int:
    cmd = settings.from_args(VerifyCommand, args, prefix="verify.")
    found = verify(cmd.corpus, cmd.workers)
    for line in found.damaged:
        print(line, flush=True)
    if found.damaged:
        print(f"w2vdist: {len(found.damaged)} of {found.shards} shards in {cmd.corpus} do not "
              f"match {MANIFEST_FILE}; prepare them again or copy them anew", file=sys.stderr)
        return 1
    print(f"verified {found.shards} shards in {cmd.corpus} ({found.bytes / 1e6:,.1f} MB, "
          f"{found.tokens:,} tokens in {found.samples:,} samples, {found.words:,} words): all "
          f"match {MANIFEST_FILE} and {VOCAB_FILE}")
    return 0
