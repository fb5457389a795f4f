"""The compiled CPU kernel against a readable pair-at-a-time reference, and its sampling laws."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from w2vdist.training.backends import cpu
from w2vdist.training.sampling import alias_table, keep_probabilities

from tests.helpers import alias_probabilities

pytestmark = pytest.mark.skipif(not cpu.available(), reason=f"{cpu.unavailable_reason()}")

MASK = 2**64 - 1


# ---------------------------------------------------------------------------------------------
# Reference: the same algorithm, one pair at a time, in plain Python/numpy.


def lcg(r: int) -> int:
    return (r * 25214903917 + 11) & MASK


def below(r: int, n: int) -> int:
    return ((r >> 32) * n) >> 32


def draw_negative(table: np.ndarray, r: int) -> int:
    """Alias table row i = below(r, V); keep i if the product's next 31 bits are < threshold."""
    x = (r >> 32) * len(table)
    i = x >> 32
    return i if ((x & 0xFFFFFFFF) >> 1) < table[i, 0] else int(table[i, 1])


def splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def reference_train(
    tokens, lengths, w_in, w_out, keep, table, window, negative, a0, a1, seed, saturation=None,
    share=False,
):
    """word2vec.c skip-gram with negative sampling, single thread; updates w_in/w_out in place,
    and with `saturation` (norm_in, norm_out, sat_in, sat_out) each row's lr |g| / 2 x the other
    row's squared norm. `share`: a centre's negatives, drawn at its first context, serve its
    whole window."""
    r = splitmix64(seed)
    loss, pairs, kept = 0.0, 0, 0
    n_tokens, start = len(tokens), 0
    for length in lengths:
        sentence = []  # (word, position in the block) of the kept words
        for p in range(start, start + length):
            w = int(tokens[p])
            if keep[w] < 1:
                r = lcg(r)
                if not (r >> 40) < float(keep[w]) * 2**24:
                    continue
            sentence.append((w, p))
        start += length
        kept += len(sentence)
        for i, (word, p) in enumerate(sentence):
            alpha = a0 + (a1 - a0) * p / n_tokens
            r = lcg(r)
            half = 1 + below(r, window)
            drawn = None
            for j in range(max(0, i - half), min(len(sentence) - 1, i + half) + 1):
                if j == i:
                    continue
                context = sentence[j][0]
                if drawn is None or not share:
                    drawn = []
                    for _ in range(negative):
                        r = lcg(r)
                        drawn.append(draw_negative(table, r))
                targets = [(word, 1.0)] + [(t, 0.0) for t in drawn if t != word]
                neu1e = np.zeros_like(w_in[context])
                for t, label in targets:
                    f = float(np.dot(w_in[context], w_out[t]))
                    g = (label - 1 / (1 + math.exp(-f))) * alpha
                    loss += softplus(-f if label else f)
                    neu1e += g * w_out[t]
                    w_out[t] += g * w_in[context]
                    if saturation is not None:
                        norm_in, norm_out, sat_in, sat_out = saturation
                        sat_in[context] += 0.5 * abs(g) * norm_out[t]
                        sat_out[t] += 0.5 * abs(g) * norm_in[context]
                w_in[context] += neu1e
                pairs += 1
    return loss, pairs, kept


def zipf_counts(vocab: int) -> np.ndarray:
    return np.array([int(10_000 / (i + 1)) + 1 for i in range(vocab)], dtype=np.int64)


def only(word: int, vocab: int) -> torch.Tensor:
    """A negative table that always draws `word`."""
    return alias_table(np.eye(vocab)[word])


