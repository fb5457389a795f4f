"""gpu_check's CORRECT section: the Triton kernel on a device against its float64 reference
(`kernel_reference.reference_sgd`), from the draws the kernel recorded."""

from __future__ import annotations

import time

import torch


def correct(device: torch.device, quick: bool) -> None:
    """The kernel launched a program at a time (chunk after chunk, as the reference trains)
    against float64 SGD: rounding only. Then launched as training launches it, all programs at
    once, where neighbouring chunks race on the context rows their bands share: it must land
    within the Hogwild gap, how far the reference moves when every chunk reads the first
    tables instead (`hogwild_gap`). Last, as `local` training runs it, damped and recording
    the saturation its merges weigh by, a program at a time against the reference."""
    from benchmarks.kernel_reference import reference_sgd
    from w2vdist.training.backends.tiling import tiles
    from w2vdist.training.backends.triton import sgns_chunks

    g = torch.Generator().manual_seed(int(time.time()))  # fresh inputs every run
    lr = (1e-3, 1e-3) if device.type == "cuda" else (0.05, 0.03)
    rate = torch.tensor(lr, device=device)  # as the kernel reads it
    for share in ("centre", "chunk"):
        for dim in ((37,) if quick else (100, 300, 37)):
            for precision in ("ieee", "tf32"):
                w_in, w_out, kt, ks, kept, table = _kernel_inputs(g, dim, quick, device)
                blocks = tiles(5, 5, dim, share)
                seed = torch.randint(2**62, (1,), generator=g).to(device)
                runs = []
                for sequential in (True, False):
                    tables = (w_in.clone(), w_out.clone())
                    record = _record(kt, blocks, device)
                    loss, pairs = sgns_chunks(*tables, kt, ks, kept, table, seed, rate, 5, 5,
                                              share, None, precision, record,
                                              sequential=sequential)  # fmt: skip
                    runs.append((tables, float(loss), int(pairs), record))
                if not torch.equal(runs[0][3], runs[1][3]):
                    raise AssertionError("the kernel drew otherwise when launched otherwise")
                ref, ref_all = (reference_sgd(w_in, w_out, kt, ks, int(kept), runs[0][3],
                                              blocks["BLOCK_T"], share, 5, lr, all_at_once=a,
                                              size=blocks["CHUNK"])
                                for a in (False, True))  # fmt: skip
                gap = _off(ref_all[:2], ref[:2], (w_in, w_out))
                (seq_tables, seq_loss, seq_pairs, _), (tables, loss, pairs, _) = runs
                seq_err, err = (_off(t, ref[:2], (w_in, w_out)) for t in (seq_tables, tables))
                loss_gap = abs(ref_all[2] - ref[2]) / ref[2]
                seq_loss_err, loss_err = (abs(x - ref[2]) / ref[2] for x in (seq_loss, loss))
                # TF32 products carry 10 mantissa bits: the tables within 2e-3, the loss (a sum
                # of log-sigmoids of such products) within 1e-3 (an H200: 1.5e-4 at dim 100)
                bound, loss_bound = (2e-3, 1e-3) if precision == "tf32" else (1e-4, 1e-4)
                ok = (seq_err < bound and seq_loss_err < loss_bound
                      and err < 1.5 * gap + bound and loss_err < 1.5 * loss_gap + loss_bound
                      and seq_pairs == pairs == ref[3])
                _verdict(f"CORRECT share={share} dim={dim} precision={precision} "
                         f"rel_err={seq_err:.2e} loss_rel_err={seq_loss_err:.1e} "
                         f"hogwild_rel_err={err:.2e} hogwild_gap={gap:.2e} "
                         f"hogwild_loss_rel_err={loss_err:.1e} pairs={pairs}/{ref[3]}", ok)
            _correct_damped(g, share, 37 if quick else 300, lr, quick, device)


