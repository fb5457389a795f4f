"""`w2vdist prepare`'s counting passes: CPU seconds of the main process against its workers'.

    python benchmarks/prepare_passes.py CORPUS [--workers 2 8 --phrases 0 1 --json OUT]

Whatever the main process spends on a pass, it spends alone: a pass can never take less wall
time than that, however many workers read the text. Each (workers, phrases) run prints the
whole command's wall seconds, the main process's and the workers' CPU seconds, and for each
counting pass (phrase passes, then the word count) the main process's CPU seconds and the
pass's wall seconds, measured around `prepare._count`.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import w2vdist
from w2vdist.corpus import prepare


def cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def run(corpus: Path, out: Path, workers: int, phrases: int) -> dict[str, Any]:
    passes: list[dict[str, Any]] = []
    count = prepare._count

    def timed(*args: Any, **kwargs: Any) -> Any:
        main, wall = cpu(resource.RUSAGE_SELF), time.perf_counter()
        result = count(*args, **kwargs)
        what = [a for a in args if isinstance(a, str)][-1]  # the progress bar's label
        passes.append({"pass": what,
                       "main_cpu_s": round(cpu(resource.RUSAGE_SELF) - main, 2),
                       "wall_s": round(time.perf_counter() - wall, 2)})
        return result

    prepare._count = timed
    main, children, wall = cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN), \
        time.perf_counter()
    try:
        w2vdist.prepare(corpus, out, workers=workers, phrases=phrases, overwrite=True)
    finally:
        prepare._count = count
    return {"workers": workers, "phrases": phrases,
            "wall_s": round(time.perf_counter() - wall, 2),
            "main_cpu_s": round(cpu(resource.RUSAGE_SELF) - main, 2),
            "workers_cpu_s": round(cpu(resource.RUSAGE_CHILDREN) - children, 2),
            "passes": passes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--phrases", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for phrases in args.phrases:
            for workers in args.workers:
                result = run(args.corpus, Path(scratch) / "out", workers, phrases)
                print(json.dumps(result), flush=True)
                results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
