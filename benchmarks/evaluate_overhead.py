"""`faceid evaluate` (generation + scoring + reports) against generating the same images alone.

    python benchmarks/evaluate_overhead.py [--faces 4] [--prompts 4] [-n 4] [--steps 20]

Generation alone is the same evaluation run twice into a folder: the second run finds every image
and only scores, so scoring's cost is (first - generation) where generation is timed by running
'faceid batch' on the same jobs. Target: (generation + scoring) / generation <= 1.25 on the world.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    from faceid_cli.evaluate.prompts import world_prompts
    from faceid_cli.evaluate.run import Variant, run_evaluation

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("-n", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="evaluate-bench-"))
    try:
        from faceid_cli.world.quality import held_out_renders

        pool = held_out_renders(args.faces, 1, 3)
        faces = []
        for i in range(args.faces):
            path = work / f"face-{i}.png"
            from PIL import Image

            Image.fromarray(pool.images[i]).save(path)
            faces.append(path)
        prompts = list(world_prompts(args.prompts))
        variants = [Variant("none", "none")]
        common = dict(model="world", num_images=args.n, steps=args.steps, guidance=5.0, batch_size=8)
        started = time.perf_counter()
        run_evaluation(work / "warm", faces[:1], prompts[:1], variants, **{**common, "num_images": 1})  # loads
        started = time.perf_counter()
        run_evaluation(work / "full", faces, prompts, variants, **common)
        full = time.perf_counter() - started
        started = time.perf_counter()
        run_evaluation(work / "full", faces, prompts, variants, **common)
        scoring = time.perf_counter() - started
        generation = full - scoring
        images = args.faces * args.prompts * args.n
        print(f"world: {images} images ({args.faces} faces x {args.prompts} prompts x {args.n}), {args.steps} steps")
        print(f"  generation + scoring + reports  {full:6.1f} s")
        print(f"  scoring + reports alone         {scoring:6.1f} s  ({images / scoring:.1f} images/s)")
        print(f"  (generation + scoring) / generation: {full / generation:.3f} (target <= 1.25)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
