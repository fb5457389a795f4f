"""One run on a lent GPU that says whether the GPU path works and how fast: tagged lines.

    bash benchmarks/gpu_check.sh            # on a CUDA machine, at most about 8 minutes
    bash benchmarks/gpu_check.sh --quick    # anywhere: tiny sizes, Triton's CPU interpreter

Each section prints one line or more, tagged: ENV (GPU, torch, triton, NCCL), CORRECT (the
kernel against a float64 reference: relative error of the update, exact fp32 and TF32
operands; `gpu_correct.py`), SYNC (steps under CUDA's sync debug mode: no host
synchronisation), GRAPH (the step captured in a CUDA graph: the same draws as eager, the
host's time a step either way; `gpu_graph.py`), BENCH (raw words/s, pairs/s, peak memory and
the share of the measured DRAM bandwidth that the kernel's modelled traffic uses, per dim,
step size and backend; window 10, whose band is wider, and negative 10, fewer centres a
program), MEM (a 2M x 300 vocabulary: tables and one large step), CKPT (its
checkpoint: how long a save holds training up, written in turn and in the background;
`checkpoint_save.py`), NCCL (a 1-GPU
process group through both sync strategies; a full `local` merge at 2M x 300), E2E (synth ->
prepare -> train -> eval on the device, at this corpus's default steps, which a GPU captures
in a CUDA graph, and on a GPU also eagerly: planted analogies), LOADER (the loader alone,
shards to the device, by worker count; then the step at dims 100 and 300 fed by it at its
default workers, with the shares of the time spent waiting for the workers and handing
batches over; then `w2vdist train` itself, its logged rate once running), FIT (settings whose
tile the GPU cannot hold stop in one line; `fit`). A section that
fails prints `FAIL section: why` and the others still run; the exit code is the number of
failed sections.
`--quick` (and any machine without CUDA) runs the same code on CPU at tiny sizes, so that CI
keeps the plumbing working.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from benchmarks.checkpoint_save import measure
from benchmarks.gpu_correct import correct
from benchmarks.gpu_graph import graph


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes; CPU when no CUDA")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    quick = args.quick or not cuda
    device = torch.device("cuda" if cuda else "cpu")
    failed = 0
    for name, section in SECTIONS.items():
        start = time.perf_counter()
        try:
            section(device, quick)
        except Exception as exc:  # one section's failure must not hide the others' figures
            failed += 1
            print(f"FAIL {name}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                  flush=True)
            traceback.print_exc(file=sys.stderr)
        print(f"# {name} took {time.perf_counter() - start:.1f} s", flush=True)
    return failed


def env(device: torch.device, quick: bool) -> None:
    import triton

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none (CPU)"
    nccl = ".".join(map(str, torch.cuda.nccl.version())) if device.type == "cuda" else "-"
    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    print(f"ENV gpu={gpu!r} torch={torch.__version__} triton={triton.__version__} nccl={nccl} "
          f"cuda={torch.version.cuda} interpreter={interpret} quick={quick}", flush=True)


# ---- BENCH and MEM: the step alone, on Zipfian tokens already on the device ---------------

# Quick mode's step (and any step on CPU): Triton's interpreter takes about 2 ms a word.
QUICK_WORDS = 128


def _zipf_tokens(vocab: int, words: int, device: torch.device) -> torch.Tensor:
    ranks = torch.arange(1, vocab + 1, dtype=torch.float64)
    p = 1 / ranks
    return torch.multinomial((p / p.sum()).float(), words, replacement=True,
                             generator=torch.Generator().manual_seed(0)).to(device)


def _batch(vocab: int, words: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A step's batch as the loader hands it over: Zipfian tokens, in sentences of 20."""
    return _zipf_tokens(vocab, words, device), torch.arange(words, device=device) // 20


