"""Does `faceid selfaug`'s filter keep the edits that follow their prompts? Judged on the world by
its ground-truth context check (the context classifier), not by the CLIP that did the ranking.

    python benchmarks/selfaug_world_check.py SELFAUG_DIR

For the kept and the rejected edits of a `faceid selfaug build --names world --model world` run:
the share of asked attributes each image shows, how often it shows the source face's own value
where the prompt asked another, and the identity similarity to the source (1 - ID loss).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> None:
    from faceid_cli.evaluate.metrics import bootstrap_mean
    from faceid_cli.evaluate.world_check import context_rows
    from faceid_cli.images import load_image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    scored = [json.loads(line) for line in (args.folder / "scores.jsonl").read_text().splitlines() if line.strip()]
    kept = {json.loads(line)["image"] for line in (args.folder / "manifest.jsonl").read_text().splitlines()
            if line.strip()}
    faces = {}
    images, prompts, references = [], [], []
    for row in scored:
        if row["face"] not in faces:
            faces[row["face"]] = load_image(args.folder / row["face"])
        images.append(load_image(args.folder / row["image"]))
        prompts.append(row["prompt"])
        references.append(faces[row["face"]])
    checked = context_rows(images, prompts, references)
    print(f"{args.folder}: {len(kept)} kept of {len(scored)} edits")
    print(f"{'':<10} {'context shown':<24} {'source copied':<24} {'identity (1 - ID loss)':<24}")
    for label, members in (("kept", [i for i, r in enumerate(scored) if r["image"] in kept]),
                           ("rejected", [i for i, r in enumerate(scored) if r["image"] not in kept])):
        cells = []
        for values in ([checked[i]["context"] for i in members], [checked[i]["context_copied"] for i in members],
                       [1 - scored[i]["id_loss"] for i in members]):
            mean, low, high = bootstrap_mean([v for v in values if v is not None])
            cells.append(f"{mean:.3f} [{low:.3f}, {high:.3f}]")
        print(f"{label:<10} {cells[0]:<24} {cells[1]:<24} {cells[2]:<24}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
