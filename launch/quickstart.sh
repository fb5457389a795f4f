#!/usr/bin/env bash
# The first command: install (launch/setup.sh), then go from nothing to evaluated word vectors
# in about a minute on a laptop CPU. Generates a corpus with planted analogies and similarities
# (`w2vdist synth`), prepares shards, trains (every GPU, else NPROC CPU workers), exports the
# vectors in word2vec binary format and scores them on what was planted.
#
#   bash launch/quickstart.sh [OUT_DIR]     # default: quickstart/
#
# Settings (environment variables): INSTALL (1; 0 skips the install), SENTENCES (synthetic
# corpus size, default 160000), EPOCHS (3), DIM (50), NPROC (CPU workers, 1), WANDB
# (disabled), PYTHON (python3). Rerunning starts a fresh run in OUT_DIR/run.
set -euo pipefail

: "${INSTALL:=1}"
: "${PYTHON:=python3}"
: "${SENTENCES:=160000}"
: "${EPOCHS:=3}"
: "${DIM:=50}"
: "${WANDB:=disabled}"

here=$(dirname "${BASH_SOURCE[0]}")
# shellcheck source=launch/common.sh
source "$here/common.sh"
out=${1:-quickstart}
w2v() { "$PYTHON" -m w2vdist "$@"; }

if [[ "$INSTALL" == 1 ]]; then
    w2v_log "0/5 install: torch and w2vdist (launch/setup.sh)"
    EXTRAS="" PYTHON="$PYTHON" "$here/setup.sh"
fi
w2v_log "1/5 synth: a corpus of $SENTENCES sentences with planted analogies -> $out/synth"
w2v synth "$out/synth" --sentences "$SENTENCES" --overwrite
w2v_log "2/5 prepare: vocabulary and WebDataset shards -> $out/shards"
w2v prepare "$out/synth/corpus.txt" -o "$out/shards" --min-count 5 --overwrite
w2v_log "3/5 train: $EPOCHS epochs of $DIM-dim skip-gram -> $out/run"
rm -rf "$out/run"
SHARDS="$out/shards" RUN_DIR="$out/run" WANDB="$WANDB" PYTHON="$PYTHON" "$here/torchrun.sh" \
    --model.dim "$DIM" --model.sample 1e-3 --train.epochs "$EPOCHS"
w2v_log "4/5 export: word2vec binary format -> $out/vectors.bin"
w2v export "$out/run" -o "$out/vectors.bin" --format binary
w2v_log "5/5 eval: planted analogies and word similarity"
w2v eval "$out/vectors.bin" --eval.analogies "$out/synth/analogies.txt" \
    --eval.similarity "$out/synth/similarity.tsv" --json "$out/scores.json"

"$PYTHON" - "$out/vectors.bin" "$out/scores.json" <<'PY'
import json, sys
scores = json.load(open(sys.argv[2]))
print(f"\nvectors: {sys.argv[1]} (word2vec binary; gensim: "
      "KeyedVectors.load_word2vec_format(path, binary=True))")
print(f"analogy accuracy: {scores['analogies']['total']:.1%}  "
      f"similarity spearman: {scores['similarity']['spearman']:.3f}")
PY
