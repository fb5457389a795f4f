"""The Triton step as training runs it: eager (`TritonStep`), or captured once in a CUDA graph
and replayed (`GraphedStep`, `train.cuda_graph`; by default at the steps where it pays,
`backends.GRAPH_STEP_WORDS`).

Why a graph: eager, a step queues 21 launches (the rate's two fills, subsampling's ten, the
seed, the kernel through Triton's Python launcher, two zeroed buffers and two sums, the crowd's
decay in three). At one GPU's 262,144-word steps the kernel runs for milliseconds and the
host stays ahead; at 16,384 words a step the host bounds it: on an H200 an eager step took
354-447 us, a replayed one 190-305 us. Replayed, a step costs the host two copies into the
graph's inputs, the rate's two fills and one launch. `gpu_check.sh` GRAPH times both and
checks that replays draw what eager steps draw.

What makes the step capturable: it never waits for the host (`triton.py`), its shapes follow
the batch size alone, its rate is read from a device buffer (`TritonStep.rate`), and the run's
generator is registered with the graph, so every replay advances it by what an eager step
draws: replays and eager steps make the same draws (PyTorch's graph-safe Philox offsets).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch

from w2vdist.training.backends.crowd import Damping
from w2vdist.training.backends.triton import sgns_chunks
from w2vdist.training.sampling import subsample

if TYPE_CHECKING:
    from w2vdist.training.merge import Saturation
    from w2vdist.training.sampling import WindowSampler
    from w2vdist.training.sgns import Embeddings


@dataclass
class TritonStep:
    """Subsampling compacted on the device, a seed from the run's generator, one launch.

    `rate` then `train`: the rate goes into a device buffer that the kernel reads, so `train`
    holds no per-step value and can be captured in a CUDA graph once and replayed
    (`GraphedStep`)."""

    sampler: WindowSampler
    tables: Embeddings
    saturation: Saturation | None
    share: str
    damping: Damping | None = None
    precision: str = "tf32"

    def __post_init__(self) -> None:
        self.lr = torch.zeros(2, device=self.tables.input.device)

    def __call__(
        self, tokens: torch.Tensor, sentence: torch.Tensor, lr_start: float, lr_end: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.rate(lr_start, lr_end)
        return self.train(tokens, sentence)

    def rate(self, lr_start: float, lr_end: float) -> None:
        """The next step's rate, from its first kept word to after its last: two fills, which
        queue like kernels (a copy from host memory could wait for the device)."""
        self.lr[0].fill_(lr_start)
        self.lr[1].fill_(lr_end)

    def train(
        self, tokens: torch.Tensor, sentence: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step at the rate last set: (loss, pairs), 0-d on the device."""
        s, g = self.sampler, self.sampler.generator
        kept_tokens, kept_sentence, kept = subsample(tokens.long(), sentence, s.keep, g)
        seed = torch.randint(2**62, (1,), generator=g, device=tokens.device)
        result = sgns_chunks(
            self.tables.input.data, self.tables.output.data, kept_tokens, kept_sentence, kept,
            s.negatives.table, seed, self.lr, s.window, s.negative, self.share,
            self.saturation, self.precision, damping=self.damping,
        )
        if self.damping is not None:
            self.damping.advance(kept)
        return result


# Records a step's device work without running it, returning the step's outputs (written by
# each replay) and the replay. `cuda_graph` on a GPU; a test's stand-in re-runs the step.
Capture = Callable[[Callable[[], tuple[torch.Tensor, ...]], torch.Generator],
                   tuple[tuple[torch.Tensor, ...], Callable[[], None]]]


def cuda_graph(
    record: Callable[[], tuple[torch.Tensor, ...]], generator: torch.Generator
) -> tuple[tuple[torch.Tensor, ...], Callable[[], None]]:
    """`record`'s CUDA work captured in a graph, `generator` registered with it: (its outputs,
    the graph's replay)."""
    graph = torch.cuda.CUDAGraph()
    graph.register_generator_state(generator)
    # thread_local: another thread's CUDA calls (the loader pinning memory) may go on.
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        outputs = record()
    return outputs, graph.replay


class GraphedStep:
    """`TritonStep` replayed from a CUDA graph: the first step runs eagerly (which loads the
    kernel and sizes the crowd, `Damping.resident`), then the step is captured on the batch's
    buffers, and every later step sets its rate, copies its batch into them and replays."""

    def __init__(self, step: TritonStep, capture: Capture = cuda_graph) -> None:
        if capture is cuda_graph and step.tables.input.device.type != "cuda":
            raise ValueError("a CUDA graph needs the tables on a CUDA device, got "
                             f"{step.tables.input.device}")
        self.step = step
        self.capture = capture
        self.replay: Callable[[], None] | None = None
        self.inputs: tuple[torch.Tensor, ...] = ()  # tokens, sentence: what replays read
        self.outputs: tuple[torch.Tensor, ...] = ()  # loss, pairs: what replays write

    def __call__(
        self, tokens: torch.Tensor, sentence: torch.Tensor, lr_start: float, lr_end: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.step.rate(lr_start, lr_end)
        if self.replay is None:
            result = self.step.train(tokens, sentence)
            # Recorded on buffers shaped as this batch; nothing runs until a replay.
            self.inputs = (torch.empty_like(tokens), torch.empty_like(sentence))
            self.outputs, self.replay = self.capture(lambda: self.step.train(*self.inputs),
                                                     self.step.sampler.generator)
            return result
        for buffer, batch in zip(self.inputs, (tokens, sentence)):
            if batch.shape != buffer.shape or batch.dtype != buffer.dtype:
                raise ValueError(f"the captured step trains batches of {tuple(buffer.shape)} "
                                 f"{buffer.dtype}, got {tuple(batch.shape)} {batch.dtype}")
            buffer.copy_(batch)
        self.replay()
        # Copies: the outputs are overwritten by the next replay.
        return self.outputs[0].clone(), self.outputs[1].clone()
