"""`faceid batch` on 20 jobs against 20 separate `faceid generate` runs (the shell-loop way),
same jobs, same settings, same tiny model; and the per-image time inside a batch against a single
image. Everything is measured in this one run, side by side.

    python benchmarks/batch_vs_separate.py [--jobs 20] [--steps 30] [--batch-size 4]

Target: batch at least 8x faster than separate runs on `tiny`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FACES = Path(__file__).resolve().parent.parent / "tests" / "data" / "faces"
PHOTOS = ["obama.jpg", "biden.jpg", "alex_lacamoire1.jpg", "rose_leslie1.jpg", "kit_harington1.jpeg"]
PROMPTS = ["S* as a chef", "S* as a nurse", "S* wearing a hat", "oil painting of S*"]


def run(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    faceid = str(Path(sys.executable).parent / "faceid")
    jobs = [{"face": str(FACES / PHOTOS[i % len(PHOTOS)]), "prompt": PROMPTS[i % len(PROMPTS)],
             "name": f"job{i}", "seed": i} for i in range(args.jobs)]
    steps = ["--steps", str(args.steps)]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        jobs_file = folder / "jobs.jsonl"
        jobs_file.write_text("".join(json.dumps(job) + "\n" for job in jobs))
        separate = sum(run([faceid, "generate", job["face"], job["prompt"], "--seed", str(job["seed"]),
                            "-o", str(folder / "separate"), *steps]) for job in jobs)
        batched = run([faceid, "batch", str(jobs_file), "-o", str(folder / "batch"), *steps,
                       "--batch-size", str(args.batch_size), "--quiet"])
        # per-image cost inside one process, models already loaded
        from faceid_cli.pipeline_faceid import FaceIDPipeline, RenderRequest

        pipeline = FaceIDPipeline.from_model("tiny")
        identity = pipeline.encode([FACES / "obama.jpg"])
        pipeline(identity, "S* as a chef", seeds=[0], steps=args.steps)  # warm-up
        start = time.perf_counter()
        pipeline(identity, "S* as a chef", seeds=[0], steps=args.steps)
        single = time.perf_counter() - start
        requests = [RenderRequest(identity, "S* as a chef", "", seed) for seed in range(args.batch_size)]
        start = time.perf_counter()
        pipeline.render(requests, steps=args.steps)
        per_image_batched = (time.perf_counter() - start) / args.batch_size
    print(f"{args.jobs} jobs, tiny model, {args.steps} steps, batch size {args.batch_size}")
    print(f"  {args.jobs} separate `faceid generate` runs   {separate:8.1f} s")
    print(f"  one `faceid batch` run                  {batched:8.1f} s")
    ratio = separate / batched
    print(f"  batch is {ratio:.1f}x faster (target >= 8x): {'OK' if ratio >= 8 else 'SHORT'}")
    print(f"  per image: single {single:.2f} s, inside a batch of {args.batch_size} {per_image_batched:.2f} s "
          f"({per_image_batched / single:.2f}x)")


if __name__ == "__main__":
    main()