def run(tokens, lengths, w_in, w_out, keep, table, **kw):
    args = dict(window=5, negative=5, alpha_start=0.025, alpha_end=0.025, seed=1, threads=1)
    args.update(kw)
    return cpu.train_block(
        torch.as_tensor(tokens, dtype=torch.int32),
        torch.as_tensor(lengths, dtype=torch.int32),
        w_in, w_out, keep, table, **args,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------


BUILDS = {  # the dot product has an AVX-512, an AVX2 and a portable version
    "native": cpu.FLAG_SETS[0],
    "avx2": ["-O3", "-mavx2", "-mfma"],
    "portable": cpu.FLAG_SETS[-1],
}


@pytest.fixture(params=list(BUILDS))
def build(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the test with the kernel built by one of BUILDS."""
    if request.param == "avx2" and not {"avx2", "fma"} <= set(cpu._cpu_id().split()):
        pytest.skip("this CPU has no AVX2/FMA")
    monkeypatch.setitem(cpu._state, "lib", cpu.build(BUILDS[request.param]))


@pytest.mark.parametrize("share", [False, True], ids=["pair", "centre"])
@pytest.mark.parametrize("seed,window,sample", [(1, 3, 1e-2), (7, 5, 0.0), (123, 2, 5e-2)])
def test_matches_reference_single_thread(
    build, seed: int, window: int, sample: float, share: bool
) -> None:
    rng = np.random.default_rng(seed)
    vocab, dim = 15, 8
    counts = zipf_counts(vocab)
    tokens = rng.choice(vocab, size=300, p=counts / counts.sum()).astype(np.int32)
    lengths = np.array([7, 1, 0, 60, 5, 100, 2, 0, 125], dtype=np.int32)
    assert lengths.sum() == len(tokens)
    w_in = ((rng.random((vocab, dim)) - 0.5) / dim).astype(np.float32)
    w_out = ((rng.random((vocab, dim)) - 0.5) / dim).astype(np.float32)
    keep = keep_probabilities(torch.from_numpy(counts), sample)
    table = alias_table(counts)
    assert sample == 0 or (keep < 1).any()

    w_in0, w_out0 = w_in.copy(), w_out.copy()
    k_in, k_out = torch.from_numpy(w_in.copy()), torch.from_numpy(w_out.copy())
    got = run(tokens, lengths, k_in, k_out, keep, table, window=window, negative=4,
              alpha_start=0.05, alpha_end=0.01, seed=seed, share_negatives=share)  # fmt: skip
    want = reference_train(tokens, lengths, w_in, w_out, keep.numpy(), table.numpy(),
                           window, 4, np.float32(0.05), np.float32(0.01), seed,
                           share=share)  # fmt: skip

    assert got[1:] == want[1:]
    assert got[0] == pytest.approx(want[0], rel=1e-5)
    np.testing.assert_allclose(k_in.numpy(), w_in, atol=1e-5)
    np.testing.assert_allclose(k_out.numpy(), w_out, atol=1e-5)
    assert not np.allclose(w_in, w_in0) and not np.allclose(w_out, w_out0)  # it trained


def test_saturation_is_gathered_as_the_reference_does() -> None:
    """For `local` merges: each update adds lr |g| / 2 x the other row's squared norm (as of the
    last merge) to the updated row's saturation; untracked runs train the same."""
    from w2vdist.training.merge import Saturation

    rng = np.random.default_rng(5)
    vocab, dim = 15, 8
    counts = zipf_counts(vocab)
    tokens = rng.choice(vocab, size=200, p=counts / counts.sum()).astype(np.int32)
    lengths = np.array([50, 3, 97, 50], dtype=np.int32)
    w_in = rng.normal(0, 0.3, (vocab, dim)).astype(np.float32)
    w_out = rng.normal(0, 0.3, (vocab, dim)).astype(np.float32)
    keep = keep_probabilities(torch.from_numpy(counts), 1e-2)
    table = alias_table(counts)
    norms = [torch.rand(vocab) for _ in range(2)]
    sat = Saturation(*norms, torch.zeros(vocab), torch.zeros(vocab))
    k_in, k_out = torch.from_numpy(w_in.copy()), torch.from_numpy(w_out.copy())
    run(tokens, lengths, k_in, k_out, keep, table, window=3, negative=4, alpha_start=0.05,
        alpha_end=0.01, seed=3, saturation=sat)  # fmt: skip
    want = [n.numpy().astype(np.float64) for n in norms] + [np.zeros(vocab), np.zeros(vocab)]
    plain_in, plain_out = torch.from_numpy(w_in.copy()), torch.from_numpy(w_out.copy())
    run(tokens, lengths, plain_in, plain_out, keep, table, window=3, negative=4,
        alpha_start=0.05, alpha_end=0.01, seed=3)  # fmt: skip
    reference_train(tokens, lengths, w_in, w_out, keep.numpy(), table.numpy(), 3, 4,
                    np.float32(0.05), np.float32(0.01), 3, saturation=want)  # fmt: skip

    assert want[2].sum() > 0 and want[3].sum() > 0
    np.testing.assert_allclose(sat.sat_in.numpy(), want[2], rtol=1e-4)
    np.testing.assert_allclose(sat.sat_out.numpy(), want[3], rtol=1e-4)
    assert torch.equal(k_in, plain_in) and torch.equal(k_out, plain_out)


@pytest.mark.parametrize("p", [0.0, 0.05, 0.3, 0.77, 1.0])
def test_subsampling_keeps_each_word_with_its_probability(p: float) -> None:
    n, vocab = 40_000, 3
    keep = torch.tensor([1.0, p, 1.0], dtype=torch.float32)
    w = torch.zeros(vocab, 4)
    tokens = np.full(n, 1, dtype=np.int32)
    lengths = np.ones(n, dtype=np.int32)  # one-word sentences: no pairs, only subsampling
    counts = [run(tokens, lengths, w, w.clone(), keep, only(0, vocab), seed=s)
              for s in (1, 2)]  # fmt: skip
    for _, pairs, kept in counts:
        assert pairs == 0
        assert abs(kept - n * p) <= 5 * math.sqrt(n * p * (1 - p)) + 1e-9
    if 0 < p < 1:
        assert counts[0][2] != counts[1][2]  # the draws depend on the seed


def test_windows_never_cross_sentences() -> None:
    # Every token is its own word and w_in is the identity, so after a pair (context c, centre
    # w) row w of w_out holds ~alpha/2 in column c: the footprint of exactly the pairs trained.
    # Negatives all hit an extra "sink" word that appears in no sentence.
    lengths = np.array([5, 1, 7, 3, 6], dtype=np.int32)
    n = int(lengths.sum())
    sentence_of = np.repeat(np.arange(len(lengths)), lengths)
    vocab = n + 1
    alpha = 1e-3
    for seed in range(5):
        w_in, w_out = torch.eye(vocab), torch.zeros(vocab, vocab)
        _, pairs, _ = run(np.arange(n), lengths, w_in, w_out, torch.ones(vocab),
                          only(n, vocab), window=10, alpha_start=alpha, alpha_end=alpha,
                          seed=seed)  # fmt: skip
        trained = (w_out[:n, :n].abs() > alpha / 10).numpy()  # [centre, context]
        centres, contexts = np.nonzero(trained)
        assert len(centres) == pairs > 0
        assert (sentence_of[centres] == sentence_of[contexts]).all()
        neighbours = sentence_of[:-1] == sentence_of[1:]  # always within the window
        assert trained[np.arange(n - 1), np.arange(1, n)][neighbours].all()
        assert trained[np.arange(1, n), np.arange(n - 1)][neighbours].all()


@pytest.mark.parametrize("threads", [1, 3])
def test_threads_train_whole_sentences(threads: int) -> None:
    # With window 1 every word pairs with both neighbours and nothing else: a sentence of L
    # words gives exactly 2 (L - 1) pairs, fewer if a sentence were cut, more if windows crossed.
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 60, size=400).astype(np.int32)
    lengths[[3, 50, 51]] = [3000, 1500, 0]  # longer than one thread's share, and empty
    vocab = 50
    tokens = rng.integers(vocab, size=int(lengths.sum()))
    w_in, w_out = torch.rand(vocab, 8) - 0.5, torch.zeros(vocab, 8)
    _, pairs, kept = run(tokens, lengths, w_in, w_out, torch.ones(vocab),
                         alias_table(np.ones(vocab)), window=1, threads=threads)
    assert kept == len(tokens)
    assert pairs == 2 * np.maximum(lengths.astype(np.int64) - 1, 0).sum()


