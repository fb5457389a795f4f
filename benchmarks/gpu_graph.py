"""gpu_check's GRAPH section: the Triton step captured in a CUDA graph (`train.cuda_graph`,
`backends/gpu_step.py`) against the eager step.

Per step size: the draws (each step's pair count, which follows from the subsampling and
window draws alone) must equal the eager step's, step by step, from the same generator, and
change from step to step (replays advance the generator); the loss must stay within 1% of the
eager step's (both race on rows, Hogwild); then the host's time a step (queuing it) and the
wall time a step back to back, eager and replayed. Where the eager host time nears the step's
wall time, the host bounds the step, and a graph pays. On CPU the eager step alone runs
(CUDA graphs need a GPU), so that quick mode keeps the plumbing working.
"""

from __future__ import annotations

import time

import torch


def graph(device: torch.device, quick: bool) -> None:
    from benchmarks.gpu_check import _step, _zipf_tokens
    from w2vdist.training.backends.gpu_step import GraphedStep

    cuda = device.type == "cuda"
    vocab = 2000 if quick else 200_000
    for words in (512,) if quick else (1 << 14, 1 << 16, 1 << 18):
        tokens = _zipf_tokens(vocab, words, device)
        sentence = torch.arange(words, device=device) // 20
        runs = {}
        for name in ("eager", "graph") if cuda else ("eager",):
            step, _ = _step("triton", 100, vocab, words, device)
            if name == "graph":
                step = GraphedStep(step)
            draws = [step(tokens, sentence, 0.025, 0.025) for _ in range(4)]
            draws = [(int(pairs), float(loss)) for loss, pairs in draws]
            runs[name] = (draws, *_per_step(step, tokens, sentence, 3 if quick else 50, device))
        eager, eager_host, eager_wall = runs["eager"]
        line = (f"GRAPH words_per_step={words} dim=100 pairs={[p for p, _ in eager]} "
                f"eager_host_us={eager_host * 1e6:.0f} eager_step_us={eager_wall * 1e6:.0f}")
        if not cuda:
            print(f"{line} graph=- (no CUDA)", flush=True)
            continue
        graphed, host, wall = runs["graph"]
        print(f"{line} graph_host_us={host * 1e6:.0f} graph_step_us={wall * 1e6:.0f} "
              f"speedup={eager_wall / wall:.2f}", flush=True)
        if [p for p, _ in graphed] != [p for p, _ in eager] or len({p for p, _ in eager}) < 2:
            raise AssertionError(f"replays drew otherwise than eager steps: pairs "
                                 f"{[p for p, _ in graphed]}, eager {[p for p, _ in eager]}")
        if any(abs(g - e) > 0.01 * e for (_, g), (_, e) in zip(graphed, eager)):
            raise AssertionError(f"replayed losses {[g for _, g in graphed]} against eager "
                                 f"{[e for _, e in eager]}")


def _per_step(step, tokens: torch.Tensor, sentence: torch.Tensor, steps: int,
              device: torch.device) -> tuple[float, float]:
    """(seconds the host spends queuing a step, seconds a step takes back to back). Where the
    device is slower than the host, CUDA's launch queue fills and the host's time includes
    waiting for room in it: a host time near the step's time means the host bounds the step
    only at small steps."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    host, start = 0.0, time.perf_counter()
    for _ in range(steps):
        t = time.perf_counter()
        step(tokens, sentence, 0.025, 0.025)
        host += time.perf_counter() - t
    if cuda:
        torch.cuda.synchronize(device)
    return host / steps, (time.perf_counter() - start) / steps
