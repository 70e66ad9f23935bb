"""The miniature world's quality, measured on the shipped weights against the targets of its issue.

    python benchmarks/world_quality.py [--identities 500] [--prompts 400] [--steps 30] [--json FILE]

Prints, for every model of the world, the figure and its target:
- the recogniser: verification of unseen (held-out) people, overall and same person with a hat
  against without (target >= 0.99);
- the context classifier on fresh renders (the ground-truth check: >= 0.99 per attribute);
- the detector: found faces, false positives on pictures without one, landmark error;
- the world CLIP: the right caption first among every context's caption (>= 0.90);
- the text-to-image models (world, world-xl): identity top-1 among the celebrities on prompts
  with (background, hat) pairs held out from each celebrity's training set (>= 0.90), context
  accuracy per attribute (>= 0.90), with the ceiling (real renders, same contexts) and the floor
  ("a person" instead of the name: what evaluate's --method none reports) beside them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

TARGETS = {"recogniser": 0.99, "classifier": 0.99, "clip": 0.90, "identity": 0.90, "context": 0.90}


def main() -> None:
    from faceid_cli.world import SUMMARY_NAME, weights_dir
    from faceid_cli.world.quality import format_quality, measure_world

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=500)
    parser.add_argument("--per-identity", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=400)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    root = weights_dir()
    recipe = json.loads((root / SUMMARY_NAME).read_text())["recipe"]
    started = time.perf_counter()
    quality = measure_world(root, recipe, sizes={"identities": args.identities, "per_identity": args.per_identity,
                                                 "prompts": args.prompts, "steps": args.steps,
                                                 "guidance": args.guidance})
    print(format_quality(quality))
    print()
    verdicts = [("recogniser verification", quality["recogniser"]["accuracy"], TARGETS["recogniser"])]
    verdicts += [(f"classifier {k}", v, TARGETS["classifier"]) for k, v in quality["classifier"].items()]
    if "clip" in quality:
        verdicts.append(("clip right caption first", quality["clip"]["top1_among_all_contexts"], TARGETS["clip"]))
    for name in ("world", "world-xl"):
        if name in quality:
            verdicts.append((f"{name} identity top-1", quality[name]["identity_top1"], TARGETS["identity"]))
            verdicts += [(f"{name} context {k}", v, TARGETS["context"]) for k, v in quality[name]["context"].items()]
    for label, value, target in verdicts:
        print(f"{label:<34} {value:.3f}  target {target:.2f}  {'met' if value >= target else 'MISSED'}")
    print(f"\nmeasured in {time.perf_counter() - started:.0f} s on {args.identities}x{args.per_identity} held-out renders "
          f"and {args.prompts} prompts per model ({args.steps} steps, guidance {args.guidance})")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(quality, handle, indent=2)
    sys.exit(0)


if __name__ == "__main__":
    main()
