"""``faceid world build``: every model of the world, re-trained from seeds, in dependency order.

The recipe (:data:`RECIPE`) is the one home of every number: populations, step counts, widths,
seeds. A build writes each model into its folder of the weights directory, then measures the
world (:mod:`.quality`) and writes ``summary.json`` beside them (with the recipe), so what ships
says how it was made and how good it is. Training is counted in steps, never seconds: the same
recipe on the same machine gives the same weights.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Sequence
from pathlib import Path

from . import BUILD_STEPS, COMPONENTS, SUMMARY_NAME
from .celebrities import NUM_CELEBRITIES, celebrities, training_jobs
from .data import concatenate_pools
from .recipes.common import Reporter, WorldData

#: every number of the world's build; ``quick`` scales the step counts down for smoke runs
RECIPE: dict = {
    "seed": 20261125,
    "celebrities": NUM_CELEBRITIES,
    "celebrity_images": 400,
    # people the world T2I sees without names (recipes/t2i.py, "crowd" there); off: measured with
    # 1000 people x 13 renders (the rest of this recipe), the T2I drew named celebrities worse
    # (top-1 0.600 against 0.675, by-name similarity 0.479 against 0.505), the inversion bound on
    # unseen people fell (0.388 against 0.427), and the encoder trained on it kept 0.333 (0.316
    # without, within the seed spread); the T2I step took 2992 s against 2198 s
    "crowd": 0,
    "crowd_images": 13,
    "recogniser": {},
    "detector": {},
    # step counts below the recipes' defaults keep the whole build within 90 minutes on 2 cores
    "classifier": {},
    "face-vit": {"steps": 600},
    "vae": {},
    "clip": {},
    # SD's CLIP-L and SDXL's bigG in miniature: the second tower is wider, and SDXL-only
    "text_towers": {"towers": [
        {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 3, "num_attention_heads": 4,
         "projection_dim": 128},
        {"hidden_size": 192, "intermediate_size": 768, "num_hidden_layers": 2, "num_attention_heads": 4,
         "projection_dim": 192},
    ]},
    # face loss weight 4 (the T2I recipe's default is 2): the named celebrity at 0.720 top-1 and
    # glasses shown at 0.925 against 0.675 and 0.870 with 2 (at 3000 steps: 0.420 and 0.775 against
    # 0.350 and 0.685); the same arithmetic, so the same time a step
    "world": {"steps": 6000, "face_loss_weight": 4.0},
    # world-xl starts from world's UNet (warm_start) and fine-tunes to its two towers
    "world-xl": {"steps": 400, "warm_start": True},
    # faceid train on world (recipes/encoder.py holds the config configs/world.toml repeats)
    "m2-encoder": {},
}
#: build order; each step names the components it writes
STEPS = BUILD_STEPS
#: what a plain build makes: everything that ships (world-xl only on request, see ``world.SHIPPED``)
DEFAULT_STEPS = tuple(step for step in STEPS if step != "world-xl")


def quick_recipe(recipe: dict, factor: float = 0.002, population: int = 24) -> dict:
    """A recipe for smoke tests: the same code paths, a tiny fraction of the work."""
    quick = copy.deepcopy(recipe)
    quick["celebrities"] = min(quick["celebrities"], 8)
    quick["celebrity_images"] = 6
    quick["crowd"], quick["crowd_images"] = 8, 2  # the crowd's code path, even where the recipe has none
    from .recipes import backbone, classifier, clip, detector, encoder, recogniser, t2i, vae

    defaults = {"recogniser": recogniser.DEFAULTS, "detector": detector.DEFAULTS, "classifier": classifier.DEFAULTS,
                "face-vit": backbone.DEFAULTS, "vae": vae.DEFAULTS, "clip": clip.SCORER_DEFAULTS,
                "text_towers": clip.TOWERS_DEFAULTS, "world": t2i.DEFAULTS, "world-xl": t2i.DEFAULTS,
                "m2-encoder": encoder.DEFAULTS}
    for name, base in defaults.items():
        section = quick[name]
        merged = {**base, **section}
        section["steps"] = max(3, int(merged["steps"] * factor))
        section["batch_size"] = min(merged["batch_size"], 16)
        if "identities" in merged:
            section["identities"], section["per_identity"] = population, 2
        if name == "detector":
            section["negatives"] = 16
    return quick


def build(out: Path, recipe: dict | None = None, only: Sequence[str] | None = None, work_dir: Path | None = None,
          report: Reporter | None = None, measure: bool = True) -> dict:
    """Train the world's models into ``out`` and return the summary (also written there).

    ``work_dir`` keeps the rendered pools and the parts that ship only inside the pipelines (VAE,
    text encoders), so a later ``only=...`` build can reuse them.
    """
    from .recipes import backbone, classifier, clip, detector, encoder, recogniser, t2i, vae

    recipe = copy.deepcopy(recipe or RECIPE)
    report = report or Reporter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seed = int(recipe["seed"])
    work_dir = Path(work_dir) if work_dir else out / ".build"
    parts = work_dir / "parts"
    data = WorldData(work_dir / "pools", report, seed=seed)
    steps = [s for s in STEPS if (s in only if only else s in DEFAULT_STEPS)]
    summary = {"recipe": recipe, "components": {}, "seconds": {}}
    tokenizer = _vocabulary(out, steps, recipe)

    def run(name: str, function, *args):
        started = time.perf_counter()
        report.log(f"building {name}")
        metrics = function(*args)
        summary["components"][name] = metrics
        summary["seconds"][name] = round(time.perf_counter() - started, 1)

    def folder(name: str) -> Path:
        return out / COMPONENTS[name]

    for offset, step in enumerate(steps):
        step_seed = seed + 1000 * STEPS.index(step)
        if step == "recogniser":
            run(step, recogniser.train, data, folder("recogniser"), recipe["recogniser"], step_seed, report)
        elif step == "detector":
            run(step, detector.train, data, folder("detector"), recipe["detector"], step_seed, report)
        elif step == "classifier":
            run(step, classifier.train, data, folder("classifier"), recipe["classifier"], step_seed, report)
        elif step == "face-vit":
            run(step, backbone.train, data, folder("face-vit"), recipe["face-vit"], step_seed, report)
        elif step == "vae":
            run(step, vae.train, data, parts / "vae", recipe["vae"], step_seed, report)
        elif step == "clip":
            run(step, clip.train_scorer, data, folder("clip"), recipe["clip"], step_seed, report, tokenizer)
        elif step == "text_towers":
            celebrity_pool = _celebrity_pool(data, recipe)
            people = data.population_pool("recogniser", **_people(recipe))
            names = {seed_: name for seed_, name in celebrities(recipe["celebrities"])}
            folders = [parts / "text_encoder", parts / "text_encoder_2"][: len(recipe["text_towers"]["towers"])]
            run(step, clip.train_text_towers, celebrity_pool, people, names, folders, recipe["text_towers"],
                step_seed, report, tokenizer)
            # the towers' token ids are this tokenizer's: the text-to-image step reads it from here
            tokenizer.save_pretrained(parts / "tokenizer")
        elif step in ("world", "world-xl"):
            run(step, _train_t2i, data, out, parts, recipe, step, step_seed, report)
        elif step == "m2-encoder":
            run(step, encoder.train, out, work_dir, recipe["m2-encoder"], step_seed, report)
    if measure:
        _measure_into(summary, out, recipe, report)
    previous = out / SUMMARY_NAME
    if only and previous.is_file():  # a partial build keeps what the others measured
        old = json.loads(previous.read_text(encoding="utf-8"))
        for key in ("components", "seconds"):
            summary[key] = {**old.get(key, {}), **summary[key]}
        if "quality" not in summary and "quality" in old:  # not measured this time: keep the last figures
            summary["quality"] = old["quality"]
            if "measure_seconds" in old:
                summary["measure_seconds"] = old["measure_seconds"]
    from ..images import atomic_output

    with atomic_output(out / SUMMARY_NAME) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return summary


def _vocabulary(out: Path, steps: list[str], recipe: dict):
    """The tokenizer new text towers and scorers are trained with. A build that extends a built
    world without re-training it (``--only text_towers --only world-xl``) takes that world's own
    vocabulary: world-xl's first tower is world's and its second is trained now, and both read
    one tokenizer, so the new tower must learn the ids the world's tower knows. (A vocabulary made
    by another trainer or version assigns other ids: the shipped world's has 943 tokens, the
    current trainer's 944.) A build that trains the world makes the vocabulary from the recipe."""
    from transformers import CLIPTokenizer

    from .tokenizer import build_tokenizer

    built = out / COMPONENTS["world"] / "tokenizer"
    if "world" not in steps and built.is_dir():
        return CLIPTokenizer.from_pretrained(built)
    return build_tokenizer(recipe["celebrities"])


