"""How long `w2vdist prepare` looks at its input files before any worker starts: finding them
(`filetypes.find_files`) and probing each one's size and kind (`pieces.split_pieces`).

    python benchmarks/prepare_files.py --files 20000
    python benchmarks/prepare_files.py --files 2000 --latency-ms 1

It writes `--files` small text files in 20 directories (or reads `--dir`), and with
`--latency-ms` adds that much to every `stat`, `lstat` and `open`, as a network filesystem's
metadata calls take (a sleep, which frees the interpreter as a blocking call does).
"""

from __future__ import annotations

import argparse
import builtins
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _slowed(call: Callable[..., Any], seconds: float) -> Callable[..., Any]:
    def slow(*args: Any, **kwargs: Any) -> Any:
        time.sleep(seconds)
        return call(*args, **kwargs)

    return slow


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=20_000)
    p.add_argument("--dir", help="a corpus directory to read instead")
    p.add_argument("--latency-ms", type=float, default=0.0)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.dir or scratch)
        if not args.dir:
            for i in range(args.files):
                folder = root / f"d{i % 20:02d}"
                folder.mkdir(exist_ok=True)
                (folder / f"{i:07d}.txt").write_text("some words of text\n")
        from w2vdist.corpus import filetypes, pieces

        calls = os.stat, os.lstat, builtins.open
        if args.latency_ms:
            wait = args.latency_ms / 1e3
            os.stat, os.lstat, builtins.open = (_slowed(call, wait) for call in calls)
        try:
            start = time.perf_counter()
            files = filetypes.find_files([str(root)])
            found = time.perf_counter()
            pieces.split_pieces(files, 2)
            done = time.perf_counter()
        finally:
            os.stat, os.lstat, builtins.open = calls
    print(f"prepare_files: {len(files)} files, {args.latency_ms:g} ms a call: find "
          f"{found - start:.2f}s, probe {done - found:.2f}s, total {done - start:.2f}s")


if __name__ == "__main__":
    main()
