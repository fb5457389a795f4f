"""Run under torchrun by tests/test_remote.py: `distributed.together` on a real gloo group,
where one rank's part takes longer than the others' and then fails. Each rank writes what it
saw to OUT/rank-R.json."""

import json
import sys
import time
from pathlib import Path

from w2vdist.errors import UsageError
from w2vdist.training import distributed


def main(out: Path) -> None:
    world = distributed.init("cpu", 60.0)
    rank = world.rank
    began = time.monotonic()
    distributed.together(world, "slow", lambda: time.sleep(2.0 * rank), lambda: (rank, 2), 1.0)
    waited = time.monotonic() - began

    def failing() -> None:
        time.sleep(0.5 * rank)
        if rank == 1:
            raise UsageError("rank 1's own error")

    said = ""
    try:
        distributed.together(world, "copying", failing, lambda: (0, 0), 1.0)
    except UsageError as exc:
        said = str(exc)
    (out / f"rank-{rank}.json").write_text(json.dumps({"waited": waited, "said": said}))
    distributed.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