def _people(recipe: dict) -> dict:
    from .recipes.recogniser import DEFAULTS

    section = {**DEFAULTS, **recipe["recogniser"]}
    return {"identities": section["identities"], "per_identity": section["per_identity"]}


def _celebrity_pool(data: WorldData, recipe: dict):
    count, per = recipe["celebrities"], recipe["celebrity_images"]
    key = {"name": "celebrities", "count": count, "per": per, "seed": recipe["seed"]}
    return data.jobs_pool(key, training_jobs(count, per, int(recipe["seed"])))


def _crowd_pool(data: WorldData, recipe: dict):
    count, per = recipe.get("crowd", 0), recipe.get("crowd_images", 0)
    if not count or not per:
        return None
    return data.population_pool("crowd", count, per)  # random contexts, as every other population


def _train_t2i(data: WorldData, out: Path, parts: Path, recipe: dict, step: str, seed: int, report: Reporter) -> dict:
    import torch
    from diffusers import AutoencoderTiny
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from ..errors import MissingModelError
    from .recipes import t2i

    pool = _celebrity_pool(data, recipe)
    # world-xl fine-tunes world's UNet to a second tower on the named people alone: the unnamed
    # crowd's words were learnt for world's first tower and are gone with its training
    crowd = _crowd_pool(data, recipe) if step == "world" else None
    if crowd is not None:
        pool = concatenate_pools([pool, crowd])
    # world-xl's first tower is the one world fine-tuned (its UNet starts from world's too); the
    # tokenizer comes with the tower, so that every token id means what it meant in training
    source = out / COMPONENTS["world"] if step == "world-xl" else parts
    first, vocabulary = source / "text_encoder", source / "tokenizer"
    if not vocabulary.is_dir():
        raise MissingModelError(f"no tokenizer beside the text encoder in '{source}'",
                                "re-run the build with --only text_towers (and --only world for world-xl)")
    tokenizer = CLIPTokenizer.from_pretrained(vocabulary)
    modules = [AutoencoderTiny.from_pretrained(parts / "vae"), CLIPTextModel.from_pretrained(first)]
    if step == "world-xl":
        modules.append(CLIPTextModelWithProjection.from_pretrained(parts / "text_encoder_2"))
    # parts are rounded to fp16, the precision they ship in, so training sees what generation will
    vae, *towers = [module.half().float().eval() for module in modules]
    report.task("encode latents", 1)
    latents = t2i.encode_latents(vae, pool.image_tensor())
    report.advance(1)
    names = dict(celebrities(recipe["celebrities"]))
    init_from = out / COMPONENTS["world"] / "unet" if recipe[step].get("warm_start") else None
    config = {k: v for k, v in recipe[step].items() if k != "warm_start"}
    with torch.random.fork_rng():
        return t2i.train(latents, pool.labels, pool.identities, names, vae, towers, tokenizer, out / COMPONENTS[step],
                         config, seed, report, init_from=init_from, face_boxes=pool.bboxes)


def _measure_into(summary: dict, out: Path, recipe: dict, report: Reporter | None, sizes: dict | None = None) -> None:
    """Measure the world in ``out`` into ``summary["quality"]``; at the build's own sample sizes
    also its time (``measure_seconds``): a build is training plus this, both within its budget."""
    from .quality import measure_world

    started = time.perf_counter()
    summary["quality"] = measure_world(out, recipe, report, sizes)
    if sizes is None:
        summary["measure_seconds"] = round(time.perf_counter() - started, 1)


def measure(out: Path, report: Reporter | None = None, sizes: dict | None = None) -> dict:
    """Measure the world in ``out`` (with the recipe its summary records) into its summary.json."""
    from ..errors import MissingModelError
    from ..images import atomic_output

    path = Path(out) / SUMMARY_NAME
    if not path.is_file():
        raise MissingModelError(f"no world summary at '{path}'", "run 'faceid world build' first")
    summary = json.loads(path.read_text(encoding="utf-8"))
    _measure_into(summary, Path(out), summary["recipe"], report, sizes)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return summary
