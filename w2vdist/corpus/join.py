"""Join corpora prepared apart into one: PART... are `w2vdist prepare` outputs made with the
same vocabulary and tokenizer, as the parts of a corpus too large for one machine's prepare
are, each on its own machine:

    w2vdist prepare corpus/ --part K/N -o counts-K --counts-only   # machine K: its counts
    w2vdist prepare corpus/ --part K/N -o shards-K --vocab counts-0,...,counts-N-1 --min-count 5
    w2vdist join shards-0 ... shards-N-1 -o shards/                # one corpus to train on

OUT gets every part's shards in the order given, numbered anew (hard links where OUT is on
the parts' filesystem, else copies), the vocabulary, the phrases if any, and one manifest
whose figures are the parts' summed. OUT appears only when complete.
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from w2vdist import settings
from w2vdist.corpus.config import JoinCommand
from w2vdist.corpus.phrases import PHRASES_FILE
from w2vdist.corpus.prepare import check_output
from w2vdist.corpus.shards import MANIFEST_FILE, Manifest, ShardInfo, type_problem
from w2vdist.corpus.vocab import VOCAB_FILE
from w2vdist.errors import UsageError
from w2vdist.files import atomic_path

# Manifest figures that add up over the parts; the others are the parts' alike settings.
ADDED = ("files", "bytes", "lines", "records", "raw_tokens", "text_bytes", "undecodable_bytes",
         "pruned_words", "sentences", "oov_dropped")


def join(parts: list[Path], out: Path, overwrite: bool = False) -> tuple[Manifest, int]:
    """Write the corpus joining `parts` to `out`; returns its manifest and how many shards
    were copied rather than linked."""
    if not parts:
        raise UsageError("join: no PART given")
    out = out.absolute()
    if out in {p.absolute() for p in parts}:
        raise UsageError(f"{out}: is one of the parts; join into a new folder")
    twice = next((p for i, p in enumerate(parts) if p.resolve() in
                  {q.resolve() for q in parts[:i]}), None)
    if twice is not None:
        raise UsageError(f"{twice}: given twice; its shards would be trained twice an epoch")
    manifests = [_part(p) for p in parts]
    first = manifests[0]
    for part, manifest in zip(parts[1:], manifests[1:]):
        if manifest.vocab_hash != first.vocab_hash:
            raise UsageError(f"{part}: its vocabulary is not {parts[0]}'s (prepare every part "
                             "with the same --vocab)")
        if _tokenizer(manifest) != _tokenizer(first):
            raise UsageError(f"{part}: tokenized otherwise than {parts[0]} ({_tokenizer(manifest)}"
                             f" against {_tokenizer(first)})")
    shares = [m.stats.get("part", "") for m in manifests]
    if any(shares):  # prepared with --part K/N: all N of them, in turn
        for k, (part, share) in enumerate(zip(parts, shares)):
            if share != f"{k}/{len(parts)}":
                got = f"--part {share}" if share else "without --part"
                raise UsageError(f"{part}: prepared {got}, but joined as part {k}/{len(parts)}: "
                                 "give all the parts, in turn")
            if manifests[k].stats.get("listing") != first.stats.get("listing"):
                raise UsageError(f"{part}: cut from another listing of the input than {parts[0]} "
                                 "(files added, removed or resized between the parts' "
                                 "prepares, or other inputs named): prepare the parts again")
    check_output(out, overwrite)
    copied = 0
    shards: list[ShardInfo] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out, directory=True) as staging:
        for part, manifest in zip(parts, manifests):
            for shard in manifest.shards:
                name = f"shard-{len(shards):06d}.tar"
                copied += _link_or_copy(part / shard.name, staging / name)
                shards.append(replace(shard, name=name))
        shutil.copyfile(parts[0] / VOCAB_FILE, staging / VOCAB_FILE)
        tokenizer = dict(first.tokenizer)
        if tokenizer.get("phrases_file"):
            shutil.copyfile(parts[0] / PHRASES_FILE, staging / PHRASES_FILE)
            tokenizer["phrases_file"] = str(out / PHRASES_FILE)
        joined = Manifest(first.vocab_size, sum(m.total_tokens for m in manifests), shards,
                          first.vocab_hash, tokenizer, _stats(parts, manifests))
        joined.save(staging)
        check_output(out, overwrite)  # it may have appeared while we worked
    return joined, copied


def _part(path: Path) -> Manifest:
    manifest = Manifest.load(path)
    if manifest.stats.get("counts_only"):
        raise UsageError(f"{path}: holds counts only (--counts-only); join the parts prepared "
                         "with them as --vocab")
    manifest.check_files(path)
    _check_stats(path / MANIFEST_FILE, manifest.stats)
    return manifest


def _check_stats(path: Path, stats: dict[str, Any]) -> None:
    """The figures `_stats` adds up and lists, of the types prepare writes: `stats` is free
    for a later version to extend, so the manifest reader leaves them unchecked, and a part's
    edited by hand raised from the sums."""
    wanted: list[tuple[str, Any, type]] = [(key, stats.get(key, 0), int) for key in ADDED]
    formats, paths = stats.get("formats", {}), stats.get("paths", [])
    wanted += [("formats", formats, dict), ("paths", paths, list), ("part", stats.get("part", ""),
               str), ("listing", stats.get("listing", ""), str)]  # fmt: skip
    if isinstance(formats, dict):
        wanted += [(f"formats.{name}", count, int) for name, count in formats.items()]
    if isinstance(paths, list):
        wanted += [(f"paths[{i}]", item, str) for i, item in enumerate(paths)]
    for key, value, kind in wanted:
        problem = type_problem(f"stats.{key}", value, kind)
        if problem:
            raise UsageError(f"{path}: unreadable manifest: {problem}")


def _tokenizer(manifest: Manifest) -> dict[str, Any]:
    """How a part was tokenized, less where its phrases file lies."""
    return {k: v for k, v in manifest.tokenizer.items() if k != "phrases_file"}


def _link_or_copy(source: Path, dest: Path) -> bool:
    """A hard link, or a copy where the filesystem allows none (another device); True if
    copied."""
    try:
        os.link(source, dest)
        return False
    except OSError:
        shutil.copyfile(source, dest)
        return True


def _stats(parts: list[Path], manifests: list[Manifest]) -> dict[str, Any]:
    """The parts' figures summed, their input paths one list, the settings they share."""
    stats = {k: v for k, v in manifests[0].stats.items() if k != "distinct_words"}
    for key in ADDED:
        stats[key] = sum(int(m.stats.get(key, 0)) for m in manifests)
    formats: Counter[str] = Counter()
    for manifest in manifests:
        formats.update(manifest.stats.get("formats", {}))
    stats["formats"] = dict(formats)
    paths = [p for m in manifests for p in m.stats.get("paths", [])]
    if any(m.stats.get("part") for m in manifests):  # a file cut between two parts is one
        paths = [p for i, p in enumerate(paths) if not i or p != paths[i - 1]]
        stats["files"] = len(paths)
    stats["paths"] = paths
    stats["part"] = ""
    stats["parts"] = [str(p.absolute()) for p in parts]
    return stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings.add_flags(parser, JoinCommand)


def command(args: argparse.Namespace) -> int:
    cmd = settings.from_args(JoinCommand, args, prefix="join.")
    out = Path(cmd.output)
    manifest, copied = join([Path(p) for p in cmd.parts], out, cmd.overwrite)
    how = f"{copied:,} copied, the others linked" if copied else "linked"
    print(f"joined {len(cmd.parts)} parts into {out}: {len(manifest.shards):,} shards ({how}), "
          f"{manifest.total_tokens:,} tokens, {manifest.vocab_size:,} words in {MANIFEST_FILE}")
    return 0
