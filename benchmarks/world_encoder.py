"""The M² encoder on the miniature world: the acceptance figures of `faceid train`, measured with
`faceid evaluate`'s own scoring (the world's recogniser for face similarity, its context
classifier for the ground-truth check).

    python benchmarks/world_encoder.py --encoder runs/world-m2/encoder [--encoder OTHER ...]
        [--identities 24] [--prompts 16] [--num-images 1] [--steps 30] [--out DIR]
        [--identity-start 0 --identity-start 0.2 ...] [--references 1 --references 4 ...]

On the same world prompts (``--prompts world``) and the same seeds it prints, one row each:
- ``ceiling``: a second real render of the person in the prompt's context against the reference;
- ``by name``: the world T2I drawing celebrities it knows by name (reference: a render of the
  celebrity) - what the encoder is measured against (target: the encoder reaches 90% of it);
- ``m2@CHECKPOINT`` (or ``clip-image@...``, by the checkpoint's kind): the encoder on held-out
  people it never saw, from one reference render (``@startF`` with several ``--identity-start``
  values: the share of steps drawn before the identity enters; ``@refsN`` with several
  ``--references`` values: each person given by N renders in different contexts, fused as
  ``faceid encode`` fuses several photos, the first being the one-reference row's render);
- ``none``: the same prompts with no identity (the floor).
with face similarity against the reference(s) (``faceid evaluate``'s figure), face similarity
against four unseen renders of the person (the mean of their unit embeddings: a target no row was
made from, so rows with different references compare fairly), the no-face rate, text alignment
(the world's CLIP), the share of asked attributes shown (target >= 0.80) and how often the
reference's own context was copied where the prompt asked for another.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def render_references(folder: Path, population: str, identities: int, seed: int) -> list[Path]:
    """One reference render per person, in a random context (so it shows a hat, glasses, a style
    and a background that a prompt can contradict)."""
    from faceid_cli.images import save_image
    from faceid_cli.world.people import population_seeds
    from faceid_cli.world.render import render_sample

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, person in enumerate(population_seeds(population, identities)):
        path = folder / f"{population}-{k:03d}.png"
        if not path.exists():
            save_image(render_sample(person, seed + k).image, path)
        paths.append(path)
    return paths


def fused_references(folder: Path, population: str, identities: int, seed: int, count: int):
    """Each person as a folder of ``count`` renders in random contexts; the first is
    :func:`render_references`' render, so one reference and several differ only by the others."""
    import shutil

    from faceid_cli.evaluate.run import Reference
    from faceid_cli.images import save_image
    from faceid_cli.world.people import population_seeds
    from faceid_cli.world.render import render_sample

    firsts = render_references(folder, population, identities, seed)
    if count == 1:
        return firsts
    people = []
    for k, (person, first) in enumerate(zip(population_seeds(population, identities), firsts)):
        person_folder = folder / f"{population}-{k:03d}-x{count}"
        person_folder.mkdir(parents=True, exist_ok=True)
        photos = [person_folder / f"{r}.png" for r in range(count)]
        if not photos[0].exists():
            shutil.copyfile(first, photos[0])
        for r, photo in enumerate(photos[1:], start=1):
            if not photo.exists():
                save_image(render_sample(person, seed + k + 100_003 * r).image, photo)
        people.append(Reference(tuple(str(p) for p in photos), str(person_folder)))
    return people


def unseen_embeddings(population: str, identities: int, seed: int, renders: int = 4) -> list:
    """Per person, the mean unit embedding of ``renders`` renders no row is made from."""
    import numpy as np

    from faceid_cli.evaluate.metrics import reference_embedding
    from faceid_cli.faces import load_analyzer
    from faceid_cli.world.people import population_seeds
    from faceid_cli.world.render import render_sample

    analyzer = load_analyzer("world")
    centres = []
    for k, person in enumerate(population_seeds(population, identities)):
        units = [reference_embedding(analyzer, render_sample(person, seed + 500_009 + 1000 * k + r).image)
                 for r in range(renders)]
        centre = np.mean([u / np.linalg.norm(u) for u in units], axis=0)
        centres.append(centre / np.linalg.norm(centre))
    return centres


