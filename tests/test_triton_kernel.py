"""The fused Triton SGNS step against the torch reference (`sgns.gradients` + `sgns.apply`).

The kernel runs on CPU tensors through Triton's interpreter, which runs programs one after
another in grid order. So the fused step must equal the batched reference exactly (up to float
summation order) when no table row is shared between groups, and equal a group-by-group
application of the reference when rows are shared (a later group sees earlier groups' updates:
Hogwild, serialised); against the batched reference it then departs at second order in lr.

Interpretation is decided when triton is imported (its own library functions become
interpreted), and a process that imported it so can no longer compile for a GPU. So the kernel
runs once for every scenario in a child process (this file run as a script, TRITON_INTERPRET=1
set before anything imports triton), and the tests compare its results with references
computed here, in a process whose triton stays usable for the GPU.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import w2vdist
from w2vdist.training.sgns import Embeddings, apply, gradients

needs_triton = pytest.mark.skipif(
    importlib.util.find_spec("triton") is None,
    reason="triton is not importable: no Triton kernel to test",
)
HOGWILD_LRS = (0.02, 0.005)


def _tables(vocab: int, dim: int, seed: int) -> Embeddings:
    g = torch.Generator().manual_seed(seed)
    tables = Embeddings(vocab, dim, g)
    tables.input.data.normal_(0, 0.3, generator=g)  # large rows: errors cannot hide
    tables.output.data.normal_(0, 0.3, generator=g)
    return tables


def _disjoint_groups(vocab, groups, width, k, seed):
    """Groups sharing no input row and no output row with another group (within a group,
    rows repeat on purpose: a negative equal to the centre, a negative twice, a context twice).
    """
    g = torch.Generator().manual_seed(seed)
    out_ids = torch.randperm(vocab, generator=g)[: groups * (k + 1)].view(groups, k + 1)
    centres, negatives = out_ids[:, 0].clone(), out_ids[:, 1:].clone()
    contexts = torch.randperm(vocab, generator=g)[: groups * width].view(groups, width).clone()
    negatives[0, 1] = centres[0]
    negatives[1, 2] = negatives[1, 0]
    if width > 1:
        contexts[2, 1] = contexts[2, 0]
    return centres, contexts, negatives


def _per_pair_disjoint(dim, block_d):
    """dim not a power of two, tiled (16: three masked tiles; 520 > 512: five of 128)."""
    pairs = 12 if dim < 100 else 5
    centres, contexts, negatives = _disjoint_groups(200, pairs, 1, 5, seed=dim)
    return _tables(200, dim, seed=dim), centres, contexts.squeeze(1), negatives, 0.1, block_d


def _per_pair_shared_rows(lr):
    """Small vocabulary: every row recurs across pairs, as frequent words do."""
    vocab, pairs, k = 10, 40, 4
    g = torch.Generator().manual_seed(3)
    centres = torch.randint(0, vocab, (pairs,), generator=g)
    contexts = torch.randint(0, vocab, (pairs,), generator=g)
    negatives = torch.randint(0, vocab, (pairs, k), generator=g)
    return _tables(vocab, 24, seed=3), centres, contexts, negatives, lr, None


def _windows_disjoint():
    """Windows padded with -1 (one group without any context), K shared per centre word."""
    centres, contexts, negatives = _disjoint_groups(300, 8, 6, 5, seed=4)
    contexts[3, 2:] = -1
    contexts[5, 0] = -1
    contexts[6] = -1
    return _tables(300, 20, seed=4), centres, contexts, negatives, 0.1, None


def _windows_shared_rows():
    vocab, groups, width, k = 12, 10, 4, 3
    g = torch.Generator().manual_seed(5)
    centres = torch.randint(0, vocab, (groups,), generator=g)
    contexts = torch.randint(0, vocab, (groups, width), generator=g)
    contexts[::3, -1] = -1
    negatives = torch.randint(0, vocab, (groups, k), generator=g)
    negatives[0, 0] = centres[0]
    return _tables(vocab, 16, seed=5), centres, contexts, negatives, 0.05, None


def _no_groups():
    empty = torch.empty(0, dtype=torch.int64)
    return _tables(5, 8, seed=6), empty, empty, empty.view(0, 3), 0.1, None


SCENARIOS = {
    "pairs-37-16": lambda: _per_pair_disjoint(37, 16),
    "pairs-37": lambda: _per_pair_disjoint(37, None),
    "pairs-520": lambda: _per_pair_disjoint(520, None),
    **{f"pairs-shared-{lr}": (lambda lr=lr: _per_pair_shared_rows(lr)) for lr in HOGWILD_LRS},
    "windows": _windows_disjoint,
    "windows-shared": _windows_shared_rows,
    "none": _no_groups,
    "windows-saturation": _windows_disjoint,
}


def _run_scenarios(out: str) -> None:
    """Child process: the fused step on every scenario, results saved to `out`."""
    from w2vdist.training.backends.triton import sgns_step

    from w2vdist.training.sync import Saturation

    results = {}
    for name, make in SCENARIOS.items():
        tables, centres, contexts, negatives, lr, block_d = make()
        w_in, w_out = tables.input.data.clone(), tables.output.data.clone()
        saturation = None
        if name.endswith("saturation"):
            saturation = Saturation(*_norms(tables), *(torch.zeros(len(w_in)) for _ in "io"))
        loss, pairs = sgns_step(w_in, w_out, centres, contexts, negatives, lr, block_d=block_d,
                                saturation=saturation)
        results[name] = (w_in, w_out, loss, pairs)
        if saturation is not None:
            results[name] += (saturation.sat_in, saturation.sat_out)
    torch.save(results, out)


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    """{scenario: (w_in, w_out, loss, pairs)} from the interpreted kernel."""
    out = tmp_path_factory.mktemp("triton") / "results.pt"
    package_root = str(Path(w2vdist.__file__).resolve().parents[1])  # the w2vdist tested here
    path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, __file__, str(out)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return torch.load(out)


def _norms(tables: Embeddings) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared row norms, standing in for those of the last merge."""
    return (tables.input.data ** 2).sum(1) * 0.5, (tables.output.data ** 2).sum(1) * 2.0


