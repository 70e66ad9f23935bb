"""Overhead of identity conditioning over the plain diffusers pipeline, at equal settings and
seed: the plain pipeline renders "a person as a chef"; faceid renders "S* as a chef" with the
identity's words injected (prompt encoding included). Interleaved runs, median ratio.

    python benchmarks/conditioning_overhead.py [--model tiny|tiny-xl] [--steps 30] [--repeats 7]

Target: faceid / plain <= 1.02.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import interleaved, report  # noqa: E402

from faceid_cli.pipeline_faceid import FaceIDPipeline  # noqa: E402

PHOTO = Path(__file__).resolve().parent.parent / "tests" / "data" / "faces" / "obama.jpg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    pipeline = FaceIDPipeline.from_model(args.model)
    identity = pipeline.encode([PHOTO])
    pipe = pipeline.pipe
    size = pipeline.default_size

    def plain():
        pipe("a person as a chef", num_inference_steps=args.steps, height=size, width=size,
             generator=[torch.Generator("cpu").manual_seed(0)])

    def faceid():
        pipeline(identity, "S* as a chef", seeds=[0], steps=args.steps, height=size, width=size)

    pipeline._use_scheduler("ddim")  # both use the same DDIM scheduler object
    medians = interleaved({"plain diffusers pipeline": plain, "faceid (S* conditioning)": faceid}, args.repeats)
    report(f"{args.model}, {args.steps} DDIM steps at {size}px, median of {args.repeats} interleaved runs",
           medians, "plain diffusers pipeline")
    ratio = medians["faceid (S* conditioning)"] / medians["plain diffusers pipeline"]
    print(f"overhead ratio faceid/plain = {ratio:.3f} (target <= 1.02): {'OK' if ratio <= 1.02 else 'OVER'}")


if __name__ == "__main__":
    main()