def add_unseen_similarity(rows: list[dict], images: Path, centre_of: dict) -> None:
    """``unseen_similarity`` of each evaluation row: its image against its person's unseen renders."""
    from faceid_cli.evaluate.metrics import face_similarity
    from faceid_cli.faces import load_analyzer
    from faceid_cli.images import load_image

    analyzer = load_analyzer("world")
    for row in rows:
        row["unseen_similarity"] = face_similarity(analyzer, load_image(images / row["file"]), centre_of[row["face"]])


def ceiling_rows(people: list[int], references: list[Path], prompts: list[str], seed: int,
                 centres: list | None = None) -> list[dict]:
    """A real render of each person in each prompt's context, scored as a generation would be."""
    from faceid_cli.evaluate.metrics import face_similarity, reference_embedding
    from faceid_cli.evaluate.world_check import context_rows
    from faceid_cli.faces import load_analyzer
    from faceid_cli.images import load_image
    from faceid_cli.world.contexts import Context, parse_prompt
    from faceid_cli.world.render import render_sample

    analyzer = load_analyzer("world")
    rows, images, texts, refs = [], [], [], []
    for k, (person, reference_path) in enumerate(zip(people, references)):
        reference = load_image(reference_path)
        embedding = reference_embedding(analyzer, reference)
        for j, prompt in enumerate(prompts):
            image = render_sample(person, seed + 1000 + j, context=Context(**parse_prompt(prompt))).image
            rows.append({"face_similarity": face_similarity(analyzer, image, embedding),
                         "unseen_similarity": face_similarity(analyzer, image, centres[k]) if centres else None})
            images.append(image)
            texts.append(prompt)
            refs.append(reference)
    for row, figures in zip(rows, context_rows(images, texts, refs)):
        row.update(figures)
    return rows


def summary_line(label: str, rows: list[dict]) -> dict:
    from faceid_cli.evaluate.metrics import bootstrap_mean

    found = [r["face_similarity"] for r in rows if r["face_similarity"] is not None]
    line = {"variant": label, "images": len(rows), "no_face_rate": 1 - len(found) / max(1, len(rows))}
    for name, values in (("face_similarity", found), ("unseen_similarity", [r.get("unseen_similarity") for r in rows]),
                         ("text_alignment", [r.get("text_alignment") for r in rows]),
                         ("context", [r.get("context") for r in rows]),
                         ("context_copied", [r.get("context_copied") for r in rows])):
        mean, low, high = bootstrap_mean([v for v in values if v is not None])
        line[name] = {"mean": mean, "low": low, "high": high}
    return line


