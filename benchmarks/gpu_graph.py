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
    from benchmarks.gpu_check import QUICK_WORDS, _batch, _step
    from w2vdist.training.backends.gpu_step import GraphedStep

    cuda = device.type == "cuda"
    vocab = 2000 if quick else 200_000
    # 32,768: the largest step a run captures by default (`backends.GRAPH_STEP_WORDS`).
    for words in (QUICK_WORDS,) if quick else (1 << 14, 1 << 15, 1 << 16, 1 << 18):
        tokens, sentence = _batch(vocab, words, device)
        runs = {}
        for name in ("eager", "graph") if cuda else ("eager",):
            step, _ = _step("triton", 100, vocab, words, device)
            if name == "graph":
                step = GraphedStep(step)
            results = [step(tokens, sentence, 0.025, 0.025) for _ in range(4)]
            pairs = [int(p) for _, p in results]
            losses = [float(loss) for loss, _ in results]
            runs[name] = (pairs, losses,
                          *_per_step(step, tokens, sentence, 3 if quick else 50, device))
        pairs, losses, eager_host, eager_wall = runs["eager"]
        line = (f"GRAPH words_per_step={words} dim=100 pairs={pairs} "
                f"eager_host_us={eager_host * 1e6:.0f} eager_step_us={eager_wall * 1e6:.0f}")
        if not cuda:
            print(f"{line} graph=- (no CUDA)", flush=True)
            continue
        replayed_pairs, replayed_losses, host, wall = runs["graph"]
        print(f"{line} graph_host_us={host * 1e6:.0f} graph_step_us={wall * 1e6:.0f} "
              f"speedup={eager_wall / wall:.2f}", flush=True)
        if replayed_pairs != pairs or len(set(pairs)) < 2:
            raise AssertionError(f"replays drew otherwise than eager steps: pairs "
                                 f"{replayed_pairs}, eager {pairs}")
        if any(abs(g - e) > 0.01 * e for g, e in zip(replayed_losses, losses)):
            raise AssertionError(f"replayed losses {replayed_losses} against eager {losses}")


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
