"""What a run's loss says of its health: diverged, which stops the run (it must never exit 0
with numbers that are not finite or run away), or, at its end, likely learned nothing, which
is warned of. Both compare the loss per pair with an untrained model's."""

from __future__ import annotations

import math


def _untrained_loss(negative: int) -> float:
    """The loss per pair of an untrained model, whose output rows are all zero: every score
    is 0, so the target and each of the K negatives cost ln 2."""
    return (negative + 1) * math.log(2)


RUNAWAY = 20.0  # a loss per pair this many times an untrained model's stops the run


def diverged(loss: float, pairs: float, negative: int) -> str | None:
    """Why the loss summed over `pairs` says training has diverged, if it does: it is not
    finite, or it is finite but, per pair, far above an untrained model's (K + 1) ln 2 (all
    output rows zero). Runaway steps reach the second long before the first, if ever:
    16,384-word torch steps without damping at alpha 0.3 climbed to a loss of 1e28 and exited
    0. Steps that overshoot and recover swing to several times it: 65,536-word torch steps on
    the planted test corpus to 4.8 times, then recovered its analogies; 1M-word steps on the
    benchmark corpus to 7.3 times (BENCHMARKS.md)."""
    if not math.isfinite(loss):
        return f"the loss is {loss}"
    untrained = _untrained_loss(negative)
    if loss > RUNAWAY * untrained * max(pairs, 1.0):
        return (f"the loss per pair is {loss / max(pairs, 1.0):.4g}, over {RUNAWAY:g} times "
                f"an untrained model's {untrained:.3g}")
    return None


UNLEARNED = 1.05  # a last loss per pair this many times an untrained model's is warned of


def learned_nothing(loss: float | None, negative: int) -> str | None:
    """Why a run that ended with finite numbers has likely learned nothing, if it has: its
    last loss per pair is above an untrained model's (K + 1) ln 2. Damped steps keep even a
    far too large rate finite (on the planted corpus the torch step at alpha 1e6 stayed at
    1.26-1.42 times it and exited 0 with useless vectors), while trained runs end far below
    it (0.54-0.6 times on the planted and the benchmark corpora)."""
    untrained = _untrained_loss(negative)
    if loss is None or loss <= UNLEARNED * untrained:
        return None
    return (f"the loss per pair ended at {loss:.4g}, above an untrained model's {untrained:.3g}: "
            "these vectors have likely learned nothing; lower optim.alpha")
