"""The rule by which a `local` merge combines the ranks' changes to a row.

A merge adds to the last merged tables each rank's change to a row weighted by how far that
rank saturated the row (`Saturation`): sum_r (1 + c_r) delta_r / (1 + sum_r c_r). A row one
rank touched keeps its change whole (averaging would divide it by the world size); rows that
every rank pushed to the same optimum get about the mean (summing would multiply it); lightly
touched rows add up, as if the ranks had run one after another. c_r is `curvature_weight`
times the rank's lr-weighted curvature of the row's updates; the curvature summed over a row's
updates overstates how far they saturate it along the change (the updates point many ways),
and 0.1 measured best on 4 and 8 ranks (BENCHMARKS.md).

Each rank packs its change and its c_r into one row of D + 1 floats, so one SUM all-reduce
carries everything the rule needs (`sync.LocalSync` schedules the merges and moves the rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Saturation:
    """What a `local` merge needs to weigh each rank's change to a row, float32[V] each.

    `sat_in`/`sat_out` sum, over a row's updates since the last merge, lr times the curvature
    of the update's loss along the row; `norm_in`/`norm_out` are the rows' squared norms as of
    the last merge, which the compiled CPU kernel uses for the curvature |g| / 2 * |other
    row|^2 (the torch and Triton steps use the other row as they read it).
    """

    norm_in: torch.Tensor
    norm_out: torch.Tensor
    sat_in: torch.Tensor
    sat_out: torch.Tensor


def pack_changes(
    rows: torch.Tensor, base: torch.Tensor, saturation: torch.Tensor,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """One rank's share of a merge, (R, D + 1): its change (1 + c) * (rows - base), then c."""
    dim = rows.shape[1]
    packed = out if out is not None else rows.new_empty(rows.shape[0], dim + 1)
    torch.sub(rows, base, out=packed[:, :dim])
    packed[:, :dim].mul_(saturation.unsqueeze(1) + 1)
    packed[:, dim] = saturation
    return packed


def unpack_changes(summed: torch.Tensor) -> torch.Tensor:
    """The merged change from the ranks' summed packs, computed in place in `summed`'s first
    D columns: sum (1 + c_r) delta_r / (1 + sum c_r).

    A row only one rank touched keeps that rank's change in full; a row that every rank
    saturated (c_r >> 1) gets about their mean; rows touched lightly everywhere, the sum, as if
    the ranks' steps had run one after another. This is the implicit-SGD step of the ranks'
    pooled quadratic models: rank r's change is lr g_r / (1 + c_r), so the one-process step
    lr sum g_r / (1 + sum c_r) follows from the changes and saturations alone.
    """
    dim = summed.shape[1] - 1
    return summed[:, :dim].div_(summed[:, dim:] + 1)


def curvature_norms(table: torch.Tensor) -> torch.Tensor:
    """Row norms squared, as the curvature of the other table's updates uses them, plus a
    floor far below any real norm (1e-20): every update then adds a positive saturation, even
    one made against a row that was zero at the last merge (the output table starts at zero),
    so a row's saturation is positive exactly when the row changed. No table-sized temporary."""
    return torch.linalg.vector_norm(table, dim=1).square_().add_(1e-20)