def _copy(tables: Embeddings) -> Embeddings:
    copy = Embeddings(*tables.input.shape)
    copy.input.data.copy_(tables.input.data)
    copy.output.data.copy_(tables.output.data)
    return copy


def _per_pair(centres, contexts, negatives):
    """Groups as the reference's flat pairs: each valid context gets its group's centre and K."""
    if contexts.dim() == 1:
        return centres, contexts, negatives
    ok = contexts >= 0
    rows = ok.nonzero()[:, 0]
    return centres[rows], contexts[ok], negatives[rows]


def _reference(tables, centres, contexts, negatives, lr, block_d=None):
    """Batched: all gradients from the tables as they were, then applied."""
    ref = _copy(tables)
    grads = gradients(ref, *_per_pair(centres, contexts, negatives))
    apply(ref, grads, lr)
    return ref.input.data, ref.output.data, grads.loss.item(), grads.pairs


def _sequential_reference(tables, centres, contexts, negatives, lr, block_d=None):
    """Group after group, each from the tables as the previous groups left them."""
    ref = _copy(tables)
    if contexts.dim() == 1:
        contexts = contexts.unsqueeze(1)
    loss = 0.0
    for i in range(len(centres)):
        group = slice(i, i + 1)
        grads = gradients(ref, *_per_pair(centres[group], contexts[group], negatives[group]))
        apply(ref, grads, lr)
        loss += grads.loss.item()
    return ref.input.data, ref.output.data, loss


def _assert_tables(w_in, w_out, ref_in, ref_out):
    torch.testing.assert_close(w_in, ref_in, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w_out, ref_out, rtol=1e-5, atol=1e-6)


@needs_triton
@pytest.mark.parametrize("name", ["pairs-37-16", "pairs-37", "pairs-520"])
def test_per_pair_negatives_equal_the_reference(fused, name):
    scenario = SCENARIOS[name]()
    tables, centres, _, negatives = scenario[:4]
    assert (negatives == centres.unsqueeze(1)).any()
    w_in, w_out, loss, pairs = fused[name]
    ref_in, ref_out, ref_loss, ref_pairs = _reference(*scenario)
    assert int(pairs) == ref_pairs == len(centres)
    assert loss.dtype == torch.float64
    assert loss.item() == pytest.approx(ref_loss, rel=1e-6)
    assert not torch.equal(w_in, tables.input) and not torch.equal(w_out, tables.output)
    _assert_tables(w_in, w_out, ref_in, ref_out)