def _correct_damped(g: torch.Generator, share: str, dim: int, lr: tuple[float, float],
                    quick: bool, device: torch.device) -> None:
    """The damped kernel recording saturation, a program at a time, against the reference:
    tables, saturation totals, what the step added to the crowd totals (rows damped by up to
    1 / 3.5 at first at the CPU's rate, 1 / 1.05 at the GPU's 1e-3)."""
    from benchmarks.kernel_reference import reference_sgd
    from w2vdist.training.backends.crowd import Damping
    from w2vdist.training.backends.tiling import tiles
    from w2vdist.training.backends.triton import sgns_chunks
    from w2vdist.training.merge import Saturation

    w_in, w_out, kt, ks, kept, table = _kernel_inputs(g, dim, quick, device)
    vocab = len(w_in)
    crowd = ((torch.rand(vocab, generator=g) * 20).to(device),
             (torch.rand(vocab, generator=g) * 100).to(device))  # fmt: skip
    factor, centres = 0.5, 16.0
    blocks = tiles(5, 5, dim, share)
    tables = (w_in.clone(), w_out.clone())
    zeros = torch.zeros(vocab, device=device)
    saturation = Saturation(zeros, zeros, zeros.clone(), zeros.clone())  # norms unread
    damping = Damping(factor, tuple(c.clone() for c in crowd),
                      torch.tensor(centres, device=device))  # fmt: skip
    record = _record(kt, blocks, device)
    loss, pairs = sgns_chunks(*tables, kt, ks, kept, table,
                              torch.randint(2**62, (1,), generator=g).to(device),
                              torch.tensor(lr, device=device), 5, 5,
                              share, saturation, "ieee", record, damping, sequential=True)
    ref = reference_sgd(w_in, w_out, kt, ks, int(kept), record, blocks["BLOCK_T"], share, 5,
                        lr, track=True, damping=(*crowd, centres, factor * blocks["CHUNK"]),
                        size=blocks["CHUNK"])
    err = _off(tables, ref[:2], (w_in, w_out))
    sat_err = _off((saturation.sat_in, saturation.sat_out), ref[4], (zeros, zeros))
    crowd_err = _off(damping.crowd, ref[5][:2], crowd)  # what the step added
    ok = (err < 1e-4 and sat_err < 1e-4 and crowd_err < 1e-4 and int(pairs) == ref[3]
          and abs(float(loss) - ref[2]) / ref[2] < 1e-4)
    _verdict(f"CORRECT share={share} dim={dim} precision=ieee damped+saturation "
             f"rel_err={err:.2e} sat_rel_err={sat_err:.2e} crowd_rel_err={crowd_err:.2e} "
             f"pairs={int(pairs)}/{ref[3]}", ok)


def _kernel_inputs(g: torch.Generator, dim: int, quick: bool, device: torch.device):
    """Random tables, tokens in sentences of 23 with 80% kept, and an alias table: what
    CORRECT trains."""
    from w2vdist.training.sampling import AliasTable, subsample

    words, vocab = (160, 300) if quick else (2048, 50_000)
    w_in = (torch.randn(vocab, dim, generator=g) * 0.3).to(device)
    w_out = (torch.randn(vocab, dim, generator=g) * 0.3).to(device)
    tokens = torch.randint(0, vocab, (words,), generator=g).to(device)
    sentence = (torch.arange(words) // 23).to(device)
    keep = torch.full((vocab,), 0.8, device=device)
    kt, ks, kept = subsample(tokens, sentence, keep, torch.Generator(device=device).manual_seed(1))
    table = AliasTable(torch.randint(1, 1000, (vocab,), generator=g), 0.75, device).table
    return w_in, w_out, kt, ks, kept, table


def _record(tokens: torch.Tensor, blocks: dict, device: torch.device) -> torch.Tensor:
    return torch.full((-(-len(tokens) // blocks["CHUNK"]), 2, blocks["BLOCK_J"]), -1,
                      device=device)


def _off(tables, ref, start) -> float:
    """The larger of two tensors' distance from the reference, relative to its change from
    `start`."""
    return max(float((t.cpu().double() - r).norm() / (r - s.cpu().double()).norm())
               for t, r, s in zip(tables, ref, start))  # fmt: skip


def _verdict(line: str, ok: bool) -> None:
    print(f"{line} {'ok' if ok else 'BAD'}", flush=True)
    if not ok:
        raise AssertionError(f"kernel differs from the reference: {line}")
