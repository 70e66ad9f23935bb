"""`faceid selfaug build` against `faceid batch` rendering the same prompts, in one run.

    python benchmarks/selfaug_throughput.py [--names 6] [--per-prompt 4] [--steps 20]

Both render the same images (the source prompts and every edit prompt for every name, same seeds,
same batch size); selfaug also detects, aligns and scores them. Prints images/s of each and the
ratio. Target: selfaug / batch >= 0.9 (scoring and bookkeeping cost at most a tenth).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    from faceid_cli.selfaug.build import (BuildSettings, _slug, build, edit_seed, merge, read_edit_prompts,
                                          read_source_prompt, source_seed)
    from faceid_cli.world.celebrities import celebrities

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="world")
    parser.add_argument("--names", type=int, default=6)
    parser.add_argument("--per-prompt", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    names = [name for _, name in celebrities(args.names)]
    prompts = read_edit_prompts("world")[:4]
    settings = BuildSettings(model=args.model, names=names, prompts=prompts, per_prompt=args.per_prompt, sources=1,
                             steps=args.steps, guidance=5.0, batch_size=args.batch_size,
                             source_prompt=read_source_prompt(None, "world"))
    work = Path(tempfile.mkdtemp(prefix="selfaug-bench-"))
    try:
        # batch first: the same prompts and seeds, as a jobs file (batch's jobs name a face even
        # under --method none, which never reads it)
        from faceid_cli.images import save_image
        from faceid_cli.world.render import render_sample

        face = save_image(render_sample(0, 0).image, work / "face.png")
        jobs = []
        for k, name in enumerate(names):
            jobs.append({"face": str(face), "prompt": settings.source_prompt.replace("<name>", name),
                         "name": f"{_slug(name)}-{k}",
                         "seed": source_seed(0, k, 0), "num_images": 1})
            for p, template in enumerate(prompts):
                jobs.append({"face": str(face), "prompt": template.replace("<name>", name),
                             "name": f"{_slug(name)}-{k}/p{p:02d}",
                             "seed": edit_seed(0, k, p, 0, args.per_prompt), "num_images": args.per_prompt})
        (work / "jobs.jsonl").write_text("".join(json.dumps(j) + "\n" for j in jobs))
        from typer.testing import CliRunner

        from faceid_cli.cli import app

        images = sum(j["num_images"] for j in jobs)
        started = time.perf_counter()
        result = CliRunner().invoke(app, ["batch", str(work / "jobs.jsonl"), "-o", str(work / "batch"), "--model",
                                          args.model, "--method", "none", "--steps", str(args.steps), "--guidance",
                                          "5", "--batch-size", str(args.batch_size), "-q"])
        batch_seconds = time.perf_counter() - started
        assert result.exit_code == 0, result.output
        started = time.perf_counter()
        counts = build(work / "selfaug", settings)
        merge(work / "selfaug")
        selfaug_seconds = time.perf_counter() - started
        selfaug_images = counts["names"] + counts["edited_images"]
        print(f"{args.model}: {len(names)} names x ({1} source + {len(prompts)} prompts x {args.per_prompt}), "
              f"{args.steps} steps, batch {args.batch_size}")
        print(f"  faceid batch    {images} images in {batch_seconds:6.1f} s  {images / batch_seconds:6.2f} images/s")
        print(f"  faceid selfaug  {selfaug_images} images in {selfaug_seconds:6.1f} s  "
              f"{selfaug_images / selfaug_seconds:6.2f} images/s (detection, alignment, scoring and ranking included)")
        ratio = (selfaug_images / selfaug_seconds) / (images / batch_seconds)
        print(f"  selfaug / batch throughput: {ratio:.3f} (target >= 0.9)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
