"""The Python API: WordVectors against gensim, into torch, prepare/train from Python,
continued training, self-describing exports, W&B artifacts, and the README's example."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from gensim.models import KeyedVectors

import w2vdist
from tests.helpers import offline_runs, write_zipf_corpus
from w2vdist import WordVectors
from w2vdist.cli import main
from w2vdist.corpus.shards import Manifest, decode_sample
from w2vdist.errors import UsageError
from w2vdist.training import checkpoint

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"model": {"dim": 16}, "optim": {"batch_words": 500},
         "train": {"backend": "cpu-kernel", "threads": 1, "epochs": 2},
         "data": {"loader_workers": 0}, "checkpoint": {"every_minutes": 0},
         "wandb": {"mode": "disabled"}}


def sections(run_dir: Path, shards: Path, **more: dict) -> dict:
    out = {k: dict(v) for k, v in SMALL.items()}
    out["data"]["shards"] = str(shards)
    out["train"]["run_dir"] = str(run_dir)
    for key, values in more.items():
        out.setdefault(key, {}).update(values)
    return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("api")
    corpus = write_zipf_corpus(root / "corpus.txt", 2000)
    with open(corpus, "a", encoding="utf-8") as f:  # words prepare must normalize and lowercase
        f.write("Café CAFÉ cafe\u0301 w1 w2\n" * 3)
    w2vdist.prepare(corpus, root / "shards", min_count=2, shard_tokens=8000, block_tokens=1000,
                    workers=1)
    return root / "shards"


@pytest.fixture(scope="module")
def trained(shards, tmp_path_factory) -> w2vdist.TrainResult:
    run = tmp_path_factory.mktemp("run") / "run"
    return w2vdist.train(**sections(run, shards))


# --- WordVectors ------------------------------------------------------------------------------


def test_word_vectors_of_a_run_carry_tables_counts_tokenizer_and_spec(trained):
    wv = trained.vectors
    inp, out = checkpoint.load_tables(trained.run_dir)[1:]
    assert torch.equal(wv.vectors, inp) and torch.equal(wv.output, out)
    assert wv.counts[0] >= wv.counts[-1] and len(wv.counts) == len(wv)
    assert wv.tokenizer["normalize"] == "nfc" and wv.spec["train"]["backend"] == "cpu-kernel"
    assert "w1" in wv and "nope" not in wv and wv["w1"].shape == (16,)
    assert wv.key_to_index[wv.index_to_key[7]] == 7


def test_gensim_round_trip_and_the_same_answers(trained, tmp_path):
    wv = trained.vectors
    kv = wv.to_gensim()
    assert kv.index_to_key == wv.index_to_key
    np.testing.assert_array_equal(kv.vectors, wv.vectors.numpy())
    assert kv.get_vecattr("w1", "count") == int(wv.counts[wv.key_to_index["w1"]])
    ours = wv.most_similar(positive=["w1", "w2"], negative=["w3"], topn=5, restrict_vocab=200)
    theirs = kv.most_similar(positive=["w1", "w2"], negative=["w3"], topn=5, restrict_vocab=200)
    assert [w for w, _ in ours] == [w for w, _ in theirs]
    np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], rtol=1e-4)
    assert wv.doesnt_match(["w1", "w2", "w3", "w350"]) == kv.doesnt_match(
        ["w1", "w2", "w3", "w350"])
    assert abs(wv.similarity("w1", "w5") - float(kv.similarity("w1", "w5"))) < 1e-5
    assert wv.analogy("w1", "w2", "w3", topn=2) == wv.most_similar(["w2", "w3"], ["w1"], topn=2)
    vector = np.random.default_rng(0).standard_normal(wv.vector_size).astype(np.float32)
    for ours, theirs in [  # vectors in a query are added as they are, words as unit vectors
        (wv.most_similar(["w1", vector], ["w3"], topn=5), kv.most_similar(["w1", vector], ["w3"],
                                                                          topn=5)),
        (wv.similar_by_vector(torch.from_numpy(vector), 5), kv.similar_by_vector(vector, 5)),
    ]:
        assert [w for w, _ in ours] == [w for w, _ in theirs]
        np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], rtol=1e-4)
    with pytest.raises(ValueError, match="a query vector has 3 values; these vectors have 16"):
        wv.most_similar(np.ones(3))
    back = WordVectors.from_gensim(kv)
    assert back.index_to_key == wv.index_to_key and torch.equal(back.vectors, wv.vectors)
    assert np.array_equal(back.counts, wv.counts)


@pytest.mark.filterwarnings("ignore:Call to deprecated `init_sims`")
def test_the_rest_of_the_keyedvectors_surface_answers_as_gensim(trained):
    wv = trained.vectors
    kv = wv.to_gensim()
    close = dict(rtol=1e-4, atol=1e-6)

    def same(ours, theirs):
        assert [w for w, _ in ours] == [w for w, _ in theirs]
        np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], **close)

    assert wv.get_index("w1") == kv.get_index("w1") and wv.get_index(7) == kv.get_index(7) == 7
    assert wv.get_index("nope", -1) == -1 and not wv.has_index_for("nope")
    assert wv.has_index_for("w1") and not wv.has_index_for(len(wv))
    with pytest.raises(KeyError, match="'nope' is not in the vocabulary"):
        wv.get_vector("nope")
    for norm in (False, True):
        np.testing.assert_allclose(wv.get_vector("w1", norm=norm), kv.get_vector("w1", norm=norm),
                                   **close)
    np.testing.assert_allclose(wv.get_normed_vectors(), kv.get_normed_vectors(), **close)
    assert wv.get_vecattr("w2", "count") == kv.get_vecattr("w2", "count") > 0
    vector = np.random.default_rng(1).standard_normal(wv.vector_size).astype(np.float32)
    for keys, options in [(["w1", "w2", "nope"], {}),
                          (["w1", vector, "w9"], dict(weights=[2.0, -1.0, 0.5])),
                          (["w3", "w4"], dict(pre_normalize=False, post_normalize=True))]:
        np.testing.assert_allclose(wv.get_mean_vector(keys, **options),
                                   kv.get_mean_vector(keys, **options), **close)
    with pytest.raises(KeyError):
        wv.get_mean_vector(["w1", "nope"], ignore_missing=False)
    assert wv.distance("w1", "w5") == pytest.approx(kv.distance("w1", "w5"), abs=1e-5)
    for query, others in [("w1", ()), ("w1", ["w2", "w30"]), (vector, ["w4"])]:
        np.testing.assert_allclose(wv.distances(query, others), kv.distances(query, others),
                                   **close)
    np.testing.assert_allclose(wv.cosine_similarities(vector, kv.vectors[:9]),
                               kv.cosine_similarities(vector, kv.vectors[:9]), **close)
    assert wv.n_similarity(["w1", "w2"], ["w3"]) == pytest.approx(
        kv.n_similarity(["w1", "w2"], ["w3"]), abs=1e-5)
    far = wv.index_to_key[60]
    assert wv.closer_than("w1", far) == kv.closer_than("w1", far) != []
    assert wv.rank("w1", far) == kv.rank("w1", far) > 1
    assert wv.most_similar_to_given("w1", ["w2", "w30", far]) == kv.most_similar_to_given(
        "w1", ["w2", "w30", far])
    same(wv.similar_by_word("w2", topn=4), kv.similar_by_word("w2", topn=4))
    same(wv.most_similar([("w1", 2.0), "w2", ("w3", -0.5)], topn=5),
         kv.most_similar([("w1", 2.0), "w2", ("w3", -0.5)], topn=5))
    # a weight in `negative` subtracts too (gensim takes its sign as given there)
    assert wv.most_similar([("w1", 2.0), "w2"], [("w3", 0.5)], topn=5) == wv.most_similar(
        [("w1", 2.0), "w2", ("w3", -0.5)], topn=5)
    np.testing.assert_allclose(wv.most_similar("w1", topn=None), kv.most_similar("w1", topn=None),
                               **close)
    assert wv.most_similar("w1", topn=0) == kv.most_similar("w1", topn=0) == []
    # 3CosMul: gensim searches every word whatever restrict_vocab says; ours stops at it
    same(wv.most_similar_cosmul(["w2", "w3"], ["w1"], topn=6),
         kv.most_similar_cosmul(["w2", "w3"], ["w1"], topn=6))
    same(wv.most_similar_cosmul("w5", topn=3), kv.most_similar_cosmul("w5", topn=3))
    np.testing.assert_allclose(wv.most_similar_cosmul(["w2"], ["w1"], topn=None),
                               kv.most_similar_cosmul(["w2"], ["w1"], topn=None), **close)
    top = KeyedVectors(wv.vector_size)
    top.add_vectors(wv.index_to_key[:100], wv.vectors[:100].numpy())
    same(wv.most_similar_cosmul(["w2", "w3"], ["w1"], topn=6, restrict_vocab=100),
         top.most_similar_cosmul(["w2", "w3"], ["w1"], topn=6))
    assert wv.most_similar_cosmul(["w2", "w3"], ["w1"], topn=6) != wv.most_similar_cosmul(
        ["w2", "w3"], ["w1"], topn=6, restrict_vocab=20)
    with pytest.raises(ValueError, match="at least one positive"):
        wv.most_similar_cosmul(negative=["w1"])


@pytest.mark.filterwarnings("ignore:Adding single vectors")
def test_changing_the_table_as_gensim_does(trained):
    """add_vectors / add_vector / item assignment / unit_normalize_all /
    sort_by_descending_frequency on a run's vectors and on gensim's copy give the same words
    and vectors; the output table and counts follow, and queries see the change."""
    wv = WordVectors.load(trained.checkpoint)
    kv = wv.to_gensim()
    rng = np.random.default_rng(2)
    new = rng.standard_normal((3, wv.vector_size)).astype(np.float32)
    size = len(wv)

    def same() -> None:
        assert wv.index_to_key == kv.index_to_key and wv.key_to_index == kv.key_to_index
        np.testing.assert_allclose(wv.vectors.numpy(), kv.vectors, rtol=1e-6)
        assert len(wv.output) == len(wv.counts) == len(wv)

    for table in (wv, kv):  # "w1" is present: kept, unless replaced
        table.add_vectors(["new-a", "w1", "new-b"], new)
    same()
    assert wv.counts[-2:].tolist() == [0, 0] and not wv.output[size:].any()
    assert wv.most_similar(positive=[new[0]], topn=1)[0][0] == "new-a"  # caches forgotten
    for table in (wv, kv):
        table["w1"] = new[2]  # replaced
        table[["w2", "new-c"]] = new[:2]
    same()
    np.testing.assert_array_equal(wv["w2"].numpy(), new[0])
    assert wv.add_vector("new-d", new[1]) == kv.add_vector("new-d", new[1]) == size + 3
    same()
    wv.add_vectors(["new-e", "w3"], new[:2], extras={"count": [7, 5]}, replace=True)
    assert wv.get_vecattr("new-e", "count") == 7 and wv.get_vecattr("w3", "count") == 5
    wv.set_vecattr("new-a", "count", 10**9)
    for word in wv.index_to_key[size:]:
        kv.add_vectors([word], [wv[word].numpy()])
        kv.set_vecattr(word, "count", wv.get_vecattr(word, "count"))
    kv.add_vectors(["w3"], [new[1]], replace=True)
    kv.set_vecattr("w3", "count", 5)
    # ties keep their order (gensim's put the later first); the counts decide the rest
    expected = [wv.index_to_key[i] for i in sorted(range(len(wv)),
                                                   key=lambda i: (-wv.counts[i], i))]
    wv.sort_by_descending_frequency()
    kv.sort_by_descending_frequency()
    assert wv.index_to_key == expected and expected[0] == "new-a"
    assert wv.counts.tolist() == [kv.get_vecattr(w, "count") for w in kv.index_to_key]
    assert sorted(wv.index_to_key) == sorted(kv.index_to_key)
    assert wv.output[wv.get_index("new-a")].abs().sum() == 0  # its zero row came along
    for word in ("new-a", "w1", "w3", "new-d"):
        np.testing.assert_allclose(wv[word].numpy(), kv[word], rtol=1e-6)
    norms = wv.vectors.norm(dim=1)
    wv.unit_normalize_all()
    kv.unit_normalize_all()
    for word in ("new-a", "w1", "w9"):
        np.testing.assert_allclose(wv[word].numpy(), kv[word], rtol=1e-5, atol=1e-7)
    assert norms.max() > 1.5 and torch.allclose(wv.vectors.norm(dim=1), torch.ones(len(wv)))
    wv.fill_norms()
    wv.vectors[0] *= 3  # changed in place: the kept lengths are stale, as gensim's would be
    assert float(wv.get_vector(0, norm=True).norm()) == pytest.approx(3)
    wv.fill_norms(force=True)
    assert float(wv.get_vector(0, norm=True).norm()) == pytest.approx(1)
    with pytest.raises(ValueError, match="3 distinct keys of 16 values each expected"):
        wv.add_vectors(["x", "y", "x"], new)
    with pytest.raises(ValueError, match="extras: only 'count' is held"):
        wv.add_vectors(["x"], new[:1], extras={"freq": [1]})


@pytest.mark.parametrize("name", ["v.bin", "v.txt", "v.vec"])
def test_files_round_trip_by_extension_and_gensim_reads_them(trained, tmp_path, name):
    wv = trained.vectors
    wv.save(tmp_path / name)
    kv = KeyedVectors.load_word2vec_format(str(tmp_path / name), binary=name.endswith(".bin"))
    np.testing.assert_array_equal(kv.vectors, wv.vectors.numpy())
    again = WordVectors.load(tmp_path / name)
    assert again.index_to_key == wv.index_to_key and torch.equal(again.vectors, wv.vectors)


def test_glove_files_without_a_header_load(tmp_path):
    path = tmp_path / "glove.txt"
    path.write_text("the 0.5 -1 2\nof 1e-3 0 3.5\n", encoding="utf-8")
    wv = WordVectors.load(path)
    assert wv.index_to_key == ["the", "of"] and wv.vector_size == 3
    assert torch.equal(wv["of"], torch.tensor([1e-3, 0, 3.5]))


def test_a_format_contradicting_the_extension_is_refused(trained, tmp_path, capsys):
    with pytest.raises(UsageError, match="cannot hold the text format"):
        trained.vectors.save(tmp_path / "v.bin", binary=False)
    code = main(["export", str(trained.run_dir), "-o", str(tmp_path / "v.txt"), "--format",
                 "binary"])
    assert code == 2 and "cannot hold the binary format" in capsys.readouterr().err
    assert not (tmp_path / "v.txt").exists()


def test_an_export_explains_itself(trained, tmp_path):
    assert main(["export", str(trained.run_dir), "-o", str(tmp_path / "v.bin")]) == 0
    kv = KeyedVectors.load_word2vec_format(str(tmp_path / "v.bin"), binary=True)  # by extension
    assert len(kv) == len(trained.vectors)
    assert main(["export", str(trained.run_dir), "-o", str(tmp_path / "v.bin.gz")]) == 0
    kv = KeyedVectors.load_word2vec_format(str(tmp_path / "v.bin.gz"), binary=True)
    np.testing.assert_array_equal(kv.vectors, trained.vectors.vectors.numpy())
    assert main(["export", str(trained.run_dir), "-o", str(tmp_path / "top.txt.xz"), "--limit",
                 "50", "--counts", str(tmp_path / "top.vocab")]) == 0
    kv = KeyedVectors.load_word2vec_format(str(tmp_path / "top.txt.xz"),
                                           fvocab=str(tmp_path / "top.vocab"))
    assert kv.index_to_key == trained.vectors.index_to_key[:50]
    np.testing.assert_allclose(kv.vectors, trained.vectors.vectors[:50].numpy())
    assert kv.get_vecattr(kv.index_to_key[0], "count") == trained.vectors.counts[0]
    meta = json.loads((tmp_path / "v.bin.json").read_text())
    assert meta["w2vdist_version"] == w2vdist.__version__ and meta["table"] == "input"
    assert meta["tokenizer"]["normalize"] == "nfc"
    assert meta["spec"]["run"]["vocab_hash"] == trained.spec.vocab_hash
    assert meta["spec"]["run"]["corpus"]["total_tokens"] > 0


# --- into torch -------------------------------------------------------------------------------


def test_to_embedding_rows_and_indices(trained):
    wv = trained.vectors
    embedding, vocab = wv.to_embedding(freeze=True)
    assert embedding.padding_idx == 0 and vocab.pad_index == 0 and vocab.unk_index == 1
    assert torch.equal(embedding.weight[0], torch.zeros(16))
    torch.testing.assert_close(embedding.weight[1], wv.vectors.mean(0))
    assert torch.equal(embedding.weight[2:], wv.vectors)
    assert vocab.key_to_index["w1"] == wv.key_to_index["w1"] + 2
    assert vocab.encode("w1 zzz w2", length=5) == [vocab.key_to_index["w1"], 1,
                                                   vocab.key_to_index["w2"], 0, 0]
    assert not embedding.weight.requires_grad
    chosen = torch.full((16,), 0.5)
    plain, bare = wv.to_embedding(freeze=False, padding=False, unknown_vector=chosen)
    assert plain.padding_idx is None and bare.unk_index == 0 and plain.weight.requires_grad
    assert torch.equal(plain.weight[0], chosen)
    _, none = wv.to_embedding(padding=False, unknown=False)
    assert none.encode("w1 zzz") == [wv.key_to_index["w1"]]


def test_encode_tokenizes_exactly_as_prepare_did(trained, shards):
    wv = trained.vectors
    corpus = (shards.parent / "corpus.txt").read_text(encoding="utf-8").splitlines()
    ours = [i for line in corpus for i in wv.encode(line)]
    theirs = []
    for path in Manifest.load(shards).shard_paths(shards):
        import webdataset

        for sample in webdataset.WebDataset(path, shardshuffle=False, empty_check=False):
            theirs.extend(decode_sample(sample)[0].tolist())
    assert ours == theirs
    assert wv.tokenize("Café CAFÉ cafe\u0301") == ["café"] * 3


# --- training from Python ---------------------------------------------------------------------


class Seen(w2vdist.Callback):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def on_epoch_end(self, epoch, step, session) -> None:
        self.events.append(("epoch", epoch, step, float(session.tables.output.abs().sum())))

    def on_checkpoint(self, path, step) -> None:
        self.events.append(("checkpoint", step))

    def on_eval(self, step, scores) -> None:
        self.events.append(("eval", step, scores["similarity/pairs"]))


def test_callbacks_see_every_epoch_checkpoint_and_eval(shards, tmp_path):
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("w1\tw2\t3\nw3\tw4\t1\nw5\tw9\t2\n")
    seen = Seen()
    result = w2vdist.train(**sections(tmp_path / "run", shards, train={"epochs": 3},
                                      eval={"similarity": str(pairs)}), callbacks=[seen])
    per_epoch = result.spec.plan.steps_per_epoch
    epochs = [e for e in seen.events if e[0] == "epoch"]
    assert [(e[1], e[2]) for e in epochs] == [(i, i * per_epoch) for i in (1, 2, 3)]
    assert all(e[3] > 0 for e in epochs)
    assert ("checkpoint", 3 * per_epoch) in seen.events
    assert ("eval", 3 * per_epoch, 3) in seen.events
    assert result.scores["similarity/pairs"] == 3 and result.exit_code == 0


def test_a_finished_run_says_so_and_more_epochs_extend_its_schedule(shards, tmp_path, capsys):
    run = tmp_path / "run"
    args = sections(run, shards, train={"backend": "torch", "epochs": 2})
    first = w2vdist.train(**args)
    again = w2vdist.train(**args)
    assert again.checkpoint == first.checkpoint and "already trained" in capsys.readouterr().out
    with pytest.raises(UsageError, match="can be extended, not shortened"):
        w2vdist.train(**sections(run, shards, train={"backend": "torch", "epochs": 1}))
    args["train"]["epochs"] = 4
    longer = w2vdist.train(**args)
    plan = longer.spec.plan
    assert plan.total_steps == 2 * first.spec.plan.total_steps
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    lrs = [r for r in records if "lr" in r]
    before = [r for r in lrs if r["step"] <= first.spec.plan.total_steps]
    after = [r for r in lrs if r["step"] > first.spec.plan.total_steps]
    # The learning rate follows the 4-epoch plan's line from where the 2-epoch run ended
    # (back up to half of alpha there, then down to alpha x 1e-4 at the new end).
    assert longer.spec.config.optim.alpha == 0.06  # the torch backend's default, resolved
    assert longer.spec.learning_rate(first.spec.plan.total_steps) == pytest.approx(0.03, rel=1e-3)
    for r in after:
        assert r["lr"] == pytest.approx(longer.spec.learning_rate(r["step"] - 1), rel=1e-9)
    assert before[-1]["lr"] < 0.01 * 0.06 < after[0]["lr"]
    assert after[-1]["step"] == plan.total_steps


def test_init_from_keeps_the_vectors_of_known_words(trained, shards, tmp_path):
    given = trained.vectors
    run = tmp_path / "run"
    result = w2vdist.train(**sections(run, shards, train={"init_from": str(trained.run_dir),
                                                          "epochs": 1},
                                      optim={"alpha": 1e-12}))
    started = result.vectors
    torch.testing.assert_close(started.vectors, given.vectors, atol=1e-6, rtol=0)
    torch.testing.assert_close(started.output, given.output, atol=1e-6, rtol=0)
    other = tmp_path / "small.txt"
    other.write_text("w1 -1 -1 -1\n", encoding="utf-8")
    with pytest.raises(UsageError, match="vectors of 3 dims, but model.dim is 16"):
        w2vdist.train(**sections(tmp_path / "r2", shards, train={"init_from": str(other)}))


def test_prepare_with_a_given_vocabulary(tmp_path):
    corpus = write_zipf_corpus(tmp_path / "c.txt", 300)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("w1 900\nw0 1000\nw2 5\nabsent 7\n", encoding="utf-8")  # -save-vocab
    summary = w2vdist.prepare(corpus, tmp_path / "out", vocab=str(vocab), min_count=6)
    words = (tmp_path / "out" / "vocab.tsv").read_text().split()
    assert words == ["w0", "1000", "w1", "900", "absent", "7"]
    assert summary.manifest.stats["paths"] == [str(corpus)]


def test_reproducible_settings_give_bitwise_equal_runs(shards, tmp_path):
    a = w2vdist.train(**sections(tmp_path / "a", shards)).vectors
    b = w2vdist.train(**sections(tmp_path / "b", shards)).vectors
    assert torch.equal(a.vectors, b.vectors) and torch.equal(a.output, b.output)


def test_without_a_compiler_auto_falls_back_and_says_what_it_costs(shards, tmp_path):
    env = dict(os.environ, CC="false", XDG_CACHE_HOME=str(tmp_path / "cache"))
    result = subprocess.run(
        [sys.executable, "-m", "w2vdist", "train", "--dry-run", "--data.shards", str(shards)],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert result.returncode == 0
    assert "backend torch" in result.stdout
    assert "compiled CPU kernel is unavailable" in result.stderr
    assert "several times slower" in result.stderr


# --- W&B -----------------------------------------------------------------------------------


def test_wandb_gets_the_vectors_artifact_neighbours_and_projection(shards, tmp_path,
                                                                   monkeypatch):
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_PROJECT", "WANDB_NAME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-home"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wandb-home").mkdir()
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("w1\tw2\t3\nw3\tw4\t1\nw5\tw9\t2\n")
    run = tmp_path / "run"
    w2vdist.train(**sections(run, shards, wandb={"mode": "offline"},
                             eval={"similarity": str(pairs), "probe_words": ["w1", "w2"]}))
    assert not (run / "wandb").exists()  # WANDB_DIR honoured
    (found,) = offline_runs(tmp_path / "wandb-home")
    rows = list(found["rows"].values())
    neighbours = [r for r in rows if "eval/neighbours/_type" in r]
    assert neighbours and neighbours[-1]["eval/neighbours/_type"] == "table-file"
    assert neighbours[-1]["eval/neighbours/nrows"] == 2  # the two probe words
    projection = [r for r in rows if "embeddings/_type" in r]
    assert projection and projection[-1]["embeddings/nrows"] == len(WordVectors.load(run))
    assert any("similarity/spearman" in r for r in rows)
    (vectors,) = [a for a in found["artifacts"] if a["type"] == "word-vectors"]
    assert vectors["metadata"]["spec"]["model"]["dim"] == 16
    assert vectors["metadata"]["tokenizer"]["normalize"] == "nfc"
    assert WordVectors.load(run / "vectors.bin").vector_size == 16
    assert json.loads((run / "vectors.bin.json").read_text())["words"] > 0


# --- the README's example ---------------------------------------------------------------------


def test_the_readme_python_example_runs_as_written(tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"## Python\n.*?```python\n(.*?)```", readme, flags=re.S)
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")  # top level, no __main__ guard, as users write it
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "epoch 3 done" in result.stdout and "classifier loss" in result.stdout
    loss = float(result.stdout.split("classifier loss")[1].split()[0])
    assert loss < 0.69  # it learnt something: chance is ln 2


def test_the_readme_gensim_equivalent_runs_as_written(tmp_path):
    """The "Coming from gensim" snippet, on gensim's own toy corpus (common_texts)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"### Coming from gensim.*?```python\n(.*?)```", readme, flags=re.S)
    script = tmp_path / "gensim_equivalent.py"
    script.write_text("import w2vdist\nfrom gensim.test.utils import common_texts\n"
                      "sentences = common_texts * 20\n" + code + "print(len(wv), wv.vector_size)\n",
                      encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", WANDB_MODE="disabled")
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == "12 100"  # common_texts' 12 words, min_count 1


def test_after_a_run_the_script_logs_as_before(shards, tmp_path, caplog):
    """A script that goes on after `train` gets w2vdist's later records through its own
    logging, and the finished run's train.log no longer grows."""
    w2vdist.train(**sections(tmp_path / "run", shards))
    log = tmp_path / "run" / "train.log"
    size = log.stat().st_size
    dup = tmp_path / "dup.txt"
    dup.write_text("2 1\na 1\na 2\n", encoding="utf-8")
    assert WordVectors.load(dup).index_to_key == ["a"]
    assert "dup.txt: 1 repeated word(s), the first 'a'" in caplog.text
    assert log.stat().st_size == size
