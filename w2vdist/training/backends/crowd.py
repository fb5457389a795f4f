"""Crowded rows on a GPU: the updates the Triton step's resident programs miss of each other,
and the damping that bounds what that does to frequent words' rows (`Damping`). The compiled
CPU kernel, pair by pair, misses nothing; `benchmarks/gpu_crowd.py` emulates the crowd on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Damping:
    """How the Triton step keeps crowded rows from overshooting (`optim.damping`).

    On a GPU a program reads its rows, computes, then adds its updates, while every other
    resident program does the same: each update misses those of about `in_flight` centres
    (its chunk and the chunks trained alongside it: 2,112 on an H100 or H200 at one program
    per SM). For a frequent word's rows that is a batch-synchronous step of hundreds of
    contributions, which overshoot as the torch step's did: emulated on CPU, 6,336 centres
    (chunk mode's three programs an SM) diverged in the first step, and 2,112 scored 0.4
    analogy points under damped (three seeds, within their spread; BENCHMARKS.md, "The GPU
    kernel's crowd"). So each row's update is divided, as the torch step divides a batch's,
    by 1 + damping x lr x H, H the curvature of the row's updates among `in_flight` centres,
    estimated from what was trained before it: the row's summed curvature (`crowd`) over the
    centres trained (`centres`), times `in_flight`. Both totals grow as programs finish, so
    the estimate follows rows that grow within a step (the first steps), and decay between
    steps with a memory of CROWD_MEMORY centres, so it follows the run. They are not saved:
    a resumed session refills them within its first step, which cost nothing measurable in
    the emulation (resumed half way: 28.55% against 28.58% at 2,112 in flight, 16.91% against
    16.83% at chunk mode's 6,336 with 5 negatives a chunk; BENCHMARKS.md).
    """

    factor: float
    crowd: tuple[torch.Tensor, torch.Tensor]  # per row of each table, float32
    centres: torch.Tensor  # 0-d float32
    resident: int | None = None  # programs the GPU runs at once, once the kernel is loaded

    @classmethod
    def zeros(cls, factor: float, rows: int, device: torch.device) -> "Damping":
        return cls(factor, (torch.zeros(rows, device=device), torch.zeros(rows, device=device)),
                   torch.zeros((), device=device))  # fmt: skip

    def advance(self, kept: torch.Tensor) -> None:
        """After a step of `kept` centres (0-d, on the device): older steps count less. Three
        launches (the decay, its exp, one multiply of all three totals): at small steps the
        host's launches, not the kernel, may bound an eager step."""
        decay = kept.mul(-1.0 / CROWD_MEMORY).exp_()
        torch._foreach_mul_([*self.crowd, self.centres], decay)


# Kept centres (about 60k raw words at sample 1e-4). Rows grow fast in the first steps, and an
# estimate that remembered a million centres lagged behind them: at several GPUs' rate (0.08)
# and 65,536-word steps the loss spiked to 10-50 in steps 2-5 and one seed in three lost eight
# analogy points; 32,768 follows them (BENCHMARKS.md, "The crowd's memory").
CROWD_MEMORY = float(1 << 15)


def resident_programs(regs: int, warps: int, shared: int, device: dict[str, int]) -> int:
    """Programs of a kernel using `regs` registers a thread, `warps` warps and `shared` bytes
    that a GPU (`device`: Triton's driver properties) runs at once: occupancy as Triton's
    fused-softmax tutorial reckons it (registers, shared memory), also bounded by threads."""
    threads = warps * device["warpSize"]
    limits = [device["max_num_regs"] // max(1, regs * threads), MAX_THREADS_PER_SM // threads]
    if shared:
        limits.append(device["max_shared_mem"] // shared)
    return max(1, min(limits)) * device["multiprocessor_count"]


# Threads an SM holds on NVIDIA's data-centre GPUs since Maxwell (fewer on some GeForce parts,
# which `resident_programs` then overstates: more damping, not less).
MAX_THREADS_PER_SM = 2048


def resident(kernel: Any, device: torch.device) -> int:
    """Programs of the loaded `kernel` (a launch's CompiledKernel) the device runs at once;
    one under the interpreter, whose launches return nothing."""
    if device.type != "cuda" or kernel is None:
        return 1
    import triton

    index = device.index if device.index is not None else torch.cuda.current_device()
    props = triton.runtime.driver.active.utils.get_device_properties(index)
    meta = kernel.metadata
    return resident_programs(kernel.n_regs, meta.num_warps, meta.shared, props)
