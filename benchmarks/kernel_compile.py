"""The Triton kernel compiled for a GPU this machine need not have, and what its build costs.

    python benchmarks/kernel_compile.py --arch 90,80 --window 5,10,25 --negative 5,10 --dim 300

Triton compiles for any target (`GPUTarget("cuda", CC, 32)`) and its wheel's ptxas reports
registers and spills: the figures that decide how many programs an SM holds and whether a
setting's tiles (`backends.tiling.tiles`: the band grows with the window, the target tile
with the negatives) still fit. `tests/test_triton_kernel.py` compiles through `compile_kernel`
and holds the default tiles to no spills.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Build:
    """One compiled variant: its PTX, machine code, ptxas's -v report and resources."""

    ptx: str
    sass: str
    report: str
    shared: int  # bytes of shared memory a program asks for
    warps: int
    tiles: dict[str, int | bool]

    @property
    def registers(self) -> int:
        found = re.search(r"Used (\d+) registers", self.report)
        if found is None:
            raise ValueError(f"ptxas reported no registers:\n{self.report}")
        return int(found.group(1))

    @property
    def spills(self) -> tuple[int, int]:
        """Bytes spilled to local memory a thread: (stored, loaded)."""
        found = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", self.report)
        return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def compile_kernel(arch: int, share: str, dim: int, track: bool, damp: bool,
                   record: bool = False, precision: str = "tf32", window: int = 5,
                   negative: int = 5) -> Build:
    """The kernel at the tiles `tiles` gives these settings, compiled for sm_`arch`."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.compiler import get_ptxas
    from triton.compiler import ASTSource

    from w2vdist.training.backends import triton as kernels
    from w2vdist.training.backends.tiling import tiles as shapes

    tiles = shapes(window, negative, dim, share)
    blocks = dict(tiles)
    options = {key: blocks.pop(key) for key in ("num_warps", "enable_fp_fusion")}
    pointers = dict(w_in="*fp32", w_out="*fp32", tokens="*i64", sentence="*i64",
                    kept_ptr="*i64", table="*i32", seed_ptr="*i64", lr_ptr="*fp32",
                    sat_in="*fp32", sat_out="*fp32", crowd_in="*fp32",
                    crowd_out="*fp32", centres_ptr="*fp32", losses="*fp32", pair_counts="*i32",
                    record="*i64")  # fmt: skip
    scalars = dict(vocab="i32", dim="i32", window="i32", n_neg="i32", crowd_scale="fp32",
                   first_program="i32")
    constants = dict(SHARED=share == "chunk", TRACK=track, DAMP=damp, RECORD=record,
                     PRECISION=precision, **blocks)  # fmt: skip
    source = ASTSource(fn=kernels._sgns_chunk,
                       signature={**pointers, **scalars, **dict.fromkeys(constants, "constexpr")},
                       constexprs=constants)  # fmt: skip
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)
    ptx = compiled.asm["ptx"]
    assert compiled.asm["cubin"]
    ptxas = get_ptxas(arch).path
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "k.ptx").write_text(ptx)
        report = subprocess.run(
            [ptxas, f"-arch=sm_{arch}{'a' if arch >= 90 else ''}", "-v",
             str(Path(tmp, "k.ptx")), "-o", str(Path(tmp, "k.cubin"))],
            capture_output=True, text=True, timeout=300,
        ).stderr  # fmt: skip
        sass = subprocess.run([Path(ptxas).with_name("nvdisasm"), "-c", Path(tmp, "k.cubin")],
                              capture_output=True, text=True, timeout=300, check=True).stdout
    return Build(ptx, sass, report, compiled.metadata.shared, int(options["num_warps"]), tiles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="90", help="compute capabilities, e.g. 90,80,75")
    parser.add_argument("--window", default="5")
    parser.add_argument("--negative", default="5")
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--share", default="centre", help="centre, chunk or both: centre,chunk")
    args = parser.parse_args()

    def numbers(text: str) -> list[int]:
        return [int(x) for x in text.split(",")]

    print("arch share window negative | band targets warps | registers spilled(st/ld) shared")
    for arch in numbers(args.arch):
        for share in args.share.split(","):
            for negative in numbers(args.negative):
                for window in numbers(args.window):
                    # The variant `local` trains with: damped, tracking saturation.
                    b = compile_kernel(arch, share, args.dim, True, True, window=window,
                                       negative=negative)
                    print(f"sm_{arch} {share} {window} {negative} | {b.tiles['BLOCK_B']} "
                          f"{b.tiles['BLOCK_J']} {b.warps} | {b.registers} "
                          f"{b.spills[0]}/{b.spills[1]} {b.shared / 1024:.0f} KB", flush=True)


if __name__ == "__main__":
    main()