def test_a_window_past_every_sentence_pairs_whole_sentences() -> None:
    """item2vec's window: the largest a 32-bit window can be pairs every two words of a
    sentence (a draw below the sentence's length is about L / 2^31), with pair buffers sized
    by the longest sentence (the window's 2^31 would have them take hundreds of GB)."""
    lengths = np.array([40, 1, 300, 7, 0, 25], dtype=np.int32)
    vocab = 30
    tokens = np.random.default_rng(1).integers(vocab, size=int(lengths.sum()))
    w_in, w_out = torch.rand(vocab, 8) - 0.5, torch.zeros(vocab, 8)
    _, pairs, _ = run(tokens, lengths, w_in, w_out, torch.ones(vocab),
                      alias_table(np.ones(vocab)), window=2**31 - 1, threads=2)
    assert pairs == (lengths.astype(np.int64) * np.maximum(lengths - 1, 0)).sum()
    assert torch.isfinite(w_in).all() and w_out.abs().sum() > 0


def _footprint_setup(n_sentences: int, n_neg_words: int):
    """Sentences of two fresh words each, w_in zero, w_out one-hot: every dot product is 0.

    Each word is a context exactly once, while its w_in row is still zero, so every target gets
    sigmoid(0) = 1/2 and, with alpha = 2, a gradient of exactly +1 (positive) or -1 (negative);
    w_out never changes and row c of w_in ends up counting the targets of context c by column.
    """
    vocab = n_neg_words + 2 * n_sentences
    dim = n_neg_words + 1
    w_out = torch.zeros(vocab, dim)
    w_out[:n_neg_words, :n_neg_words] = torch.eye(n_neg_words)
    w_out[n_neg_words:, n_neg_words] = 1.0  # every corpus word: the "positive" column
    tokens = np.arange(n_neg_words, vocab, dtype=np.int32)
    lengths = np.full(n_sentences, 2, dtype=np.int32)
    return vocab, torch.zeros(vocab, dim), w_out, tokens, lengths


