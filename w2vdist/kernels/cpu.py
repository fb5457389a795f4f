"""The CPU training kernel: word2vec.c's skip-gram with negative sampling, compiled on first use.

Why a compiled kernel: SGNS on CPU is thousands of tiny dot products and row updates per word.
Eager torch pays dispatch for each batched op and needs large batches, which lose quality;
word2vec.c's sequential per-pair SGD with Hogwild threads is both faster and better. The C
source (`sgns_cpu.c`) is plain C99 + pthreads, built with the system compiler in well under a
second and loaded with ctypes (which releases the GIL during the call). A torch C++ extension
would take a minute to compile against torch's headers on a small machine, for no gain here.

Build: `$CC` (else `cc`, `gcc`, `clang`) with `-O3 -march=native`, falling back to portable
flags when the compiler refuses. Never `-ffast-math`: linking a shared object with it (GCC < 13)
pulls in `crtfastmath.o`, which turns on flush-to-zero for the whole Python process on load;
`-fno-math-errno -fno-trapping-math` plus `omp simd` reductions (`-fopenmp-simd`, no OpenMP
runtime) give the same vectorised loops. The library is cached under
`$XDG_CACHE_HOME/w2vdist` (else `~/.cache/w2vdist`, else the temp directory), named by a hash of
source, compiler, flags and CPU, so a home directory shared by different nodes never loads code
built for another CPU; it is compiled to a temporary name and renamed into place, so concurrent
ranks never see a half-written file. Without a working compiler `available()` is False and
`unavailable_reason()` says why; callers then use the torch path.

Semantics of `train_block` (word2vec.c skip-gram, negative sampling):
- Each token is kept with probability `keep_prob[token]` (drawn only when that is < 1); windows
  then span the kept words of a sentence and never cross sentence boundaries.
- Per centre word a half-width h is drawn uniformly from [1, window]; each kept word within h
  is a context c. The pair trains input row c against output row of the centre word (label 1)
  and `negative` draws from `neg_table` (label 0); a draw equal to the centre word is skipped,
  not redrawn, as in word2vec.c.
- Exact sigmoid (no table, no clipping at |x| > 6). The gradient for the input row is summed
  over the targets and added after them; output rows are updated as each target is visited.
- loss = sum over pairs of -log sig(pos) - sum log sig(-neg), accumulated in double.
- The learning rate falls linearly from alpha_start to alpha_end over the block's tokens
  (over each thread's share of them), so callers keep word2vec.c's global decay by passing
  each block's endpoints.
- RNG: word2vec.c's LCG (r = r * 25214903917 + 11 mod 2^64), but every draw takes the high
  bits (the low bits of a power-of-two LCG have short periods): keep iff (r >> 40) <
  keep_prob * 2^24; h = 1 + ((r >> 32) * window >> 32); negative = table[(r >> 32) * T >> 32].
  Thread t starts from output t+1 of SplitMix64 seeded with `seed`; threads=1 is deterministic.
- Threads (Hogwild, no locks) take contiguous token ranges, cut at sentence starts when one is
  near (within 1/16 of a share), else inside a long sentence.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading
import weakref
from pathlib import Path

import numpy as np
import torch

SOURCE = Path(__file__).with_name("sgns_cpu.c")
_BASE_FLAGS = ["-O3", "-fopenmp-simd", "-fno-math-errno", "-fno-trapping-math"]
_FLAG_SETS = [_BASE_FLAGS + ["-march=native"], _BASE_FLAGS, ["-O2"]]
_LINK_FLAGS = ["-std=c99", "-fPIC", "-shared", "-pthread"]
_ERRORS = {1: "out of memory"}

_lock = threading.Lock()
_state: dict[str, object] = {}  # "lib": ctypes.CDLL, or "reason": why there is none
_checked_table: tuple[weakref.ref, int, int] | None = None  # (table, version, vocab size)


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
) -> tuple[float, int, int]:
    """Train one block in place; returns (loss_sum, pairs, words_kept).

    tokens int32[N] and lengths int32[S] (sentence lengths summing to N) as in the shards;
    w_in, w_out float32[V, D]; keep_prob float32[V] (`w2vdist.sampling.keep_probabilities`);
    neg_table
    int32[T] (see `unigram_table`); threads 0 means every core this process may use.
    """
    _check_tensor("tokens", tokens, torch.int32, 1)
    _check_tensor("lengths", lengths, torch.int32, 1)
    _check_tensor("w_in", w_in, torch.float32, 2)
    _check_tensor("w_out", w_out, torch.float32, 2)
    _check_tensor("keep_prob", keep_prob, torch.float32, 1)
    _check_tensor("neg_table", neg_table, torch.int32, 1)
    vocab, dim = w_in.shape
    if w_out.shape != w_in.shape:
        raise ValueError(f"w_out has shape {tuple(w_out.shape)}, w_in {tuple(w_in.shape)}")
    if vocab == 0 or dim == 0:
        raise ValueError(f"w_in has shape {tuple(w_in.shape)}: no rows or no columns")
    if keep_prob.shape != (vocab,):
        raise ValueError(f"keep_prob has shape {tuple(keep_prob.shape)}, expected ({vocab},)")
    if not 0 < neg_table.numel() < 2**32:
        raise ValueError(f"neg_table has {neg_table.numel()} entries, expected 1 to 2^32 - 1")
    if window < 1 or negative < 1:
        raise ValueError(f"window ({window}) and negative ({negative}) must be >= 1")
    if lengths.numel() and int(lengths.min()) < 0:
        raise ValueError("lengths has a negative sentence length")
    if int(lengths.sum(dtype=torch.int64)) != tokens.numel():
        raise ValueError(
            f"lengths sum to {int(lengths.sum(dtype=torch.int64))}, "
            f"but there are {tokens.numel()} tokens"
        )
    if tokens.numel():
        lo, hi = (int(v) for v in torch.aminmax(tokens))
        if lo < 0 or hi >= vocab:
            raise ValueError(f"tokens has id {lo if lo < 0 else hi} outside [0, {vocab})")
    _check_table(neg_table, vocab)
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0: all cores), got {threads}")

    lib = _library()
    if lib is None:
        raise RuntimeError(f"CPU kernel unavailable: {unavailable_reason()}")
    loss = ctypes.c_double()
    pairs = ctypes.c_int64()
    kept = ctypes.c_int64()
    err = lib.w2v_train_block(
        tokens.data_ptr(), tokens.numel(), lengths.data_ptr(), lengths.numel(),
        w_in.data_ptr(), w_out.data_ptr(), dim,
        keep_prob.data_ptr(), neg_table.data_ptr(), neg_table.numel(),
        window, negative, alpha_start, alpha_end,
        seed & (2**64 - 1), threads or _cores(),
        ctypes.byref(loss), ctypes.byref(pairs), ctypes.byref(kept),
    )  # fmt: skip
    if err:
        raise MemoryError(f"CPU kernel: {_ERRORS.get(err, f'error {err}')}")
    return loss.value, pairs.value, kept.value


def default_table_size(vocab_size: int) -> int:
    """100 slots per word, between word2vec.c's 1e8 and 1e7 (40 MB), enough for rare words."""
    return int(min(100_000_000, max(10_000_000, 100 * vocab_size)))


