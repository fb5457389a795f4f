"""What training from a URL costs: the same run on local shards, on their URL (a cold cache) and
again (a warm one), side by side.

    python benchmarks/remote_shards.py SHARDS [--epochs 1] [train flags...]

SHARDS is served by Python's HTTP server on 127.0.0.1 (what a web server or an object store's
HTTP endpoint does; the network's own speed is not measured). Each run is `w2vdist train` in
its own process; printed: wall seconds and logged words/s of each, and the fetch's MB/s.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def _train(shards: str, run_dir: Path, extra: list[str]) -> tuple[float, str]:
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "w2vdist", "train", "--data.shards", shards,
                           "--train.run_dir", str(run_dir), "--wandb", "disabled", *extra],
                          capture_output=True, text=True, check=True)
    return time.monotonic() - began, done.stdout + done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shards", type=Path)
    parser.add_argument("--epochs", type=int, default=1)
    args, extra = parser.parse_known_args()
    shards = args.shards.resolve()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(shards.parent)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{shards.name}/"
    extra = ["--train.epochs", str(args.epochs), *extra]
    megabytes = sum(p.stat().st_size for p in shards.glob("*.tar")) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        cache = ["--data.cache_dir", f"{tmp}/cache"]
        for name, where, flags in (("local", str(shards), []), ("url, cold cache", url, cache),
                                   ("url, warm cache", url, cache)):
            seconds, out = _train(where, Path(tmp) / name.replace(" ", ""), [*flags, *extra])
            rate = re.search(r"trained .*?([\d,]+) words/s", out)
            fetched = re.search(r"fetched ([\d.]+) MB in ([\d.]+) s \(([\d.]+) MB/s\)", out)
            print(f"{name:16} wall {seconds:6.1f} s  train {rate.group(1) if rate else '?'} "
                  f"words/s" + (f"  fetched {fetched.group(1)} of {megabytes:.1f} MB in "
                                f"{fetched.group(2)} s ({fetched.group(3)} MB/s)" if fetched
                                else ""), flush=True)
    server.shutdown()


if __name__ == "__main__":
    main()