@needs_triton
def test_per_pair_with_shared_rows_is_hogwild_close_to_the_reference(fused):
    """The fused step is the group-by-group update; it departs from the batched one only at
    second order in lr: relative to the update, a quarter of lr gives about a quarter of it.
    """
    departure = []
    for lr in HOGWILD_LRS:
        scenario = SCENARIOS[f"pairs-shared-{lr}"]()
        tables, centres, _, negatives = scenario[:4]
        assert (negatives == centres.unsqueeze(1)).any()
        w_in, w_out, loss, _ = fused[f"pairs-shared-{lr}"]
        seq_in, seq_out, seq_loss = _sequential_reference(*scenario)
        _assert_tables(w_in, w_out, seq_in, seq_out)
        assert loss.item() == pytest.approx(seq_loss, rel=1e-5)

        ref_in, ref_out, ref_loss, _ = _reference(*scenario)
        assert loss.item() == pytest.approx(ref_loss, rel=0.05)
        departure.append(
            max(
                float((new - ref).norm() / (ref - old).norm())
                for new, ref, old in ((w_in, ref_in, tables.input), (w_out, ref_out, tables.output))
            )
        )
    assert departure[0] < 0.1
    assert departure[1] < 0.35 * departure[0]


@needs_triton
def test_shared_negatives_equal_the_reference_with_expanded_negatives(fused):
    scenario = SCENARIOS["windows"]()
    w_in, w_out, loss, pairs = fused["windows"]
    ref_in, ref_out, ref_loss, ref_pairs = _reference(*scenario)
    assert int(pairs) == ref_pairs == 8 * 6 - 4 - 1 - 6
    assert loss.item() == pytest.approx(ref_loss, rel=1e-6)
    _assert_tables(w_in, w_out, ref_in, ref_out)


@needs_triton
def test_shared_negatives_with_shared_rows_match_group_by_group_updates(fused):
    scenario = SCENARIOS["windows-shared"]()
    w_in, w_out, loss, pairs = fused["windows-shared"]
    seq_in, seq_out, seq_loss = _sequential_reference(*scenario)
    assert int(pairs) == int((scenario[2] >= 0).sum())
    assert loss.item() == pytest.approx(seq_loss, rel=1e-5)
    _assert_tables(w_in, w_out, seq_in, seq_out)


