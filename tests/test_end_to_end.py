"""The whole path on the embedded corpus: synth -> prepare -> train -> export -> eval.

Training must recover the planted structure; a broken trainer (no update, shuffled rows,
wrong gradient sign) scores near zero here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gensim.models import KeyedVectors

from w2vdist.cli import main


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    assert main(["synth", str(root / "synth"), "--seed", "3", "--sentences", "60000"]) == 0
    assert main(["prepare", str(root / "synth" / "corpus.txt"), "-o", str(root / "shards"),
                 "--min-count", "5", "--shard-tokens", "200000"]) == 0
    return root


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["cpu-kernel", "torch"])
def test_training_recovers_planted_analogies_and_clusters(corpus, tmp_path, backend):
    run = tmp_path / "run"
    assert main(["train", "--data.shards", str(corpus / "shards"), "--train.run_dir", str(run),
                 "--train.backend", backend, "--model.dim", "50", "--model.sample", "1e-3",
                 "--train.epochs", "3", "--wandb", "disabled"]) == 0
    vectors = tmp_path / "vectors.bin"
    assert main(["export", str(run), "-o", str(vectors), "--format", "binary"]) == 0
    scores = tmp_path / "scores.json"
    synth = corpus / "synth"
    assert main(["eval", str(vectors), "--analogies", str(synth / "analogies.txt"),
                 "--similarity", str(synth / "similarity.tsv"), "--json", str(scores)]) == 0
    result = json.loads(scores.read_text())
    assert result["analogies"]["total"] >= 0.90, result["analogies"]
    assert result["analogies"]["coverage"] == 1.0
    assert result["similarity"]["spearman"] >= 0.8, result["similarity"]
    # The export is a real word2vec file, and in it a topic word's nearest neighbours are
    # words of its own topic.
    kv = KeyedVectors.load_word2vec_format(str(vectors), binary=True)
    topics = json.loads((synth / "synth.json").read_text())["topics"]
    hits = total = 0
    for members in topics.values():
        words = set(members.split())
        for word in list(words)[:5]:
            neighbours = [w for w, _ in kv.most_similar(word, topn=5)]
            hits += sum(w in words for w in neighbours)
            total += len(neighbours)
    assert hits / total >= 0.8
