"""word2vec.c's subsampling, dynamic window and negatives against plain implementations."""

import math

import numpy as np
import pytest
import torch

from w2vdist.training.config import ModelConfig

from w2vdist.training.sampling import (
    AliasTable,
    WindowSampler,
    alias_table,
    keep_probabilities,
    subsample,
    windows,
)
from w2vdist.training.spec import Plan, proportional

from tests.helpers import alias_probabilities


def test_keep_probability_is_word2vec_c_formula():
    counts = torch.tensor([100000, 5000, 300, 7])
    sample = 1e-3
    total = counts.sum().item()
    got = keep_probabilities(counts, sample)
    for c, p in zip(counts.tolist(), got.tolist()):
        ran = (math.sqrt(c / (sample * total)) + 1) * (sample * total) / c
        assert abs(p - min(ran, 1.0)) < 1e-6
    assert keep_probabilities(counts, 0.0).eq(1).all()


def test_subsampling_keeps_each_word_at_its_rate():
    counts = torch.tensor([1000, 100, 10, 1])
    keep = torch.tensor([0.1, 0.5, 0.9, 1.0])
    tokens = torch.arange(4).repeat(20000)
    buffer, _, count = subsample(tokens, torch.zeros_like(tokens), keep,
                                 torch.Generator().manual_seed(0))
    kept = buffer[: int(count)]
    rates = torch.bincount(kept, minlength=4).double() / 20000
    assert torch.allclose(rates, keep.double(), atol=0.015), rates
    assert counts.numel() == 4


def window_pairs(tokens, sentence, window, generator):
    contexts, mask = windows(tokens, sentence, window, generator)
    return tokens.unsqueeze(1).expand_as(contexts)[mask], contexts[mask]


def _reference_pairs(tokens, sentence, reach):
    pairs = []
    n = len(tokens)
    for i in range(n):
        for j in range(max(0, i - reach[i]), min(n, i + reach[i] + 1)):
            if j != i and sentence[j] == sentence[i]:
                pairs.append((tokens[i], tokens[j]))
    return pairs


@pytest.mark.parametrize("window", [5, 1000, 2**31 - 1])  # past the batch: item2vec's
def test_dynamic_window_pairs_equal_a_plain_loop(window):
    g = torch.Generator().manual_seed(3)
    tokens = torch.randint(0, 30, (300,), generator=g)
    sentence = torch.cumsum(torch.rand(300, generator=g) < 0.05, 0)
    state = g.get_state()
    centres, contexts = window_pairs(tokens, sentence, window, g)
    g.set_state(state)
    reach = torch.randint(1, window + 1, (300, 1), generator=g).squeeze(1).tolist()
    expected = _reference_pairs(tokens.tolist(), sentence.tolist(), reach)
    assert sorted(zip(centres.tolist(), contexts.tolist())) == sorted(expected)


def test_window_shrinks_uniformly_and_stays_in_sentences():
    tokens = torch.arange(20000)
    sentence = tokens // 100
    centres, contexts = window_pairs(tokens, sentence, 5, torch.Generator().manual_seed(4))
    assert torch.equal(sentence[centres], sentence[contexts])
    distance = (centres - contexts).abs()
    assert distance.min() >= 1 and distance.max() <= 5
    # With b uniform in 1..5, a context at distance d appears with probability (6-d)/5.
    hist = torch.bincount(distance, minlength=6)[1:].double()
    expected = torch.tensor([5, 4, 3, 2, 1], dtype=torch.float64) / 5 * 2 * 20000
    assert torch.allclose(hist, expected, rtol=0.05), hist


def test_negatives_follow_unigram_to_the_three_quarters():
    counts = torch.tensor([5000, 1000, 200, 40, 8])
    sampler = AliasTable(counts, 0.75, torch.device("cpu"))
    want = counts.double() ** 0.75 / (counts.double() ** 0.75).sum()
    np.testing.assert_allclose(alias_probabilities(sampler.table), want.numpy(), rtol=1e-8)
    draws = sampler.sample((200000,), torch.Generator().manual_seed(5))
    got = torch.bincount(draws, minlength=5).double() / draws.numel()
    assert torch.allclose(got, want, atol=0.005), (got, want)


def test_alias_table_is_the_same_built_in_c_or_in_python(monkeypatch):
    from w2vdist.training.backends import cpu

    counts = np.array([int(1e6 / (i + 1) ** 1.1) + 1 for i in range(3000)] + [0, 0, 7])
    compiled = alias_table(counts)
    monkeypatch.setattr(cpu, "available", lambda: False)
    plain = alias_table(counts)
    assert torch.equal(compiled, plain)
    with pytest.raises(ValueError, match="at least one positive"):
        alias_table(np.zeros(3))


def test_subsampling_compacts_kept_words_to_the_front_in_order():
    g = torch.Generator().manual_seed(6)
    tokens = torch.randint(0, 50, (1000,), generator=g)
    sentence = torch.arange(1000) // 37
    keep = torch.rand(50, generator=g)
    state = g.get_state()
    out_tokens, out_sentence, kept = subsample(tokens, sentence, keep, g)
    g.set_state(state)
    chosen = torch.rand(1000, generator=g) < keep[tokens]
    n = int(kept)
    assert out_tokens.shape == tokens.shape and kept.dim() == 0 and n == int(chosen.sum())
    assert torch.equal(out_tokens[:n], tokens[chosen])
    assert torch.equal(out_sentence[:n], sentence[chosen])
    assert (out_sentence[n:] == -1).all()


def test_sampler_shapes_depend_on_the_batch_size_alone():
    """Fixed shapes: two batches of the same size but different words give tensors of the
    same shapes (nothing is sized by what subsampling kept)."""
    counts = torch.tensor([10_000, 5000, 100, 50, 10, 5])
    model = ModelConfig(window=3, negative=4, sample=1e-2)
    sampler = WindowSampler(counts, model, torch.Generator().manual_seed(1), torch.device("cpu"))
    frequent = torch.zeros(500, dtype=torch.int64)
    rare = torch.full((500,), 5)
    sentence = torch.arange(500) // 50
    a, b = sampler(frequent, sentence), sampler(rare, sentence)
    assert [t.shape for t in a] == [t.shape for t in b]
    assert a[2].sum() < b[2].sum()  # frequent words were dropped: fewer real contexts
    assert (a[2].sum(1) > 0).sum() < 500 and (b[2].sum(1) > 0).sum() == 500


def test_learning_rate_decays_linearly_to_alpha_times_1e_minus_4():
    plan = Plan.build(total_tokens=10_000, rank_tokens=[5_000, 5_000], words_per_step=200,
                      epochs=3)
    assert plan.steps_per_epoch == 50 and plan.total_steps == 150
    assert plan.learning_rate(0, 0.025, 1e-4) == 0.025
    assert math.isclose(plan.learning_rate(150, 0.025, 1e-4), 0.025 * 1e-4)
    assert math.isclose(plan.learning_rate(75, 0.025, 1e-4), 0.025 * (1 + 1e-4) / 2)


def test_ranks_share_a_step_in_proportion_to_their_tokens():
    plan = Plan.build(total_tokens=9_000, rank_tokens=[5_000, 4_000], words_per_step=200,
                      epochs=1)
    assert plan.rank_words == (111, 89) and plan.words_per_step == 200
    assert proportional(10, [1, 1, 1]) == (4, 3, 3)  # remainders to the first ranks
    assert proportional(3, [1_000_000, 1, 1]) == (1, 1, 1)  # every rank takes a word
    assert sum(proportional(65_536, [7, 3, 11, 5])) == 65_536
