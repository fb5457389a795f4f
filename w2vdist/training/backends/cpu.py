"""The CPU training kernel: word2vec.c's skip-gram with negative sampling, compiled on first use.

Why a compiled kernel: SGNS on CPU is many tiny dot products and row updates per word. Eager
torch pays dispatch per batched op and needs large batches, which lose quality; word2vec.c's
sequential per-pair SGD with Hogwild threads is faster and better. The C source (`sgns_cpu.c`)
is plain C99 + pthreads, built by the system compiler in about a second and loaded with ctypes,
which releases the GIL during the call. A torch C++ extension would compile for a minute against
torch's headers on a small machine, for no gain here; pthreads rather than OpenMP keeps a second
OpenMP runtime out of a process that already has torch's.

Build: `$CC` (else `cc`, `gcc`, `clang`) with `-O3 -march=native`, falling back to portable
flags when the compiler refuses. Never `-ffast-math`: linking a shared object with it (GCC < 13)
adds `crtfastmath.o`, which turns on flush-to-zero in the whole Python process when loaded. The
library is cached in `$XDG_CACHE_HOME/w2vdist` (else `~/.cache/w2vdist`, else the temp
directory) under a hash of source and header, compiler, flags and CPU features, so a home
directory shared by different nodes never serves code built for another CPU; it is compiled to
a temporary name and renamed into place, so concurrent ranks never load a half-written file.
Without a working compiler `available()` is False and `unavailable_reason()` says why; callers
use torch instead.

Semantics of `train_block` (word2vec.c skip-gram with negative sampling):
- Each token is kept with probability `keep_prob[token]` (a draw only when that is < 1); windows
  then span the kept words of a sentence and never cross sentence boundaries.
- Per centre word a half-width h is drawn uniformly from [1, window]; each kept word within h
  is a context c. The pair trains input row c against the centre word's output row (label 1)
  and `negative` draws from `neg_table` (label 0); a draw equal to the centre word is skipped,
  not redrawn, as in word2vec.c. The draws are fresh per pair (word2vec.c), or with
  `share_negatives` made once per centre word for the first of its contexts and used for all
  of them (pWord2Vec): a sixth of the draws at window 5, output rows that stay in cache across
  the window, 1.3x the speed, and on the benchmark corpus vectors as good or better
  (BENCHMARKS.md).
- Exact sigmoid (no 1000-entry table, no clipping at |x| > 6). The input row's gradient is
  summed over the targets and added after them; output rows are updated target by target.
- loss = sum over pairs of -log sig(pos) - sum log sig(-neg), accumulated in double.
- The learning rate falls linearly from alpha_start to alpha_end with the token's position in
  the block, so callers keep word2vec.c's global decay by passing each block's endpoints.
- Negatives come from an alias table of count^0.75 (`sampling.alias_table`): exact, 8 bytes
  a word, so it stays in cache; word2vec.c's 1e8-slot table (400 MB) misses cache on nearly
  every draw.
- RNG: word2vec.c's LCG (r = r * 25214903917 + 11 mod 2^64), but each draw reads the high bits
  (the low bits of a power-of-two LCG have short periods): keep iff (r >> 40) < keep_prob * 2^24;
  h = 1 + ((r >> 32) * window >> 32); negative: x = (r >> 32) * V, row i = x >> 32, kept iff
  (x mod 2^32) >> 1 < threshold_i, else alias_i. Thread t starts from output t+1 of SplitMix64
  seeded with `seed`, so threads=1 is deterministic. Draws for 32 centre words are made before
  their pairs train, in the same order, so the rows of upcoming pairs can be prefetched.
- Threads (Hogwild: no locks on the tables) take shares of whole sentences, about 1024 tokens
  each, from a shared counter until none is left: a thread that the OS delays holds up the
  others for one share at most, and no sentence is cut. Each thread's RNG runs on across the
  shares it takes, so results depend on the thread count and, with threads > 1, on timing.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from w2vdist.files import atomic_path, user_cache
from w2vdist.host import cores

if TYPE_CHECKING:
    from w2vdist.training.merge import Saturation
    from w2vdist.training.sampling import WindowSampler
    from w2vdist.training.sgns import Embeddings

SOURCE = Path(__file__).with_name("sgns_cpu.c")
HEADERS = [SOURCE.with_name("sgns_dot.h")]  # what SOURCE includes: part of the build's key
_BASE_FLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math"]
FLAG_SETS = [[*_BASE_FLAGS, "-march=native"], _BASE_FLAGS, ["-O2"]]  # tried in this order
_LINK_FLAGS = ["-std=c99", "-fPIC", "-shared", "-pthread"]

_lock = threading.Lock()
_state: dict[str, object] = {}  # "lib": the loaded library, or "reason": why there is none
_checked_table: tuple[weakref.ref, int] | None = None  # (table, version) last checked


def available() -> bool:
    """True when the kernel is built (or can be built now) and loaded."""
    return _library() is not None


def unavailable_reason() -> str | None:
    """Why `available()` is False (no compiler, compile error, ...); None when it is True."""
    _library()
    return _state.get("reason")  # type: ignore[return-value]


def train_block(
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    w_in: torch.Tensor,
    w_out: torch.Tensor,
    keep_prob: torch.Tensor,
    neg_table: torch.Tensor,
    window: int,
    negative: int,
    alpha_start: float,
    alpha_end: float,
    seed: int,
    threads: int = 0,
    saturation: Saturation | None = None,
    share_negatives: bool = False,
) -> tuple[float, int, int]:
    """Train one block in place; returns (loss_sum, pairs, words_kept).

    tokens int32[N] and lengths int32[S] (sentence lengths summing to N) as in the shards;
    w_in, w_out float32[V, D]; keep_prob float32[V] (`w2vdist.training.sampling.keep_probabilities`);
    neg_table int32[V, 2] from `sampling.alias_table`; threads 0: every core this process may use.
    `saturation` (float32[V] each): each update adds alpha |g| / 2 times the other row's squared
    norm (as of `saturation.norms`) to the updated row's total, for `local` merges (`merge.py`).
    `share_negatives`: a centre word's negatives serve its whole window (else fresh per pair).
    """
    _check_tensor("tokens", tokens, torch.int32, 1)
    _check_tensor("lengths", lengths, torch.int32, 1)
    _check_tensor("w_in", w_in, torch.float32, 2)
    _check_tensor("w_out", w_out, torch.float32, 2)
    _check_tensor("keep_prob", keep_prob, torch.float32, 1)
    _check_tensor("neg_table", neg_table, torch.int32, 2)
    vocab, dim = w_in.shape
    if w_out.shape != w_in.shape:
        raise ValueError(f"w_out has shape {tuple(w_out.shape)}, w_in {tuple(w_in.shape)}")
    if not 0 < vocab < 2**31 or dim == 0:
        raise ValueError(f"w_in has shape {tuple(w_in.shape)}: no rows, no columns or > 2^31 rows")
    if keep_prob.shape != (vocab,):
        raise ValueError(f"keep_prob has shape {tuple(keep_prob.shape)}, expected ({vocab},)")
    if neg_table.shape != (vocab, 2):
        raise ValueError(f"neg_table has shape {tuple(neg_table.shape)}, expected ({vocab}, 2)")
    if window < 1 or negative < 1:
        raise ValueError(f"window ({window}) and negative ({negative}) must be >= 1")
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0: all cores), got {threads}")
    if lengths.numel() and int(lengths.min()) < 0:
        raise ValueError("lengths has a negative sentence length")
    total = int(lengths.sum(dtype=torch.int64))
    if total != tokens.numel():
        raise ValueError(f"lengths sum to {total}, but there are {tokens.numel()} tokens")
    if tokens.numel():
        lo, hi = (int(v) for v in torch.aminmax(tokens))
        if lo < 0 or hi >= vocab:
            raise ValueError(f"tokens has id {lo if lo < 0 else hi} outside [0, {vocab})")
    _check_table(neg_table, vocab)
    tracked = [0, 0, 0, 0]
    if saturation is not None:
        tracked = []
        for name in ("norm_in", "norm_out", "sat_in", "sat_out"):
            t = getattr(saturation, name)
            _check_tensor(name, t, torch.float32, 1)
            if t.shape != (vocab,):
                raise ValueError(f"{name} has shape {tuple(t.shape)}, expected ({vocab},)")
            tracked.append(t.data_ptr())

    lib = _require_library()
    loss, pairs, kept = ctypes.c_double(), ctypes.c_int64(), ctypes.c_int64()
    err = lib.w2v_train_block(
        tokens.data_ptr(), tokens.numel(), lengths.data_ptr(), lengths.numel(),
        w_in.data_ptr(), w_out.data_ptr(), vocab, dim, keep_prob.data_ptr(), neg_table.data_ptr(),
        window, negative, alpha_start, alpha_end, *tracked, int(share_negatives),
        seed & (2**64 - 1),
        threads or cores(),
        ctypes.byref(loss), ctypes.byref(pairs), ctypes.byref(kept),
    )  # fmt: skip
    if err:
        raise MemoryError("CPU kernel: out of memory")
    return loss.value, pairs.value, kept.value


def alias_table(weights: np.ndarray) -> torch.Tensor:
    """`sampling.alias_table`'s construction in C (V can be millions): int32[V, 2] rows of
    (threshold, alias); a draw keeps its slot with probability threshold / 2^31."""
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    table = torch.empty(len(weights), 2, dtype=torch.int32)
    if _require_library().w2v_alias_table(weights.ctypes.data, len(weights), table.data_ptr()):
        raise MemoryError("CPU kernel: out of memory")
    return table


def _check_tensor(name: str, t: object, dtype: torch.dtype, ndim: int) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(f"{name} must be a CPU tensor, got device {t.device}")
    if t.dtype != dtype:
        raise TypeError(f"{name} must be {dtype}, got {t.dtype}")
    if t.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(t.shape)}")
    if not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous (call .contiguous() first)")


def _check_table(table: torch.Tensor, vocab: int) -> None:
    """Thresholds >= 0, aliases in [0, vocab); checked once per table version, not every block."""
    global _checked_table
    c = _checked_table
    if c is not None and c[0]() is table and c[1] == table._version:
        return
    if int(table[:, 0].min()) < 0:
        raise ValueError("neg_table has a negative threshold; build it with sampling.alias_table()")
    lo, hi = (int(v) for v in torch.aminmax(table[:, 1]))
    if lo < 0 or hi >= vocab:
        raise ValueError(f"neg_table has alias {lo if lo < 0 else hi} outside [0, {vocab})")
    _checked_table = (weakref.ref(table), table._version)


def _library() -> ctypes.CDLL | None:
    with _lock:
        if not _state:
            failures = []
            try:
                cc = _compiler()
                _version(tuple(cc))
                for flags in FLAG_SETS:
                    try:
                        _state["lib"] = build(flags, cc)
                        break
                    except RuntimeError as exc:
                        failures.append(f"{' '.join(flags)}: {exc}")
            except RuntimeError as exc:
                failures.append(str(exc))
            if "lib" not in _state:
                _state["reason"] = "could not build the CPU kernel: " + "; ".join(failures)
        return _state.get("lib")  # type: ignore[return-value]


def _require_library() -> ctypes.CDLL:
    lib = _library()
    if lib is None:
        raise RuntimeError(f"CPU kernel unavailable: {unavailable_reason()}")
    return lib


def build(flags: list[str], cc: list[str] | None = None) -> ctypes.CDLL:
    """The library built with `flags` (once per source, compiler, flags and CPU), loaded."""
    cc = cc or _compiler()
    sources = [path.read_text() for path in (SOURCE, *HEADERS)]
    key = "\n".join([*sources, *cc, _version(tuple(cc)), *flags, _cpu_id()])
    path = user_cache() / f"sgns_cpu-{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"
    if not path.exists():
        _compile(cc, flags, path)
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as exc:
        raise RuntimeError(f"{path}: {exc}") from None
    lib.w2v_train_block.restype = ctypes.c_int
    argtypes: list[Any] = (
        [ctypes.c_void_p, ctypes.c_int64] * 2
        + [ctypes.c_void_p] * 2 + [ctypes.c_int64] * 2 + [ctypes.c_void_p] * 2
        + [ctypes.c_int] * 2 + [ctypes.c_float] * 2 + [ctypes.c_void_p] * 4
        + [ctypes.c_int, ctypes.c_uint64, ctypes.c_int]
        + [ctypes.POINTER(ctypes.c_double)] + [ctypes.POINTER(ctypes.c_int64)] * 2
    )  # fmt: skip
    lib.w2v_train_block.argtypes = argtypes
    lib.w2v_alias_table.restype = ctypes.c_int
    lib.w2v_alias_table.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
    return lib


def _compiler() -> list[str]:
    if os.environ.get("CC"):
        return shlex.split(os.environ["CC"])
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return [name]
    raise RuntimeError("no C compiler found (install gcc or set CC)")


@functools.cache
def _version(cc: tuple[str, ...]) -> str:
    try:
        return subprocess.run([*cc, "--version"], capture_output=True, text=True).stdout
    except OSError as exc:
        raise RuntimeError(f"cannot run the C compiler {' '.join(cc)}: {exc}") from None


def _compile(cc: list[str], flags: list[str], path: Path) -> None:
    """Compile to a temporary name beside `path`, then rename: readers never see a partial file."""
    with atomic_path(path) as tmp:
        cmd = [*cc, *flags, *_LINK_FLAGS, "-o", str(tmp), str(SOURCE), "-lm"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RuntimeError(str(exc)) from None
        if done.returncode != 0:
            raise RuntimeError((done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1])


def _cpu_id() -> str:
    """What `-march=native` depends on: the machine and, on Linux, the CPU's feature flags."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = ""
    return f"{platform.machine()} {platform.processor()} {flags.strip()}"


@dataclass
class KernelStep:
    """One `train_block` call per step; sampling happens in C from the sampler's keep
    probabilities and an alias table of the same counts."""

    sampler: WindowSampler
    tables: Embeddings
    threads: int
    saturation: Saturation | None
    share_negatives: bool

    def __post_init__(self) -> None:
        self.keep = self.sampler.keep.cpu().contiguous()
        self.table = self.sampler.negatives.table

    def __call__(
        self, tokens: torch.Tensor, sentence: torch.Tensor, lr_start: float, lr_end: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = torch.unique_consecutive(sentence, return_counts=True)[1]
        seed = int(torch.randint(1, 2**62, (1,), generator=self.sampler.generator))
        loss, pairs, _ = train_block(
            tokens.to(torch.int32), lengths.to(torch.int32),
            self.tables.input.data, self.tables.output.data, self.keep, self.table,
            window=self.sampler.window, negative=self.sampler.negative,
            alpha_start=lr_start, alpha_end=lr_end, seed=seed, threads=self.threads,
            saturation=self.saturation, share_negatives=self.share_negatives,
        )
        return torch.tensor(loss, dtype=torch.float64), torch.tensor(pairs)