def test_negatives_follow_the_unigram_table() -> None:
    neg_words, n_sentences, negative = 10, 3000, 5
    counts = np.array([50, 40, 30, 20, 10, 8, 6, 4, 2, 1])
    vocab, w_in, w_out, tokens, lengths = _footprint_setup(n_sentences, neg_words)
    table = alias_table(np.concatenate([counts, np.zeros(vocab - neg_words)]))
    share = counts**0.75 / (counts**0.75).sum()
    exact = alias_probabilities(table)
    np.testing.assert_allclose(exact[:neg_words], share, rtol=1e-8)
    assert exact[neg_words:].sum() < 1e-8

    _, pairs, _ = run(tokens, lengths, w_in, w_out, torch.ones(vocab), table,
                      negative=negative, alpha_start=2.0, alpha_end=2.0, seed=3)  # fmt: skip
    assert pairs == 2 * n_sentences
    drawn = -w_in[:, :neg_words].sum(0).numpy()
    assert (drawn == np.round(drawn)).all() and drawn.sum() == pairs * negative
    assert w_in[:, neg_words].sum() == pairs  # one positive per pair
    expected = share * pairs * negative
    chi2 = float(((drawn - expected) ** 2 / expected).sum())
    assert chi2 < 40, (chi2, drawn, expected)  # 9 degrees of freedom: p ~ 1e-5


def test_a_negative_equal_to_the_centre_word_is_skipped() -> None:
    # One sentence [a, b] and a table holding only b: when b is the centre all draws are skipped.
    a, b = 0, 1
    w_in, w_out = torch.zeros(2, 2), torch.eye(2)  # dots stay 0 as in _footprint_setup
    run([a, b], [2], w_in, w_out, torch.ones(2), only(b, 2),
        negative=5, alpha_start=2.0, alpha_end=2.0)  # fmt: skip
    assert w_in[a].tolist() == [0.0, 1.0]  # context a, centre b: the positive only
    assert w_in[b].tolist() == [1.0, -5.0]  # context b, centre a: five negatives b


def topic_corpus(rng: np.random.Generator, n_sentences: int, topics: int, per_topic: int):
    """Each sentence uses the words of one topic only: same-topic words should end up close."""
    topic = rng.integers(topics, size=n_sentences)
    lengths = rng.integers(5, 30, size=n_sentences).astype(np.int32)
    tokens = np.concatenate([t * per_topic + rng.integers(per_topic, size=n)
                             for t, n in zip(topic, lengths)]).astype(np.int32)  # fmt: skip
    return tokens, lengths