def main() -> None:
    from faceid_cli.evaluate.prompts import load_prompts
    from faceid_cli.evaluate.run import Reference, Variant, encoder_type_of, run_evaluation
    from faceid_cli.world.celebrities import celebrities
    from faceid_cli.world.people import population_seeds

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", action="append", default=[], help="encoder checkpoint(s) (repeatable)")
    parser.add_argument("--identities", type=int, default=24, help="held-out people (and celebrities)")
    parser.add_argument("--prompts", default="world")
    parser.add_argument("--num-images", type=int, default=1)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--identity-start", type=float, action="append", default=[],
                        help="share of the steps drawn before the identity enters (repeatable: a row each)")
    parser.add_argument("--references", type=int, action="append", default=[],
                        help="renders per held-out person, fused into one identity (repeatable: a row each)")
    parser.add_argument("--out", type=Path, default=None, help="keep the images and reports here")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    missing = [e for e in args.encoder if not (Path(e) / "config.json").is_file()]
    if missing:  # before minutes of reference rows, not after them
        parser.error(f"--encoder {missing[0]}: no encoder checkpoint there (config.json)")
    out = args.out or Path(tempfile.mkdtemp(prefix="faceid-world-encoder-"))
    prompts = load_prompts(args.prompts)
    started = time.perf_counter()
    common = dict(model="world", num_images=args.num_images, seed=args.seed, steps=args.steps, guidance=args.guidance,
                  batch_size=16, device="cpu")
    lines = []

    people = population_seeds("held_out", args.identities)
    held_out = render_references(out / "references", "held_out", args.identities, args.seed)
    unseen = unseen_embeddings("held_out", args.identities, args.seed)
    lines.append(summary_line("ceiling", ceiling_rows(people, held_out, prompts, args.seed, unseen)))
    # the T2I by name: one evaluation per celebrity, its name written into the prompts
    named = celebrities(args.identities)
    stars = render_references(out / "references", "celebrities", args.identities, args.seed)
    star_unseen = unseen_embeddings("celebrities", args.identities, args.seed)
    rows = []
    for (_, name), reference, centre in zip(named, stars, star_unseen):
        result = run_evaluation(out / "by-name" / reference.stem, [reference], [p.replace("S*", name) for p in prompts],
                                [Variant("by name", "none")], **common)
        add_unseen_similarity(result.rows, out / "by-name" / reference.stem / "images", {str(reference): centre})
        rows += result.rows
    lines.append(summary_line("by name", rows))

    def method(encoder: str) -> str:  # the method of the checkpoint's kind (m2, clip-image)
        return encoder_type_of(encoder) or "m2"

    def label(encoder: str) -> str:  # a run's folder names a checkpoint ("runs/k3/encoder" -> m2@k3)
        path = Path(encoder)
        return f"{method(encoder)}@" + (path.parent.name if path.name == "encoder" else path.name)

    starts = args.identity_start or [0.0]
    counts = list(dict.fromkeys(args.references or [1]))

    def variant_label(encoder: str, start: float, count: int) -> str:
        base = label(encoder) if len(args.encoder) > 1 else method(encoder)
        return (base + (f"@start{start:g}" if len(starts) > 1 else "")
                + (f"@refs{count}" if len(counts) > 1 else ""))

    for n, count in enumerate(counts):
        faces = fused_references(out / "references", "held_out", args.identities, args.seed, count)
        variants = [Variant("none", "none")] * (n == 0) + [
            Variant(variant_label(e, start, count), method(e), e, start) for e in args.encoder for start in starts]
        folder = out / ("held-out" if count == 1 else f"held-out-x{count}")
        result = run_evaluation(folder, faces, prompts, variants, **common)
        add_unseen_similarity(result.rows, folder / "images",
                              {Reference.of(face).name: centre for face, centre in zip(faces, unseen)})
        for variant in variants:
            lines.append(summary_line(variant.label, [r for r in result.rows if r["variant"] == variant.label]))

    def cell(figure):
        return "-" if figure["mean"] != figure["mean"] else f"{figure['mean']:.3f} [{figure['low']:.3f}, {figure['high']:.3f}]"

    print(f"world, {args.identities} people x {len(prompts)} prompts x {args.num_images} images, {args.steps} steps, "
          f"guidance {args.guidance} ({time.perf_counter() - started:.0f} s); images in {out}")
    print(f"{'':<22} {'face similarity':<24} {'unseen renders':<24} {'no face':<8} {'text alignment':<24} "
          f"{'context shown':<24} {'reference copied':<24}")
    for line in lines:
        print(f"{line['variant']:<22} {cell(line['face_similarity']):<24} {cell(line['unseen_similarity']):<24} "
              f"{line['no_face_rate']:<8.3f} {cell(line['text_alignment']):<24} {cell(line['context']):<24} "
              f"{cell(line['context_copied']):<24}")
    by_name, by_name_unseen = (lines[1][key]["mean"] for key in ("face_similarity", "unseen_similarity"))
    for line in lines[3:]:
        print(f"{line['variant']}: {line['face_similarity']['mean'] / by_name:.2f} of the T2I's own by-name similarity "
              f"(target >= 0.90; {line['unseen_similarity']['mean'] / by_name_unseen:.2f} against unseen renders); "
              f"context shown {line['context']['mean']:.3f} (target >= 0.80)")
    if args.json:
        Path(args.json).write_text(json.dumps(lines, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
