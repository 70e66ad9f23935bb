"""Encoding latency per face, split into detection, alignment and the encoder, for the tiny
random encoder and for a real-size M² encoder (FaceCLIP's ViT-L backbone, random weights).

    python benchmarks/encode_latency.py [--repeats 5] [--device cpu|cuda]

DreamIdentity reports 0.04 s per identity on an A100; this prints what this machine does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from faceid_cli.encoders.m2 import M2IDEncoder, build_random_m2_encoder
from faceid_cli.faces.backend_dlib import DlibAnalyzer
from faceid_cli.pipeline_faceid import encode_identity

PHOTO = Path(__file__).resolve().parent.parent / "tests" / "data" / "faces" / "obama.jpg"


def measure(encoder, analyzer, repeats: int) -> dict[str, float]:
    encode_identity(encoder, analyzer, [PHOTO], method="m2")  # warm-up: loads models, first kernels
    runs = []
    for _ in range(repeats):
        timings: dict = {}
        encode_identity(encoder, analyzer, [PHOTO], method="m2", timings=timings)
        if encoder.parameters().__next__().is_cuda:
            torch.cuda.synchronize()
        runs.append(timings)
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    analyzer = DlibAnalyzer()
    encoders = {
        "tiny random M² (4 x 32 ViT)": build_random_m2_encoder((32,)),
        "real-size M² (ViT-L 24 x 768, SD2.1 words)": M2IDEncoder(word_dims=(1024,)).eval(),
        "real-size M² for SDXL (768 + 1280 words)": M2IDEncoder(word_dims=(768, 1280)).eval(),
    }
    print(f"encoding one 640x800 photo, median of {args.repeats}, encoder on {args.device}, dlib on cpu")
    print(f"  {'encoder':<44} {'load':>8} {'detect':>8} {'align':>8} {'encoder':>8} {'total':>8}  (ms)")
    for name, encoder in encoders.items():
        encoder.to(args.device)
        t = measure(encoder, analyzer, args.repeats)
        total = sum(t.values())
        print(f"  {name:<44} " + " ".join(f"{t[k] * 1000:8.1f}" for k in ("load", "detect", "align", "encoder"))
              + f" {total * 1000:8.1f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