@pytest.mark.parametrize("threads", [2, 0])
def test_multithreaded_training_learns(threads: int) -> None:
    rng = np.random.default_rng(0)
    topics, per_topic, dim = 40, 25, 32
    vocab = topics * per_topic
    tokens, lengths = topic_corpus(rng, 6000, topics, per_topic)
    counts = np.bincount(tokens, minlength=vocab)
    w_in = torch.from_numpy(((rng.random((vocab, dim)) - 0.5) / dim).astype(np.float32))
    w_out = torch.zeros(vocab, dim)
    keep, table = keep_probabilities(torch.from_numpy(counts), 1e-3), alias_table(counts)
    per_pair = []
    for epoch in range(4):
        a0, a1 = 0.025 * (1 - epoch / 4), 0.025 * (1 - (epoch + 1) / 4)
        loss, pairs, kept = run(tokens, lengths, w_in, w_out, keep, table,
                                alpha_start=a0, alpha_end=a1, seed=epoch, threads=threads)
        assert 0 < kept <= len(tokens) and pairs > kept
        per_pair.append(loss / pairs)
    assert all(math.isfinite(x) for x in per_pair)
    assert per_pair[-1] < 0.8 * per_pair[0], per_pair
    unit = torch.nn.functional.normalize(w_in, dim=1)
    cos = unit @ unit.T
    same = torch.arange(vocab)[:, None] // per_topic == torch.arange(vocab)[None, :] // per_topic
    assert cos[same].mean() > cos[~same].mean() + 0.3


def test_single_thread_is_deterministic() -> None:
    rng = np.random.default_rng(1)
    tokens, lengths = topic_corpus(rng, 200, 4, 10)
    counts = np.bincount(tokens, minlength=40)
    keep, table = keep_probabilities(torch.from_numpy(counts), 1e-2), alias_table(counts)
    init = torch.from_numpy(rng.random((40, 8)).astype(np.float32))
    results = []
    for seed in (5, 5, 6):
        w_in, w_out = init.clone(), init.clone()
        results.append((run(tokens, lengths, w_in, w_out, keep, table, seed=seed), w_in))
    assert results[0][0] == results[1][0] and torch.equal(results[0][1], results[1][1])
    assert not torch.equal(results[0][1], results[2][1])


def test_bad_inputs_raise_clear_errors() -> None:
    vocab, dim = 10, 4
    good = dict(
        tokens=torch.arange(6, dtype=torch.int32),
        lengths=torch.tensor([4, 2], dtype=torch.int32),
        w_in=torch.zeros(vocab, dim),
        w_out=torch.zeros(vocab, dim),
        keep_prob=torch.ones(vocab),
        neg_table=alias_table(np.ones(vocab)),
        window=5, negative=5, alpha_start=0.025, alpha_end=0.0, seed=0, threads=1,
    )  # fmt: skip
    cases = [
        ("tokens", torch.arange(6), TypeError, "tokens must be torch.int32, got torch.int64"),
        ("w_in", torch.zeros(dim, vocab).T, ValueError, "w_in must be contiguous"),
        ("w_out", torch.zeros(vocab, dim, device="meta"), ValueError, "w_out must be a CPU"),
        ("keep_prob", np.ones(vocab, np.float32), TypeError, "keep_prob must be a torch.Tensor"),
        ("w_out", torch.zeros(vocab, dim + 1), ValueError, "w_out has shape (10, 5)"),
        ("lengths", torch.tensor([4, 1], dtype=torch.int32), ValueError, "lengths sum to 5"),
        ("tokens", torch.tensor([0, 1, 2, 3, 4, 10], dtype=torch.int32), ValueError,
         "tokens has id 10 outside [0, 10)"),
        ("neg_table", alias_table(np.ones(3)), ValueError,
         "neg_table has shape (3, 2), expected (10, 2)"),
        ("neg_table", torch.tensor([[0, 10]] * vocab, dtype=torch.int32), ValueError,
         "neg_table has alias 10 outside [0, 10)"),
        ("window", 0, ValueError, "window (0) and negative (5) must be >= 1"),
        ("threads", -1, ValueError, "threads must be >= 0"),
    ]  # fmt: skip
    for name, value, exc, message in cases:
        with pytest.raises(exc, match=re.escape(message)):
            cpu.train_block(**{**good, name: value})
    assert good["w_in"].abs().sum() == 0  # nothing ran
    cpu.train_block(**good)  # and the good arguments do run
