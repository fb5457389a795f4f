#!/usr/bin/env bash
# Wall-clock time of `w2vdist prepare` on one corpus with the default settings (min_count 5)
# and 2 workers, the whole command included (start-up, both passes, writing shards).
#
#   benchmarks/prepare_speed.sh CORPUS [WORKERS]
#
# Prints prepare's summary, then `prepare_speed: SECONDS s, TOKENS/s` on the last line.
# The output goes to a temporary directory that is removed afterwards.
set -euo pipefail

corpus=${1:?usage: $0 CORPUS [WORKERS]}
workers=${2:-2}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

start=$(date +%s.%N)
python -m w2vdist prepare "$corpus" -o "$out/prepared" --min-count 5 --workers "$workers"
end=$(date +%s.%N)

python - "$out/prepared" "$start" "$end" <<'EOF'
import sys
from w2vdist.corpus.shards import Manifest

manifest = Manifest.load(sys.argv[1])
seconds = float(sys.argv[3]) - float(sys.argv[2])
tokens = manifest.stats["raw_tokens"]
print(f"prepare_speed: {seconds:.1f} s, {tokens / seconds:,.0f} tokens/s "
      f"({tokens:,} tokens, {manifest.stats['bytes'] / 1e6:.1f} MB)")
EOF