@needs_triton
def test_saturation_gathers_lr_half_abs_gradient_times_the_other_rows_norm(fused):
    """For `local` merges each score adds lr |g| / 2 x |other row|^2 to both rows' totals."""
    tables, centres, contexts, negatives, lr, _ = SCENARIOS["windows-saturation"]()
    w_in, w_out, _, _, sat_in, sat_out = fused["windows-saturation"]
    _assert_tables(w_in, w_out, *_reference(*SCENARIOS["windows"]())[:2])
    norm_in, norm_out = _norms(tables)
    want_in, want_out = torch.zeros(len(w_in)), torch.zeros(len(w_in))
    for group in range(len(centres)):
        targets = [int(centres[group])] + [
            int(n) for n in negatives[group] if int(n) != int(centres[group])
        ]
        for ctx in (int(c) for c in contexts[group] if c >= 0):
            for i, target in enumerate(targets):
                score = float(tables.input[ctx] @ tables.output[target])
                h = 0.5 * lr * abs(float(i == 0) - float(torch.sigmoid(torch.tensor(score))))
                want_in[ctx] += h * norm_out[target]
                want_out[target] += h * norm_in[ctx]
    assert want_in.sum() > 0 and want_out.sum() > 0
    torch.testing.assert_close(sat_in, want_in, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(sat_out, want_out, rtol=1e-5, atol=1e-7)


@needs_triton
def test_no_groups_changes_nothing(fused):
    tables = SCENARIOS["none"]()[0]
    w_in, w_out, loss, pairs = fused["none"]
    assert loss.item() == 0.0 and int(pairs) == 0
    assert torch.equal(w_in, tables.input) and torch.equal(w_out, tables.output)


@needs_triton
@pytest.mark.parametrize(
    "change, message",
    [
        (dict(w_in=torch.zeros(5, 8, dtype=torch.float64)), "w_in must be a contiguous float32"),
        (dict(w_out=torch.zeros(6, 8)), "w_out has shape"),
        (dict(contexts=torch.zeros(3, dtype=torch.int64)), "centres (2,) and contexts (3, 1)"),
        (dict(negatives=torch.zeros(2, 0, dtype=torch.int64)), "negatives has shape"),
        (dict(centres=torch.zeros(2)), "centres must be int32 or int64"),
        (dict(), "the Triton kernel needs CUDA tensors, got cpu"),
    ],
)
def test_bad_arguments_are_refused(change, message):
    from w2vdist.training.backends import triton as triton_sgns

    args = dict(
        w_in=torch.zeros(5, 8),
        w_out=torch.zeros(5, 8),
        centres=torch.zeros(2, dtype=torch.int64),
        contexts=torch.zeros(2, dtype=torch.int64),
        negatives=torch.zeros(2, 3, dtype=torch.int64),
        lr=0.1,
    )
    args.update(change)
    with pytest.raises(ValueError, match=re.escape(message)):
        triton_sgns.sgns_step(**args)


@needs_triton
def test_tile_sizes_fit_the_group_and_refuse_odd_tiles():
    from w2vdist.training.backends.triton import tile_sizes

    assert tile_sizes(1, 5, 300) == (1, 8, 128)
    assert tile_sizes(10, 5, 300) == (16, 8, 32)
    assert tile_sizes(1, 5, 20) == (1, 8, 32)
    with pytest.raises(ValueError, match="block_d must be a power of two, got 24"):
        tile_sizes(1, 5, 300, block_d=24)


def test_available_needs_triton_and_cuda():
    from w2vdist.training.backends.triton import available

    ok, reason = available()
    assert ok == (reason == "")
    if ok:
        assert torch.cuda.is_available()
    else:
        assert reason.startswith(("triton", "no CUDA"))


@needs_triton
@pytest.mark.parametrize(
    "width, negative, dim, track", [(1, 5, 300, False), (10, 5, 300, False), (10, 5, 300, True)]
)
def test_kernel_compiles_for_hopper_without_a_gpu(width, negative, dim, track):
    """The interpreter accepts code the GPU compiler rejects; compile to a cubin for sm_90 with
    the default tiles of per-pair (width 1) and shared (window 5) negatives.
    """
    import triton
    from triton.backends import backends
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from w2vdist.training.backends import triton as triton_sgns

    if "nvidia" not in backends:
        pytest.skip("this triton has no NVIDIA backend")
    kernel = triton_sgns._sgns_groups
    if not isinstance(kernel, triton.runtime.JITFunction):
        pytest.skip("TRITON_INTERPRET is set in this process: triton cannot compile for a GPU")
    block_c, block_t, block_d = triton_sgns.tile_sizes(width, negative, dim)
    pointers = {name: "*i64" for name in ("centres", "contexts", "negatives")}
    floats = ("w_in", "w_out", "norm_in", "norm_out", "sat_in", "sat_out", "losses")
    pointers.update({name: "*fp32" for name in floats})
    source = ASTSource(
        fn=kernel,
        signature={**pointers, "lr": "fp32", "dim": "i32", "width": "i32", "n_neg": "i32",
                   "BLOCK_C": "constexpr", "BLOCK_T": "constexpr", "BLOCK_D": "constexpr",
                   "TRACK": "constexpr"},
        constexprs={"BLOCK_C": block_c, "BLOCK_T": block_t, "BLOCK_D": block_d, "TRACK": track},
    )  # fmt: skip
    compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32))
    assert compiled.asm["cubin"]
    assert re.search(r"red\.global\.\S*add\.f32", compiled.asm["ptx"])  # Hogwild atomic adds


if __name__ == "__main__":
    if os.environ.get("TRITON_INTERPRET") != "1":
        sys.exit("run with TRITON_INTERPRET=1: the kernel runs on CPU tensors")
    _run_scenarios(sys.argv[1])
