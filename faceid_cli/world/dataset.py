"""Data sets on disk: image folders with a JSON-lines ground-truth file, as ``faceid world render``
writes them and ``train`` / ``evaluate`` read them."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InvalidArgumentError
from ..names import GENERATION_DEFAULTS
from ..train.config import DEFAULTS as TRAIN_DEFAULTS
from ..train.config import METADATA_NAMES
from .contexts import ATTRIBUTES, Context, caption
from .data import RenderJob, image_seed, render_pool
from .people import celebrity_names, population_seeds

GROUND_TRUTH = "ground_truth.jsonl"
#: the editing triplets of a rendered data set (``faceid world render --pairs``)
PAIRS = "pairs.jsonl"


def parse_context(text: str) -> dict[str, str]:
    """``"hat=red,glasses=none"`` → {"hat": "red", "glasses": "none"}, every name and value checked."""
    fixed = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not sep:
            raise InvalidArgumentError(f"--context '{part}' is not ATTRIBUTE=VALUE",
                                       f"attributes: {', '.join(ATTRIBUTES)}")
        if name not in ATTRIBUTES:
            raise InvalidArgumentError(f"--context {part}: unknown attribute '{name}'",
                                       f"attributes: {', '.join(ATTRIBUTES)}")
        if value not in ATTRIBUTES[name]:
            raise InvalidArgumentError(f"--context {name}={value}: unknown {name}",
                                       f"use one of: {', '.join(ATTRIBUTES[name])}")
        fixed[name] = value
    return fixed


def write_dataset(folder: Path, population: str, identities: int, per_identity: int, *, offset: int = 0,
                  fixed: dict[str, str] | None = None, seed: int = 0) -> list[dict]:
    """Render ``per_identity`` pictures of each of ``identities`` people of ``population`` into
    ``folder/images`` and write ``folder/ground_truth.jsonl``, and ``folder/metadata.jsonl``: each
    picture's caption with ``S*`` for its person, in Hugging Face imagefolder's layout, which
    ``faceid train`` reads with ``data.captions = "metadata"``. Returns the records."""
    import numpy as np

    from ..images import atomic_output, save_image

    try:
        seeds = population_seeds(population, identities, offset)
    except ValueError as exc:
        raise InvalidArgumentError(f"--population {population}: {exc}", "see 'faceid world render --help'") from None
    names = {}
    if population == "celebrities":
        names = dict(zip(seeds, celebrity_names(offset + identities)[offset:]))
    fixed = fixed or {}
    jobs = []
    for identity in seeds:
        for k in range(per_identity):
            job_seed = image_seed(seed, identity, k)
            labels = None
            if fixed:
                rng = np.random.default_rng(np.random.SeedSequence([0x1A, job_seed]))
                labels = tuple(ATTRIBUTES[name].index(fixed[name]) if name in fixed else int(rng.integers(len(values)))
                               for name, values in ATTRIBUTES.items())
            jobs.append(RenderJob(identity, job_seed, labels))
    pool = render_pool(jobs)
    images = Path(folder) / "images"
    images.mkdir(parents=True, exist_ok=True)
    records = []
    for index, job in enumerate(jobs):
        name = f"{job.identity}-{index % per_identity}.png"
        from PIL import Image

        save_image(Image.fromarray(pool.images[index]), images / name)
        context = pool.contexts(index)
        subject = names.get(job.identity, "a person")
        records.append({
            "file": f"images/{name}", "identity": job.identity, "population": population,
            "name": names.get(job.identity), "context": context.to_dict(),
            "bbox": [round(float(v), 3) for v in pool.bboxes[index]],
            "landmarks": [[round(float(x), 3), round(float(y), 3)] for x, y in pool.landmarks[index]],
            "caption": caption(context, subject), "image_seed": job.image_seed,
        })
    with atomic_output(Path(folder) / GROUND_TRUTH) as tmp:
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records), encoding="utf-8")
    token, column = GENERATION_DEFAULTS["identity_token"], TRAIN_DEFAULTS["data"]["caption_column"]
    with atomic_output(Path(folder) / METADATA_NAMES[0]) as tmp:
        tmp.write_text("".join(json.dumps({"file_name": r["file"], column: caption(Context(**r["context"]), token)}) + "\n"
                               for r in records), encoding="utf-8")
    # pairs of an earlier render name pictures just rewritten: kept, they would train on wrong prompts
    (Path(folder) / PAIRS).unlink(missing_ok=True)
    return records


def write_pairs(folder: Path, records: list[dict]) -> int:
    """Write ``folder/pairs.jsonl``: editing triplets from the ground truth, in the manifest format
    of ``faceid selfaug`` (``face``, ``prompt``, ``image``), so ``faceid train`` reads them as
    ``data.triplets``. Every ordered pair of two pictures of one person gives a line: the first is
    the identity face, the second the target, and the prompt is the target's caption with ``S*``
    for the person. This is what self-augmentation approximates with a model's own edits (and
    what FaceCLIP trains on: several pictures of a person, each with its caption), exact here
    because the world knows who is who. Returns the number of lines."""
    from ..images import atomic_output

    token = GENERATION_DEFAULTS["identity_token"]
    by_person: dict[int, list[dict]] = {}
    for record in records:
        by_person.setdefault(record["identity"], []).append(record)
    lines = []
    for identity, pictures in by_person.items():
        for face in pictures:
            for target in pictures:
                if target is face:
                    continue
                lines.append({"face": face["file"], "image": target["file"], "identity": identity,
                              "prompt": caption(Context(**target["context"]), token),
                              "name": target.get("name"), "source": "world ground truth"})
    with atomic_output(Path(folder) / PAIRS) as tmp:
        tmp.write_text("".join(json.dumps(line, sort_keys=True) + "\n" for line in lines), encoding="utf-8")
    return len(lines)


def read_ground_truth(folder: Path) -> list[dict]:
    path = Path(folder) / GROUND_TRUTH
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


__all__ = ["GROUND_TRUTH", "PAIRS", "Context", "parse_context", "read_ground_truth", "write_dataset", "write_pairs"]