def unigram_table(counts: np.ndarray, power: float = 0.75, size: int | None = None) -> torch.Tensor:
    """word2vec.c's negative-sampling table: word i fills a share count_i^power / sum of slots."""
    weights = np.asarray(counts, dtype=np.float64) ** power
    if weights.ndim != 1 or not weights.size or weights.sum() <= 0:
        raise ValueError("unigram_table needs a non-empty 1-D array with a positive count")
    size = default_table_size(len(weights)) if size is None else size
    ends = np.rint(np.cumsum(weights) / weights.sum() * size).astype(np.int64)
    ends[-1] = size
    slots = np.diff(ends, prepend=0)
    return torch.from_numpy(np.repeat(np.arange(len(weights), dtype=np.int32), slots))


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
    """Ids in [0, vocab); checked once per table version, not every block (it is large)."""
    global _checked_table
    c = _checked_table
    if c is not None and c[0]() is table and c[1:] == (table._version, vocab):
        return
    lo, hi = (int(v) for v in torch.aminmax(table))
    if lo < 0 or hi >= vocab:
        raise ValueError(f"neg_table has id {lo if lo < 0 else hi} outside [0, {vocab})")
    _checked_table = (weakref.ref(table), table._version, vocab)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _library() -> ctypes.CDLL | None:
    with _lock:
        if not _state:
            try:
                _state["lib"] = _load()
            except (RuntimeError, OSError) as exc:
                _state["reason"] = str(exc)
        return _state.get("lib")  # type: ignore[return-value]


def _load() -> ctypes.CDLL:
    cc = _compiler()
    try:
        version = subprocess.run([*cc, "--version"], capture_output=True, text=True).stdout
    except OSError as exc:
        raise RuntimeError(f"cannot run the C compiler {' '.join(cc)}: {exc}") from None
    cache = _cache_dir()
    failures = []
    for flags in _FLAG_SETS:
        key = "\n".join([SOURCE.read_text(), " ".join(cc), version, " ".join(flags), _cpu_id()])
        path = cache / f"sgns_cpu-{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"
        if not path.exists():
            error = _compile(cc, flags, path)
            if error:
                failures.append(f"{' '.join(flags)}: {error}")
                continue
        try:
            lib = ctypes.CDLL(str(path))
        except OSError as exc:
            failures.append(f"{path}: {exc}")
            continue
        lib.w2v_train_block.restype = ctypes.c_int
        lib.w2v_train_block.argtypes = (
            [ctypes.c_void_p, ctypes.c_int64] * 2
            + [ctypes.c_void_p] * 2 + [ctypes.c_int64]
            + [ctypes.c_void_p] * 2 + [ctypes.c_int64]
            + [ctypes.c_int] * 2 + [ctypes.c_float] * 2 + [ctypes.c_uint64, ctypes.c_int]
            + [ctypes.POINTER(ctypes.c_double)] + [ctypes.POINTER(ctypes.c_int64)] * 2
        )  # fmt: skip
        return lib
    raise RuntimeError("could not build the CPU kernel: " + "; ".join(failures))


def _compiler() -> list[str]:
    if os.environ.get("CC"):
        return shlex.split(os.environ["CC"])
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return [name]
    raise RuntimeError("no C compiler found (install gcc or set CC)")


def _compile(cc: list[str], flags: list[str], path: Path) -> str | None:
    """Compile to a temporary name beside `path`, then rename: readers never see a partial file."""
    fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        cmd = [*cc, *flags, *_LINK_FLAGS, "-o", tmp, str(SOURCE), "-lm"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
        if done.returncode != 0:
            return (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        os.replace(tmp, path)
        return None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _cache_dir() -> Path:
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


def _cpu_id() -> str:
    """What `-march=native` depends on: the machine and, on Linux, the CPU's feature flags."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = ""
    return f"{platform.machine()} {platform.processor()} {flags.strip()}"
