"""The Triton kernel's float64 reference: SGD chunk after chunk from the draws the kernel
recorded (`sgns_chunks(record=...)`), word2vec.c's pairs as the kernel defines them. What
`gpu_check.sh` CORRECT and `tests/test_triton_kernel.py` hold the kernel to.
"""

from __future__ import annotations

import torch

from w2vdist.training.backends.tiling import CHUNK


def chunk_pairs(tokens, sentence, kept: int, record, block_t: int, share: str, negative: int,
                chunk: int, size: int = CHUNK) -> list[tuple[int, list[int], float]]:
    """The chunk's (context, [centre, negatives...], each negative's weight) pairs, word2vec.c's
    way, from the draws the kernel recorded (`sgns_chunks(record=...)`): a centre's K at 1, or
    the chunk's M (`block_t` - CHUNK) at K / M. `size`: centres a chunk (`tiles`' CHUNK)."""
    first, pairs = chunk * size, []
    shared = block_t - CHUNK
    for n in range(size):
        q = first + n
        if q >= kept:
            break
        cols = ([n * block_t + t for t in range(negative + 1)] if share == "centre"
                else [n] + [CHUNK + k for k in range(shared)])  # fmt: skip
        weight = 1.0 if share == "centre" else negative / shared
        centre = int(tokens[q])
        assert int(record[0, cols[0]]) == centre, "recorded centre differs from the token"
        outs = [centre] + [int(record[0, c]) for c in cols[1:] if int(record[0, c]) != centre]
        reach = int(record[1, cols[0]])
        for b in range(max(0, q - reach), min(kept, q + reach + 1)):
            if b != q and sentence[b] == sentence[q]:
                pairs.append((int(tokens[b]), outs, weight))
    return pairs


def reference_sgd(w_in, w_out, tokens, sentence, kept: int, record, block_t: int, share: str,
                  negative: int, lr: tuple[float, float], track: bool = False,
                  all_at_once: bool = False, damping=None, size: int = CHUNK):
    """float64 SGD chunk after chunk, as the kernel defines it (each chunk's gradients from the
    tables as the chunks before it left them; `all_at_once`: every chunk from the first
    tables). `damping` (crowd_in, crowd_out, centres, scale), as `crowd.Damping` keeps them:
    each chunk divides a row's update by 1 + rate x scale x its crowd / the centres before it,
    then adds its |g| / 2 x |other row as read|^2 to the row's crowd and its centres; `track`:
    rate x that to the row's saturation for `local` merges. `size`: centres a chunk (`tiles`'
    CHUNK: fewer at more than 7 negatives a centre). Returns
    (w_in, w_out, loss, pairs, (sat_in, sat_out), (crowd_in, crowd_out, centres))."""
    tokens, sentence, record = tokens.cpu(), sentence.cpu(), record.cpu()
    w_in, w_out = w_in.cpu().double().clone(), w_out.cpu().double().clone()
    first_in, first_out = w_in.clone(), w_out.clone()
    zeros = torch.zeros(len(w_in), dtype=torch.float64)
    sat_in, sat_out = zeros.clone(), zeros.clone()
    crowd_in, crowd_out, centres, scale = (torch.as_tensor(t).cpu().double().clone()
                                           for t in (damping or (zeros, zeros, 0.0, 0.0)))
    loss, count = 0.0, 0
    grad_in, grad_out = torch.zeros_like(w_in), torch.zeros_like(w_out)
    curv_in, curv_out = torch.zeros_like(crowd_in), torch.zeros_like(crowd_out)
    for chunk in range(-(-kept // size)):
        rate = lr[0] + (lr[1] - lr[0]) * (chunk * size + size // 2) / kept
        read_in, read_out = (first_in, first_out) if all_at_once else (w_in, w_out)
        pairs = chunk_pairs(tokens, sentence, kept, record[chunk], block_t, share, negative,
                            chunk, size)  # fmt: skip
        for ctx, outs, weight in pairs:
            count += 1
            v = read_in[ctx]
            u = read_out[outs]
            score = u @ v
            label = torch.zeros_like(score)
            label[0] = 1
            weights = torch.full_like(score, weight)
            weights[0] = 1
            g = weights * (label - torch.sigmoid(score))
            grad_in[ctx] += g @ u
            grad_out.index_add_(0, torch.tensor(outs), g.unsqueeze(1) * v)
            loss += float((weights * torch.nn.functional.softplus(
                torch.where(label > 0, -score, score))).sum())
            bend = 0.5 * g.abs()
            bent_in, bent_out = float((bend * (u * u).sum(1)).sum()), bend * float(v @ v)
            curv_in[ctx] += bent_in
            curv_out.index_add_(0, torch.tensor(outs), bent_out)
            if track:
                sat_in[ctx] += rate * bent_in
                sat_out.index_add_(0, torch.tensor(outs), rate * bent_out)
        # Only the chunk's rows (the others' gradients are zero): passes over whole tables,
        # a chunk at a time, made a check at 50,000 x 300 take a quarter of a minute.
        rows_in = torch.tensor(sorted({ctx for ctx, _, _ in pairs}), dtype=torch.int64)
        rows_out = torch.tensor(sorted({o for _, outs, _ in pairs for o in outs}),
                                dtype=torch.int64)  # fmt: skip
        if damping:
            per_centre = rate * scale / centres.clamp(min=1)
            grad_in[rows_in] /= (1 + per_centre * crowd_in[rows_in]).unsqueeze(1)
            grad_out[rows_out] /= (1 + per_centre * crowd_out[rows_out]).unsqueeze(1)
            crowd_in[rows_in] += curv_in[rows_in]
            crowd_out[rows_out] += curv_out[rows_out]
            centres += min(size, kept - chunk * size)
        w_in[rows_in] += rate * grad_in[rows_in]
        w_out[rows_out] += rate * grad_out[rows_out]
        for done, rows in ((grad_in, rows_in), (grad_out, rows_out), (curv_in, rows_in),
                           (curv_out, rows_out)):
            done[rows] = 0
    return w_in, w_out, loss, count, (sat_in, sat_out), (crowd_in, crowd_out, centres)
