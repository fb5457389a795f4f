#!/usr/bin/env bash
# Training speed on 1 and 2 ranks for each sync strategy, read back from each run's metrics.jsonl.
#
#   benchmarks/ranks.sh SHARDS [more `w2vdist train` flags...]
#
# `exact` runs the torch backend (the only one that can share exact gradients), `local` the
# cpu-kernel backend; each run is `torchrun --standalone --nproc-per-node N -m w2vdist train`
# (as `python -m torch.distributed.run`) for a fixed number of steps, each rank taking
# optim.batch_words words per step, so N ranks train N times the words per step. The table
# gives the training loop's global words/s (`w2vdist.bench.run_figures`: no start-up, no final
# checkpoint), the speed-up over 1 rank, the share of loop time spent in collectives
# (sync_time_share) and the bytes each rank sent per step (sync_bytes_per_step).
#
# Environment: EXACT_STEPS (200), LOCAL_STEPS (2000), NPROCS ("1 2"), THREADS per rank (1),
# DEVICE (cpu; with cuda set LOCAL_BACKEND=torch), LOCAL_BACKEND (cpu-kernel), RUNS (keep the
# run directories there; default a temporary directory, removed). SHARDS needs at least as
# many shards as ranks. On a shared or small machine, ranks compete for cores: compare runs
# made with the same load, and give each rank its own cores (THREADS x ranks <= cores).
set -euo pipefail

shards=${1:?usage: $0 SHARDS [w2vdist train flags...]}
shift
if [ -n "${RUNS:-}" ]; then
    runs=$RUNS
    mkdir -p "$runs"
else
    runs=$(mktemp -d)
    trap 'rm -rf "$runs"' EXIT
fi

setups=("exact torch ${EXACT_STEPS:-200}" "local ${LOCAL_BACKEND:-cpu-kernel} ${LOCAL_STEPS:-2000}")
for setup in "${setups[@]}"; do
    read -r strategy backend steps <<<"$setup"
    for n in ${NPROCS:-1 2}; do
        run="$runs/$strategy-$n"
        echo "ranks: $strategy sync, $backend backend, $n rank(s), $steps steps -> $run.log" >&2
        if ! python -m torch.distributed.run --standalone --nproc-per-node "$n" -m w2vdist train \
            --data.shards "$shards" --train.run_dir "$run" --resume never \
            --sync.strategy "$strategy" --train.backend "$backend" \
            --train.device "${DEVICE:-cpu}" --train.threads "${THREADS:-1}" \
            --train.max_steps "$steps" --checkpoint.every_minutes 0 --wandb disabled \
            "$@" >"$run.log" 2>&1; then
            tail -n 20 "$run.log" >&2
            exit 1
        fi
    done
done

python - "$runs" <<'EOF'
import sys
from pathlib import Path

from w2vdist.bench import run_figures



def strategy_and_ranks(run: Path) -> tuple[str, int]:
    strategy, ranks = run.name.rsplit("-", 1)
    return strategy, int(ranks)


runs = sorted((p for p in Path(sys.argv[1]).iterdir() if p.is_dir()), key=strategy_and_ranks)
print(f"{'strategy':<9}{'ranks':>6}{'steps':>7}{'words/s':>12}{'speed-up':>9}{'per rank':>11}"
      f"{'sync share':>11}{'MB/step/rank':>13}{'loss':>8}")
single = {}
for run in runs:
    strategy, _ = strategy_and_ranks(run)
    f = run_figures(run)
    single.setdefault(strategy, f["words_per_s"] if f["world_size"] == 1 else None)
    base = single[strategy]
    speedup = f"{f['words_per_s'] / base:8.2f}x" if base else f"{'-':>9}"
    print(f"{strategy:<9}{f['world_size']:>6}{f['steps']:>7}{f['words_per_s']:>12,.0f}{speedup}"
          f"{f['words_per_s'] / f['world_size']:>11,.0f}{100 * f['sync_time_share']:>10.1f}%"
          f"{f['sync_bytes_per_step'] / 1e6:>13.3f}{f['final_loss']:>8.3f}")
EOF
