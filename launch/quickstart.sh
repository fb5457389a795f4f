#!/usr/bin/env bash
# From nothing to evaluated word vectors in a minute: generate a corpus with planted analogies
# (`w2vdist synth`), prepare shards, train (every GPU, else NPROC CPU workers), export the
# vectors in word2vec format and score them on the planted analogies and similarities.
#
#   launch/quickstart.sh [OUT_DIR]     # default: quickstart/
#
# Settings (environment variables): SENTENCES (synthetic corpus size, default 160000),
# EPOCHS (3), DIM (50), NPROC (CPU workers, 1), WANDB (disabled), PYTHON (python3).
# Rerunning starts a fresh run in OUT_DIR/run.
set -euo pipefail

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

w2v_log "1/5 synth: a corpus of $SENTENCES sentences with planted analogies -> $out/synth"
w2v synth "$out/synth" --sentences "$SENTENCES" --overwrite
w2v_log "2/5 prepare: vocabulary and WebDataset shards -> $out/shards"
w2v prepare "$out/synth/corpus.txt" -o "$out/shards" --min-count 5 --overwrite
w2v_log "3/5 train: $EPOCHS epochs of $DIM-dim skip-gram -> $out/run"
rm -rf "$out/run"
SHARDS="$out/shards" RUN_DIR="$out/run" WANDB="$WANDB" "$here/torchrun.sh" \
    --model.dim "$DIM" --model.sample 1e-3 --train.epochs "$EPOCHS"
w2v_log "4/5 export: word2vec text format -> $out/vectors.txt"
w2v export "$out/run" -o "$out/vectors.txt" --format text
w2v_log "5/5 eval: planted analogies and word similarity"
w2v eval "$out/vectors.txt" --analogies "$out/synth/analogies.txt" \
    --similarity "$out/synth/similarity.tsv" --json "$out/scores.json"

"$PYTHON" - "$out/vectors.txt" "$out/scores.json" <<'PY'
import json, sys
scores = json.load(open(sys.argv[2]))
print(f"\nvectors: {sys.argv[1]} (word2vec text; gensim: KeyedVectors.load_word2vec_format)")
print(f"analogy accuracy: {scores['analogies']['total']:.1%}  "
      f"similarity spearman: {scores['similarity']['spearman']:.3f}")
PY
