"""`w2vdist COMMAND ...`: one entry point; each command lives in the module named for it.

A command module provides `add_arguments(parser)` (its config root's flags, from
`settings.add_flags`) and `command(args) -> int`. Only the module of the command being run is
imported, so `w2vdist export` does not pay for what `train` loads.
"""

from __future__ import annotations

import argparse
import importlib
import os
import select
import signal
import sys

from w2vdist.errors import UsageError, out_of_memory
from w2vdist.settings import Parser

COMMANDS = {
    "synth": ("w2vdist.corpus.synth", "generate a corpus with planted structure and its eval files"),
    "prepare": ("w2vdist.corpus.prepare", "tokenize text, build the vocabulary, write WebDataset shards"),
    "join": ("w2vdist.corpus.join", "join corpora prepared apart with one vocabulary"),
    "verify": ("w2vdist.corpus.verify", "check prepared shards against their manifest"),
    "train": ("w2vdist.training.loop", "train SGNS embeddings (one process or under torchrun)"),
    "export": ("w2vdist.vectors.export", "write trained vectors in word2vec text or binary format"),
    "eval": ("w2vdist.vectors.report", "score vectors on analogy and word-similarity files"),
    "neighbors": ("w2vdist.vectors.neighbors", "print the nearest words by cosine similarity"),
    "bench": ("w2vdist.training.bench", "measure training or loader throughput and memory"),
}


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    parser = Parser(
        prog="w2vdist", description="Distributed word2vec (skip-gram, negative sampling)."
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=Parser
    )
    for name, (module_name, help_text) in COMMANDS.items():
        if name != selected:
            sub.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(module_name)
        p = sub.add_parser(
            name, help=help_text, description=module.__doc__, allow_abbrev=False,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def _version() -> str:
    from w2vdist import __version__

    return f"w2vdist {__version__}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    selected = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(selected).parse_args(argv)
    try:
        return int(args._module.command(args) or 0)
    except UsageError as exc:
        print(f"w2vdist: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        if not _reader_gone():
            raise
        # `w2vdist neighbors ... | head`: stop quietly, as Unix tools stopped by SIGPIPE do
        # (stdout pointed at /dev/null, or the interpreter's last flush would raise again).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as exc:  # read-only, permission, no space, too large: say which path
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"w2vdist: {where}{exc.strerror or exc}".rstrip(), file=sys.stderr)
        return 1
    except (MemoryError, RuntimeError) as exc:
        why = out_of_memory(exc)
        if why is None:
            raise
        print(f"w2vdist: out of memory{': ' + why if why else ''}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("w2vdist: interrupted", file=sys.stderr)
        return 130


def _reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (and not some other pipe broken)."""
    poller = select.poll()
    poller.register(sys.stdout.fileno(), select.POLLOUT)
    return any(event & select.POLLERR for _, event in poller.poll(0))


if __name__ == "__main__":
    sys.exit(main())