def _time(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median seconds of `fn` after one warm-up call (device events on CUDA)."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def _bandwidth(device: torch.device) -> float:
    """Measured device memory bandwidth, bytes/s: a large copy, bytes read plus written."""
    n = (1 << 28) if device.type == "cuda" else (1 << 22)
    a = torch.empty(n, dtype=torch.float32, device=device).uniform_()
    b = torch.empty_like(a)
    seconds = _time(lambda: b.copy_(a), device, 10)
    return 2 * a.numel() * 4 / seconds


def _step(backend: str, dim: int, vocab: int, words: int, device: torch.device,
          damping: float = -1.0, share: str = "centre", window: int = 5, negative: int = 5):
    """The trainer's step at `optim.damping` `damping` (-1: the backend's) with
    `model.share_negatives` `share`."""
    from w2vdist.training.config import Config, ModelConfig, OptimConfig
    from w2vdist.training import backends
    from w2vdist.training.sgns import Embeddings
    from w2vdist.training.sync import OneProcess

    cfg = Config(model=ModelConfig(dim=dim, share_negatives=share, window=window,
                                   negative=negative),
                 optim=OptimConfig(batch_words=words, damping=damping))
    cfg.train.backend = backend
    counts = torch.bincount(_zipf_tokens(vocab, 1 << 20, torch.device("cpu")),
                            minlength=vocab) + 1  # fmt: skip
    tables = Embeddings(vocab, dim, torch.Generator().manual_seed(0)).to(device)
    step = backends.build(cfg, tables, counts.numpy(), OneProcess(1, device),
                          torch.Generator(device=device).manual_seed(1))  # fmt: skip
    return step, tables


def bench(device: torch.device, quick: bool) -> None:
    from w2vdist.training import backends
    from w2vdist.training.backends import triton as kernels

    bandwidth = _bandwidth(device)
    print(f"BENCH copy_bandwidth={bandwidth / 1e9:.0f}GB/s", flush=True)
    vocab = 2000 if quick else 200_000
    sizes = (QUICK_WORDS,) if quick else (1 << 14, 1 << 15, 1 << 16, 1 << 17, 1 << 18, 1 << 20)
    # (backend, words, damping, dim tile, negatives), most wanted first, so that a slow kernel
    # stopped by BENCH_SECONDS still leaves the targets' figures: the default step at both
    # dims, the other step sizes, then at the default step undamped, damped in tiles of 32
    # (centre mode: 249 registers and 53 KB of shared memory under Triton 3.7.1, against 205
    # and 43 KB at the default 16; under 3.9 they spilled 4 bytes: which is faster is for a
    # GPU to say), chunk mode's shared negatives (2.1 times less traffic), window 10, whose
    # wider band spills (BENCHMARKS.md, "The kernel at wider windows"), and negative 10, 8
    # centres a program in the default's tile size (what fewer centres cost in traffic);
    # torch last, up to 262,144 words (its (N, 2W, K+1, D) intermediates are GBs at 1M).
    # (backend, words, damping, dim tile, negatives, window, K)
    default, damped = min(sizes[-1], 1 << 18), backends.DAMPING  # centre mode's
    triton = [("triton", default, damped, None, "centre", 5, 5)]
    triton += [("triton", words, damped, None, "centre", 5, 5) for words in sizes
               if words != default]
    triton += [("triton", default, 0.0, None, "centre", 5, 5),
               ("triton", default, damped, 32, "centre", 5, 5),
               ("triton", default, backends.CHUNK_DAMPING, None, "chunk", 5, 5),
               ("triton", default, damped, None, "centre", 10, 5),
               ("triton", default, damped, None, "centre", 5, 10)]
    torch_runs = [("torch", words, damped, None, "centre", 5, 5) for words in sizes
                  if words <= (1 << 18)]  # fmt: skip
    # Quick mode (Triton's interpreter, seconds a step) runs the variants at dim 100 only.
    runs = [(dim, *run) for group in ([triton[0]], triton[1:], torch_runs) for run in group
            for dim in ((300, 100) if run is triton[0] or not quick else (100,))]  # fmt: skip
    chosen = kernels.tiles  # the launcher's name for `tiling.tiles`, which a variant widens
    start = time.perf_counter()
    # On a GPU, what the script's bound leaves after the sections before, less what the later
    # ones need (quick mode's sizes are tiny).
    budget = BENCH_SECONDS if quick else \
        min(BENCH_SECONDS, SCRIPT_SECONDS - AFTER_BENCH_SECONDS - (start - STARTED))
    for i, (dim, backend, words, damping, block_d, share, window, negative) in enumerate(runs):
        # The first two (the targets' figures) always run; then leave the later sections theirs.
        if i >= 2 and time.perf_counter() - start > budget:
            print(f"BENCH stopped: over {budget:.0f} s before dim={dim} backend={backend} "
                  f"words_per_step={words}", flush=True)
            return
        if block_d:
            def widened(*args, block_d=block_d) -> dict:
                return {**chosen(*args), "BLOCK_D": block_d}

            kernels.tiles = widened
        try:
            _bench_one(backend, dim, vocab, words, damping, share, window, negative, device,
                       quick, bandwidth, kernels)
        finally:
            kernels.tiles = chosen


# BENCH's figures are the ones a slow kernel stretches: it runs at most BENCH_SECONDS, and
# stops sooner where the sections before it took long, leaving AFTER_BENCH_SECONDS of the
# script's bound (gpu_check.sh) to MEM, CKPT, NCCL, E2E's two runs and LOADER (by estimate; what
# BENCH leaves out at the end, the torch step's rows, matters least).
STARTED = time.perf_counter()
SCRIPT_SECONDS = float(os.environ.get("GPU_CHECK_SECONDS", "480"))
BENCH_SECONDS = 180
AFTER_BENCH_SECONDS = 300
FIT_SECONDS = 60  # FIT compiles a kernel that spills kilobytes: 30 s for sm_90 here (2 cores)


def _bench_one(backend: str, dim: int, vocab: int, words: int, damping: float, share: str,
               window: int, negative: int, device: torch.device, quick: bool,
               bandwidth: float, kernels) -> None:
    from w2vdist.training.backends.tiling import chunk_negatives

    step, tables = _step(backend, dim, vocab, words, device, damping, share, window, negative)
    tokens, sentence = _batch(vocab, words, device)
    result = {}

    def run() -> None:
        result["out"] = step(tokens, sentence, 0.025, 0.025)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = _time(run, device, 1 if quick else 20)
    pairs = int(result["out"][1])
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" \
        else float("nan")
    # Modelled traffic: a program per chunk of kept words reads its band and target rows twice
    # and adds to them once (a read and a write): 4 x rows x dim floats.
    # Rows, not `tiles`' padded columns: K + 1 targets a centre, or a chunk's own negatives.
    kept = float(step.sampler.keep[tokens].sum())
    blocks = kernels.tiles(window, negative, dim, share)  # as launched (BLOCK_D widened)
    chunk = int(blocks["CHUNK"])  # centres a program: fewer past 7 negatives or window 24
    targets = chunk * (negative + 1) if share == "centre" else \
        chunk + chunk_negatives(negative)
    rows = chunk + 2 * window + targets
    triton = backend == "triton"
    traffic = kept / chunk * rows * dim * 4 * 4 if triton else float("nan")
    resident = step.damping.resident if triton and step.damping else "-"
    print(f"BENCH backend={backend} dim={dim} words_per_step={words} "
          f"damping={damping} negatives={share} window={window} negative={negative} "
          f"words_per_s={words / seconds:,.0f} "
          f"pairs_per_s={pairs / seconds:,.0f} step_ms={seconds * 1e3:.2f} "
          f"peak_gb={peak:.2f} bandwidth_share={traffic / seconds / bandwidth:.2f} "
          f"tiles={blocks['BLOCK_B']}x{blocks['BLOCK_J']}x{blocks['BLOCK_D']} "
          f"resident_programs={resident}", flush=True)


def mem(device: torch.device, quick: bool) -> None:
    vocab, dim = (20_000, 50) if quick else (2_000_000, 300)
    words = QUICK_WORDS if quick else 1 << 20
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step, tables = _step("triton", dim, vocab, words, device)
    step(*_batch(vocab, words, device), 0.025, 0.025)
    tables_gb = 2 * vocab * dim * 4 / 2**30
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    print(f"MEM vocab={vocab} dim={dim} words_per_step={words} tables_gb={tables_gb:.2f} "
          f"peak_gb={peak:.2f}", flush=True)


def ckpt(device: torch.device, quick: bool) -> None:
    vocab, dim = (20_000, 50) if quick else (2_000_000, 300)
    with tempfile.TemporaryDirectory() as directory:
        print(f"CKPT {measure(vocab, dim, device, Path(directory))}", flush=True)


# ---- SYNC: the step on the device never waits for the host --------------------------------


def no_host_sync(device: torch.device, quick: bool) -> None:
    """Three steps of each backend after a warm-up one, under
    `torch.cuda.set_sync_debug_mode`: the Triton step must make no operation that makes the
    GPU wait for the host ("error": the first raises); the torch step, the reference, reads
    its coalesced rows' count for each table, and for each table a piece of PIECE_CENTRES in a
    larger step (`reference.host_syncs`), and no more ("warn", counted). On CPU the same steps run
    unchecked (the tests count such ops with a shim)."""
    import warnings

    from w2vdist.training.backends.reference import host_syncs

    cuda = device.type == "cuda"
    vocab, words = (200_000, 1 << 16) if cuda else (2000, QUICK_WORDS)
    for backend in ("triton", "torch"):
        step, _ = _step(backend, 100, vocab, words, device)
        tokens, sentence = _batch(vocab, words, device)
        step(tokens, sentence, 0.025, 0.025)  # loads the kernel, sizes the damping's crowd
        allowed = 0 if backend == "triton" else 3 * host_syncs(words)
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.set_sync_debug_mode("error" if backend == "triton" else "warn")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                for _ in range(3):
                    loss, pairs = step(tokens, sentence, 0.025, 0.025)
            finally:
                if cuda:
                    torch.cuda.set_sync_debug_mode("default")
        syncs = sum("synchronizing CUDA operation" in str(w.message) for w in caught)
        print(f"SYNC backend={backend} steps=3 words_per_step={words} checked="
              f"{f'yes host_syncs={syncs} allowed={allowed}' if cuda else 'no (CPU)'} "
              f"pairs={int(pairs)} loss_per_pair={float(loss) / int(pairs):.3f}", flush=True)
        if syncs > allowed:
            raise AssertionError(f"{backend}: {syncs} host synchronisations in 3 steps, "
                                 f"{allowed} allowed")


# ---- NCCL: a real process group of one -----------------------------------------------------


def nccl(device: torch.device, quick: bool) -> None:
    import torch.distributed as dist

    from w2vdist.training.config import SyncConfig
    from w2vdist.training import sync
    from w2vdist.training.sgns import Embeddings, gradients

    backend = "nccl" if device.type == "cuda" else "gloo"
    store = dist.TCPStore("127.0.0.1", 0, 1, is_master=True)
    dist.init_process_group(backend, store=store, rank=0, world_size=1)
    try:
        vocab, dim = (20_000, 50) if quick else (2_000_000, 300)
        tables = Embeddings(vocab, dim, torch.Generator().manual_seed(0)).to(device)
        exact = sync.ExactSync(1, device)
        n = 512
        ids = torch.randint(0, vocab, (n,), device=device)
        grads = gradients(tables, ids, ids.view(-1, 1), ids.view(-1, 1).repeat(1, 5))
        exact.exchange(grads)
        local = sync.LocalSync(1, SyncConfig(strategy="local", hot_rows=sync.HOT_ROWS), tables)
        seconds = _time(lambda: local.merge(tables), device, 3)
        queued, counted = _merge_clock(local, tables, device)
        print(f"NCCL backend={backend} version="
              f"{'.'.join(map(str, torch.cuda.nccl.version())) if backend == 'nccl' else '-'} "
              f"exact_exchange=ok full_merge_ms={seconds * 1e3:.1f} vocab={vocab} dim={dim} "
              f"merge_clock_ms={counted * 1e3:.1f} after_queued_ms={queued * 1e3:.1f}",
              flush=True)
        if device.type == "cuda" and not counted < 0.5 * queued:
            raise AssertionError("the merge's clock counted the work queued before it: merges "
                                 "scheduled by time would space out for the steps' time")
    finally:
        dist.destroy_process_group()


def _merge_clock(local, tables, device: torch.device) -> tuple[float, float]:
    """(seconds of work queued on the device just before a merge, seconds the merge's clock
    counted for it). On a GPU the host only enqueues work: the merge's clock (`DeviceClock`)
    must count the merge, not the step still running before it."""
    n = 4096 if device.type == "cuda" else 512
    square = torch.randn(n, n, device=device)

    def work() -> None:
        for _ in range(20):
            square @ square

    queued = _time(work, device, 1)
    before = local.seconds
    work()  # queued, not waited for
    local.merge(tables)
    return queued, local.seconds - before


# ---- E2E: the commands a user runs -----------------------------------------------------


def e2e(device: torch.device, quick: bool) -> None:
    from w2vdist.cli import build_parser

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sentences = "6000" if quick else "60000"
        run = [sys.executable, "-m", "w2vdist"]
        subprocess.run([*run, "synth", str(root / "synth"), "--seed", "3", "--sentences",
                        sentences], check=True, capture_output=True, timeout=300)  # fmt: skip
        subprocess.run([*run, "prepare", str(root / "synth" / "corpus.txt"), "-o",
                        str(root / "shards"), "--min-count", "5"], check=True,
                       capture_output=True, timeout=300)  # fmt: skip
        backend = "triton" if device.type == "cuda" else "auto"
        # This corpus's default steps (1/32 of it) are small enough to be captured in a CUDA
        # graph; on a GPU also the step eager. Elsewhere the flag is only parsed, so that it
        # cannot fail the one GPU run.
        variants = {"default": [], "eager": ["--train.no-cuda-graph"]}
        for variant, extra in variants.items():
            if variant != "default" and device.type != "cuda":
                build_parser("train").parse_args(["train", *extra])
                print(f"E2E variant={variant} flags parsed; trained on a GPU only", flush=True)
                continue
            _e2e_train(run, root, backend, variant, extra, sentences, quick, device)


def _e2e_train(run: list[str], root: Path, backend: str, variant: str, extra: list[str],
               sentences: str, quick: bool, device: torch.device) -> None:
    start = time.perf_counter()
    subprocess.run([*run, "train", "--data.shards", str(root / "shards"),
                    "--train.run_dir", str(root / variant), "--train.backend", backend,
                    "--model.dim", "50", "--model.sample", "1e-3", "--train.epochs",
                    "1" if quick else "3", "--wandb", "disabled", *extra], check=True,
                   capture_output=True, timeout=600)  # fmt: skip
    seconds = time.perf_counter() - start
    scores = root / f"{variant}.json"
    subprocess.run([*run, "eval", str(root / variant), "--eval.analogies",
                    str(root / "synth" / "analogies.txt"), "--eval.similarity",
                    str(root / "synth" / "similarity.tsv"), "--json", str(scores)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    result = json.loads(scores.read_text())
    analogies, spearman = result["analogies"]["total"], result["similarity"]["spearman"]
    ran = json.loads((root / variant / "config.json").read_text())
    print(f"E2E backend={backend} variant={variant} device={device.type} "
          f"sentences={sentences} words_per_step={ran['optim']['batch_words']} "
          f"cuda_graph={str(ran['train']['cuda_graph']).lower()} train_s={seconds:.1f} "
          f"analogies={analogies:.3f} spearman={spearman:.3f}", flush=True)
    # The GPU step emulated on CPU (`gpu_crowd.py`, 2,112 centres in flight) and the
    # compiled CPU kernel both score 1.000 / 0.943 on this corpus (2026-12-03).
    if not quick and not (analogies >= 0.9 and spearman >= 0.85):
        raise AssertionError(f"{variant}: planted relations not learned: analogies "
                             f"{analogies:.3f} (>= 0.9 expected), spearman {spearman:.3f} "
                             "(>= 0.85)")


# ---- LOADER: shards -> pinned batches -> device, without training -----------------------


def loader(device: torch.device, quick: bool) -> None:
    """The loader alone at a GPU-sized step, by worker count: it must stay several times
    ahead of BENCH's step; then the step fed by it (`w2vdist bench`), as a run trains. Last,
    so that its minute cannot cost another section's figures."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # 8 shards, as a rank of a large corpus has several.
        words, batch = (300_000, 65_536) if quick else (8_000_000, 1_048_576)
        vocabulary = np.array([f"w{i}" for i in range(50_000)])
        ranks = np.random.default_rng(0).zipf(1.1, words) % len(vocabulary)
        lines = vocabulary[ranks].reshape(-1, 20)
        (root / "corpus.txt").write_text("\n".join(" ".join(line) for line in lines) + "\n")
        run = [sys.executable, "-m", "w2vdist"]
        subprocess.run([*run, "prepare", str(root / "corpus.txt"), "-o", str(root / "shards"),
                        "--min-count", "1", "--shard-tokens", str(words // 8),
                        "--workers", str(min(8, os.cpu_count() or 1))],
                       check=True, capture_output=True, timeout=300)  # fmt: skip
        for workers in (0, 1) if quick else (0, 1, 2, 4, 8):
            out = root / f"loader-{workers}.json"
            subprocess.run([*run, "bench", "--loader-only", "--data.shards", str(root / "shards"),
                            "--optim.batch_words", str(batch), "--data.loader_workers",
                            str(workers), "--seconds", "0.5" if quick else "5", "--warmup",
                            "1" if quick else "2",
                            "--train.device", device.type, "--json", str(out)],
                           check=True, capture_output=True, timeout=120)  # fmt: skip
            figures = json.loads(out.read_text())["figures"]
            # words_per_cpu_s: the trainer's own side, the rate it would take batches at from
            # workers that never kept it waiting.
            print(f"LOADER device={device.type} workers={workers} words_per_step={batch} "
                  f"words_per_s={figures['words_per_s']:,.0f} "
                  f"trainer_words_per_cpu_s={figures['words_per_cpu_s']:,.0f} "
                  f"cpus={os.cpu_count()}", flush=True)
        # Then the step fed by the loader at its default workers, as a run trains, and at dim
        # 100 (the faster step) with the earlier default of 2: the share of the time it
        # waited for the workers' chunks says whether they keep ahead, the hand-over's rest
        # whether the trainer's host does (on the H200, 2 and 4 workers ran alike, the host
        # 39% of the time in the hand-over).
        for dim, extra in ((100, []),) if quick else \
                ((100, []), (100, ["--data.loader_workers", "2"]), (300, [])):
            out = root / f"train-{dim}-{len(extra)}.json"
            subprocess.run([*run, "bench", "--data.shards", str(root / "shards"),
                            "--model.dim", str(dim), "--seconds", "0.5" if quick else "6",
                            "--warmup", "1" if quick else "3", "--train.device", device.type,
                            "--json", str(out),
                            *extra], check=True, capture_output=True, timeout=180)  # fmt: skip
            result = json.loads(out.read_text())
            figures, ran = result["figures"], result["settings"]["config"]
            print(f"LOADER train device={device.type} backend={ran['train']['backend']} "
                  f"dim={dim} words_per_step={ran['optim']['batch_words']} "
                  f"workers={ran['data']['loader_workers']} "
                  f"words_per_s={figures['words_per_s']:,.0f} "
                  f"loader_wait_share={figures['loader_wait_share']:.3f} "
                  f"handover_share={figures['handover_share']:.3f}", flush=True)
        _loader_run(run, root, device, quick)


def _loader_run(run: list[str], root: Path, device: torch.device, quick: bool) -> None:
    """`w2vdist train` itself on the same shards at dim 100: its logged rate once running
    (the median over the epochs after the first), which `bench` alone would not show short
    of the step's: the loop's reads from the device drain the GPU's queue (at every step
    they cost an H200 about 40% of the benchmark corpus's rate)."""
    run_dir = root / "run"
    subprocess.run([*run, "train", "--data.shards", str(root / "shards"), "--train.run_dir",
                    str(run_dir), "--train.epochs", "2" if quick else "40", "--model.dim", "100",
                    "--train.device", device.type, "--wandb.mode", "disabled"],
                   check=True, capture_output=True, timeout=180)  # fmt: skip
    config = json.loads((run_dir / "config.json").read_text())
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    running = [r for r in records if "words_per_s" in r][1:]
    print(f"LOADER run device={device.type} backend={config['train']['backend']} dim=100 "
          f"words_per_step={config['optim']['batch_words']} "
          f"control_every_steps={config['sync']['control_every_steps']} "
          f"records={len(running)} "
          f"words_per_s={statistics.median(r['words_per_s'] for r in running):,.0f} "
          f"loader_wait_share={statistics.median(r['loader_wait_share'] for r in running):.3f} "
          f"handover_share={statistics.median(r['handover_share'] for r in running):.3f}",
          flush=True)


def fit(device: torch.device, quick: bool) -> None:
    """A tile past what the kernel compiles for is refused before anything starts
    (`too_wide`); one that this GPU cannot hold must stop at its first step naming the
    settings and the GPU's limit, not with Triton's traceback: chunk mode at window 300 (a
    band of 1,024 rows: 396 KB of shared memory on sm_90, where an H100 or H200 has 227 KB),
    launched directly, since a run refuses it as it resolves."""
    from w2vdist.errors import UsageError
    from w2vdist.training.backends.tiling import too_wide

    print(f"FIT refused before training: {too_wide(256, 5, 'centre')}", flush=True)
    if device.type != "cuda":
        print("FIT a tile against shared memory: checked at a GPU's first launch only",
              flush=True)
        return
    left = SCRIPT_SECONDS - (time.perf_counter() - STARTED)
    if left < FIT_SECONDS:  # last, and least wanted: the others' figures come first
        print(f"FIT skipped: {left:.0f} s of the script's bound left", flush=True)
        return
    vocab, words = 50_000, 1 << 16
    step, _ = _step("triton", 300, vocab, words, device, share="chunk", window=300)
    tokens, sentence = _batch(vocab, words, device)
    start = time.perf_counter()
    try:
        step(tokens, sentence, 0.025, 0.025)
        torch.cuda.synchronize(device)
    except UsageError as exc:
        print(f"FIT chunk window=300 stopped after {time.perf_counter() - start:.1f} s: "
              f"{exc}", flush=True)
        return
    print(f"FIT chunk window=300 trained: this GPU holds its tile "
          f"({time.perf_counter() - start:.1f} s with the compile)", flush=True)


SECTIONS: dict[str, Callable[[torch.device, bool], None]] = {
    "ENV": env, "CORRECT": correct, "SYNC": no_host_sync, "GRAPH": graph, "BENCH": bench,
    "MEM": mem, "CKPT": ckpt, "NCCL": nccl, "E2E": e2e, "LOADER": loader, "FIT": fit,
}

if __name__ == "__main__":
    sys.exit(main())
