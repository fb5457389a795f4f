"""`benchmarks/gpu_check.sh --quick`: the lent-GPU script's plumbing, on CPU (Triton's
interpreter), so that the one run a GPU gets is not spent on a broken script."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_quick_mode_prints_every_section_and_no_failure():
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--quick"],
                          capture_output=True, text=True, timeout=400,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    out = done.stdout
    assert done.returncode == 0 and "FAIL" not in out, out + done.stderr[-3000:]
    for tag in ("ENV", "CORRECT", "SYNC", "GRAPH", "BENCH", "MEM", "CKPT", "NCCL", "E2E",
                "LOADER", "FIT"):
        assert re.search(rf"^{tag} ", out, re.M), (tag, out)
    correct = re.findall(r"^CORRECT .*", out, re.M)
    assert len(correct) == 6 and all(line.endswith(" ok") for line in correct), correct
    assert sum("damped+saturation" in line for line in correct) == 2, correct
    # The default step at dim 300; quick mode's variants at dim 100, wider tiles among them.
    for dim, damping, share, window, negative, tiles, resident in (
            ("300", "0.1", "centre", 5, 5, "32x128", "1"),
            ("100", "0.0", "centre", 5, 5, "32x128", "-"),
            ("100", "0.3", "chunk", 5, 5, "32x32", "1"),  # one program
            ("100", "0.1", "centre", 10, 5, "64x128", "1"),
            ("100", "0.1", "centre", 5, 10, "32x128", "1")):
        assert re.search(rf"^BENCH backend=triton dim={dim} words_per_step=\d+ damping={damping} "
                         rf"negatives={share} window={window} negative={negative} "
                         rf"words_per_s=[\d,]+ .* tiles={tiles}x\d+ "
                         rf"resident_programs={resident}$", out, re.M), out
    assert "interpreter=True" in out
    assert re.search(r"^CKPT vocab=20000 dim=50 device=cpu gb=0.01 in_turn_s=[\d.]+ "
                     r"background_held_s=[\d.]+ background_written_s=[\d.]+ held_ratio=[\d.]+$",
                     out, re.M), out
    assert re.search(r"^NCCL backend=gloo .* merge_clock_ms=[\d.]+ after_queued_ms=[\d.]+$", out,
                     re.M), out
    for backend in ("triton", "torch"):
        assert re.search(rf"^SYNC backend={backend} steps=3 words_per_step=128 checked=no \(CPU\) "
                         rf"pairs=[1-9]\d* loss_per_pair=\d+\.\d+$", out, re.M), out
    assert re.search(r"^GRAPH words_per_step=128 dim=100 pairs=\[[1-9]\d*(, [1-9]\d*){3}\] "
                     r"eager_host_us=\d+ eager_step_us=\d+ graph=- \(no CUDA\)$", out, re.M), out
    assert re.search(r"^E2E backend=auto variant=default device=cpu sentences=6000 "
                     r"words_per_step=\d+ cuda_graph=false train_s=", out, re.M), out
    assert re.search(r"^E2E variant=eager flags parsed; trained on a GPU only$", out,
                     re.M), out
    assert len(re.findall(r"^LOADER device=cpu workers=\d words_per_step=65536 words_per_s=[\d,]+ "
                          r"trainer_words_per_cpu_s=[1-9][\d,]+ cpus=\d+$", out, re.M)) == 2
    assert re.search(r"^LOADER train device=cpu backend=cpu-kernel dim=100 words_per_step=9375 "
                     r"workers=1 words_per_s=[1-9][\d,]+ loader_wait_share=\d\.\d{3} "
                     r"handover_share=\d\.\d{3}$", out, re.M), out
    assert re.search(r"^LOADER run device=cpu backend=cpu-kernel dim=100 words_per_step=9375 "
                     r"control_every_steps=1 records=1 words_per_s=[1-9][\d,]+ "
                     r"loader_wait_share=\d\.\d{3} handover_share=\d\.\d{3}$", out, re.M), out
    assert re.search(r"^FIT refused before training: model.window 256 and model.negative 5 "
                     r"\(share_negatives centre\) make the Triton kernel's tile 1,024 band rows "
                     r"x 16 targets, past the 512 rows and 32,768 scores", out, re.M), out
    assert "FIT a tile against shared memory: checked at a GPU's first launch only" in out


def test_the_torch_steps_allowed_host_synchronisations_are_those_an_h200_counted():
    """SYNC allows the torch step what `reference.host_syncs` says: 6 in a 65,536-word step
    (two pieces), as counted on an H200; one piece, once per table."""
    from w2vdist.training.backends.reference import PIECE_CENTRES, host_syncs

    assert host_syncs(1 << 16) == 6
    assert host_syncs(512) == host_syncs(PIECE_CENTRES) == 2
    assert host_syncs(PIECE_CENTRES + 1) == 6
