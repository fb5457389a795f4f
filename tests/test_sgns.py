"""The hand-written sparse SGNS gradient against autograd on dense copies of the tables."""

import torch
import torch.nn.functional as F

from w2vdist.training.sgns import Embeddings, apply, gradients


def _dense_reference(w_in, w_out, centres, contexts, negatives, lr, negative_weight=1.0):
    w_in = w_in.clone().requires_grad_(True)
    w_out = w_out.clone().requires_grad_(True)
    v = w_in[contexts]
    pos = (w_out[centres] * v).sum(-1)
    neg = torch.einsum("pkd,pd->pk", w_out[negatives], v)
    skip = negatives == centres.unsqueeze(1)  # word2vec.c skips a negative equal to the centre
    loss = -(F.logsigmoid(pos).sum()
             + negative_weight * F.logsigmoid(-neg).masked_fill(skip, 0).sum())
    loss.backward()
    with torch.no_grad():
        return w_in - lr * w_in.grad, w_out - lr * w_out.grad, loss.item()


def test_update_equals_autograd_sgd_step_with_duplicate_rows():
    g = torch.Generator().manual_seed(0)
    vocab, dim, pairs, k = 50, 16, 400, 5
    tables = Embeddings(vocab, dim, g)
    tables.output.data.normal_(0, 0.3, generator=g)  # zeros would hide output-side errors
    # Few distinct words: every row repeats many times in the batch, as frequent words do.
    centres = torch.randint(0, 8, (pairs,), generator=g)
    contexts = torch.randint(0, 8, (pairs,), generator=g)
    negatives = torch.randint(0, 8, (pairs, k), generator=g)
    assert (negatives == centres.unsqueeze(1)).any()
    lr = 0.05
    ref_in, ref_out, ref_loss = _dense_reference(
        tables.input.data, tables.output.data, centres, contexts, negatives, lr
    )
    grads = gradients(tables, centres, contexts, negatives)
    apply(tables, grads, lr)
    assert grads.pairs == pairs
    assert abs(grads.loss.item() - ref_loss) < 1e-3 * abs(ref_loss)
    torch.testing.assert_close(tables.input.data, ref_in, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(tables.output.data, ref_out, rtol=1e-5, atol=1e-6)


def test_weighted_negatives_equal_autograd_on_the_weighted_loss():
    """M negatives at K / M (the Triton kernel's chunk mode, emulated): each negative's term of
    the loss, and so of both gradients, is scaled; the positive's is not."""
    g = torch.Generator().manual_seed(5)
    vocab, dim, pairs, m = 30, 8, 200, 16
    tables = Embeddings(vocab, dim, g)
    tables.output.data.normal_(0, 0.3, generator=g)
    centres = torch.randint(0, 10, (pairs,), generator=g)
    contexts = torch.randint(0, 10, (pairs,), generator=g)
    negatives = torch.randint(0, 10, (pairs, m), generator=g)
    ref_in, ref_out, ref_loss = _dense_reference(
        tables.input.data, tables.output.data, centres, contexts, negatives, 0.05, 5 / m
    )
    plain = gradients(tables, centres, contexts, negatives)
    grads = gradients(tables, centres, contexts, negatives, negative_weight=5 / m)
    assert abs(grads.loss.item() - ref_loss) < 1e-4 * abs(ref_loss)
    assert ref_loss < 0.9 * plain.loss.item()  # the negatives' part shrank
    apply(tables, grads, 0.05)
    torch.testing.assert_close(tables.input.data, ref_in, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(tables.output.data, ref_out, rtol=1e-5, atol=1e-6)


def test_gradient_is_sparse_rows_only():
    tables = Embeddings(1000, 8, torch.Generator().manual_seed(1))
    centres = torch.tensor([1, 2])
    contexts = torch.tensor([3, 4])
    negatives = torch.tensor([[5, 6], [7, 8]])
    grads = gradients(tables, centres, contexts, negatives)
    assert grads.input.values.shape == (2, 8)
    assert grads.output.values.shape == (6, 8)
    assert sorted(grads.output.index.tolist()) == [1, 2, 5, 6, 7, 8]


def test_initialisation_follows_word2vec_c():
    tables = Embeddings(300, 50, torch.Generator().manual_seed(2))
    assert tables.input.abs().max() <= 0.5 / 50
    assert tables.input.std() > 0.2 / 50
    assert torch.count_nonzero(tables.output) == 0


def test_crowded_rows_take_a_step_damped_by_their_summed_curvature():
    g = torch.Generator().manual_seed(3)
    tables = Embeddings(20, 4, g)
    tables.output.data.normal_(0, 0.3, generator=g)
    centres = torch.tensor([1, 1, 1, 1, 2])
    contexts = torch.tensor([5, 5, 6, 7, 8])
    negatives = torch.tensor([[9], [9], [9], [10], [11]])
    grads = gradients(tables, centres, contexts, negatives)
    w_in, w_out = tables.input.data.clone(), tables.output.data.clone()
    # The curvature of the loss along input row 5 from its first pair: |g| / 2 of each score
    # (g = label - sigma(score)) times the squared norm of the output row it was scored against.
    s = torch.stack([w_out[1] @ w_in[5], w_out[9] @ w_in[5]])
    g_abs = torch.stack([1 - torch.sigmoid(s[0]), torch.sigmoid(s[1])])
    expected_curv = (0.5 * g_abs * w_out[[1, 9]].pow(2).sum(1)).sum()
    torch.testing.assert_close(grads.input.curvature[0], expected_curv)
    lr, damping = 0.5, 2.0
    apply(tables, grads, lr, damping)
    # Row 5 of the input table takes two contributions: its step is divided by 1 + k lr H.
    h = grads.input.curvature[:2].sum()
    expected = w_in[5] + lr * grads.input.values[:2].sum(0) / (1 + damping * lr * h)
    torch.testing.assert_close(tables.input.data[5], expected)
    h8 = grads.input.curvature[4]
    torch.testing.assert_close(
        tables.input.data[8], w_in[8] + lr * grads.input.values[4] / (1 + damping * lr * h8)
    )


def _dense_window_reference(w_in, w_out, centres, contexts, mask, negatives, lr):
    w_in = w_in.clone().requires_grad_(True)
    w_out = w_out.clone().requires_grad_(True)
    loss = 0.0
    for i in range(len(centres)):
        for j in range(contexts.shape[1]):
            if not mask[i, j]:
                continue
            v = w_in[contexts[i, j]]
            loss = loss - F.logsigmoid(w_out[centres[i]] @ v)
            for n in negatives[i]:
                if n != centres[i]:
                    loss = loss - F.logsigmoid(-(w_out[n] @ v))
    loss.backward()
    with torch.no_grad():
        return w_in - lr * w_in.grad, w_out - lr * w_out.grad, loss.item()


def test_shared_window_negatives_equal_autograd_on_the_plain_loop():
    g = torch.Generator().manual_seed(4)
    tables = Embeddings(12, 6, g)
    tables.output.data.normal_(0, 0.3, generator=g)
    centres = torch.randint(0, 12, (9,), generator=g)
    contexts = torch.randint(0, 12, (9, 4), generator=g)
    mask = torch.rand(9, 4, generator=g) < 0.7
    negatives = torch.randint(0, 12, (9, 3), generator=g)
    negatives[0, 1] = centres[0]
    ref_in, ref_out, ref_loss = _dense_window_reference(
        tables.input.data, tables.output.data, centres, contexts, mask, negatives, 0.2
    )
    grads = gradients(tables, centres, contexts, negatives, mask)
    apply(tables, grads, 0.2)
    assert grads.pairs == int(mask.sum())
    assert abs(grads.loss.item() - ref_loss) < 1e-4 * abs(ref_loss)
    torch.testing.assert_close(tables.input.data, ref_in, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(tables.output.data, ref_out, rtol=1e-5, atol=1e-6)


def test_a_large_step_computed_in_pieces_is_the_same_step(monkeypatch):
    """The torch step computes a large batch's gradient piece by piece from the same tables
    (bounded memory); the update, loss and pairs equal those of the batch in one piece."""
    from w2vdist.training.config import Config, ModelConfig
    from w2vdist.training import backends
    from w2vdist.training.backends import reference
    from w2vdist.training.sync import OneProcess

    counts = torch.tensor([50, 30, 20, 10, 8, 6, 5, 4, 3, 2])
    tokens = torch.randint(0, 10, (600,), generator=torch.Generator().manual_seed(0))
    sentence = torch.arange(600) // 30
    out = []
    for piece in (10_000, 64):
        monkeypatch.setattr(reference, "PIECE_CENTRES", piece)
        cfg = Config(model=ModelConfig(dim=8, sample=0.0))
        cfg.train.backend = "torch"
        tables = Embeddings(10, 8, torch.Generator().manual_seed(1))
        tables.output.data.normal_(0, 0.3, generator=torch.Generator().manual_seed(2))
        step = backends.build(cfg, tables, counts.numpy(), OneProcess(1, tables.input.device),
                              torch.Generator().manual_seed(3))
        loss, pairs = step(tokens, sentence, 0.5, 0.5)
        out.append((tables.input.data, tables.output.data, float(loss), int(pairs)))
    whole, pieced = out
    assert pieced[3] == whole[3] > 1000
    assert abs(pieced[2] - whole[2]) < 1e-9 * whole[2]
    torch.testing.assert_close(pieced[0], whole[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pieced[1], whole[1], rtol=1e-5, atol=1e-6)
    assert not torch.equal(whole[1], torch.zeros_like(whole[1]))
