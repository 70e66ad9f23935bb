"""``faceid selfaug build``: DreamIdentity §3.3 and Appendix A as a resumable, shardable pipeline.

1. Names: one celebrity name a line (``world``: the miniature world's own celebrities).
2. Source faces: ``"<name> face, looking at the camera"`` is generated (``sources`` candidates a
   name); the first whose largest face is large enough (short side of the box above
   ``min_face``) becomes the name's identity face. Every rejection is recorded with its reason.
3. Edits: every edit prompt is generated ``per_prompt`` times with the name; the editing prompt is
   stored with ``S*`` in the name's place.
4. Scores: each edited image gets an ID loss (1 - cosine of identity embeddings against the source
   face; no face: the worst) and a CLIP score (image-text cosine, the name replaced by a neutral
   word). Ranking (:mod:`.rank`) happens in ``merge``, after every shard is done, so the kept set
   cannot depend on the sharding.

Generation goes through ``batch``'s runner (its render grouping, manifest and resume): steps 2 and
3 are batch runs into ``OUT/sources`` and ``OUT/edits``. Scores are appended, one JSON line per
image, to ``OUT/scores.shard-I-of-N.jsonl`` as each is computed; a killed run re-run skips every
image already scored and every image already on disk. Names are split between shards by their
position (name k goes to shard k mod N), and each image's seed depends on the name's position, the
prompt and the image's index alone.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidArgumentError

SOURCE_PROMPT = "<name> face, looking at the camera"
#: step 2's prompt in the miniature world's own grammar (its tokenizer knows no "face" or "camera")
WORLD_SOURCE_PROMPT = "a photo of <name>"
#: the appendix's nine edit prompts (Fig. 7), with the name's place marked
APPENDIX_PROMPTS = (
    "Oil painting style, <name> face", "Watercolor style, <name> face", "Pencil art style, <name> face",
    "Fauvism painting, <name> face", "<name> as a wizard, looking at the camera",
    "<name> wearing a hat, looking at the camera", "<name> as a chef, looking at the camera",
    "<name> as a nurse, looking at the camera", "<name> as a police, looking at the camera",
)
NAME = "<name>"
#: the paper keeps faces whose short side exceeds 128 px at 512 px; smaller models scale it
PAPER_MIN_FACE, PAPER_SIZE = 128, 512


def world_edit_prompts(count: int = 9, seed: int = 11) -> tuple[str, ...]:
    """Edit prompts for the miniature world: its context captions with the name's place marked."""
    from ..evaluate.prompts import world_prompts

    return tuple(p.replace("S*", NAME) for p in world_prompts(count, seed))


def read_names(spec: str) -> list[str]:
    """``world`` (the world's celebrities), or a file with one name a line (# comments skipped)."""
    if spec == "world":
        from ..world.celebrities import NUM_CELEBRITIES
        from ..world.people import celebrity_names

        return celebrity_names(NUM_CELEBRITIES)
    path = Path(spec)
    if not path.is_file():
        raise InvalidArgumentError(f"names file '{spec}' not found", "give a file with one name a line, or 'world'")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    if not names:
        raise InvalidArgumentError(f"names file '{path}' has no name", "write one name a line")
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"names file '{path}' repeats a name", "each name once")
    return names


def read_edit_prompts(spec: str | None) -> list[str]:
    """The appendix's nine (default), ``world``, or a file of prompts each with ``<name>``."""
    if spec in (None, "appendix"):
        return list(APPENDIX_PROMPTS)
    if spec == "world":
        return list(world_edit_prompts())
    path = Path(spec)
    if not path.is_file():
        raise InvalidArgumentError(f"edit prompts '{spec}' not found", "give a file, 'appendix' or 'world'")
    prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
               if line.strip() and not line.lstrip().startswith("#")]
    missing = [p for p in prompts if NAME not in p]
    if not prompts:
        raise InvalidArgumentError(f"edit prompts file '{path}' has no prompt",
                                   f"write one a line, like '{APPENDIX_PROMPTS[6]}'")
    if missing:
        raise InvalidArgumentError(f"every edit prompt in '{path}' needs {NAME}: '{missing[0]}'",
                                   f"write prompts like '{APPENDIX_PROMPTS[6]}'")
    return prompts


def read_source_prompt(spec: str | None, names: str) -> str:
    """Step 2's prompt: given (it must hold ``<name>``), else the paper's, or the world's own
    wording when the names are the world's."""
    if spec is None:
        return WORLD_SOURCE_PROMPT if names == "world" else SOURCE_PROMPT
    if NAME not in spec:
        raise InvalidArgumentError(f"--source-prompt '{spec}' has no {NAME}", f"write it like '{SOURCE_PROMPT}'")
    return spec


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


@dataclass
class BuildSettings:
    model: str
    names: list[str]
    prompts: list[str]
    per_prompt: int = 4
    sources: int = 2
    keep: float = 0.25
    min_face: float | None = None  # None: 128 px scaled by the model's size / 512
    seed: int = 0
    batch_size: int = 4
    steps: int = 30
    guidance: float = 7.5
    clip: str | None = None
    neutral: str = "a person"
    backend: str = "auto"
    device: str = "auto"
    dtype: str = "auto"
    rule: str = "rank-sum"
    source_prompt: str = SOURCE_PROMPT
    allow_download: bool = False
    extra: dict = field(default_factory=dict)

    def record(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("names", "extra", "allow_download")}

    def check_inputs(self) -> None:
        """Fail now, not after hours of generation, when the model or the CLIP scorer is missing."""
        from ..evaluate.clip_scorer import check_clip_available
        from ..evaluate.run import default_clip
        from ..models.registry import check_model_available, resolve_model

        check_model_available(resolve_model(self.model), self.allow_download)
        check_clip_available(self.clip or default_clip(self.model), self.allow_download)


def source_seed(seed: int, name_index: int, candidate: int) -> int:
    return seed + name_index * 1000 + candidate


def edit_seed(seed: int, name_index: int, prompt_index: int, image: int, per_prompt: int) -> int:
    return seed + 10_000_000 + name_index * 10_000 + prompt_index * per_prompt + image


def shard_suffix(shard: tuple[int, int]) -> str:
    return "" if shard[1] == 1 else f".shard-{shard[0]}-of-{shard[1]}"


def build(out: Path, settings: BuildSettings, shard: tuple[int, int] = (0, 1), on_step=None, on_note=None) -> dict:
    """Steps 2-4 for this shard's names; returns counts. ``merge`` ranks and writes the dataset."""
    from ..batch import BatchRunner, Manifest, manifest_name, plan, prepare_resume
    from ..faces import load_analyzer
    from ..faces.analyzer import AnalyzerOptions
    from ..images import load_image
    from ..jobs import Job
    from ..locks import hold_output_lock
    from ..names import GENERATION_DEFAULTS
    from ..pipeline_faceid import FaceIDPipeline

    settings.check_inputs()
    note = on_note or (lambda message: None)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index, count = shard
    mine = [(k, name) for k, name in enumerate(settings.names) if k % count == index]
    options = AnalyzerOptions(model=settings.model)
    pipelines: dict = {}

    def load_pipeline(**kwargs):
        key = kwargs["model"]
        if key not in pipelines:
            pipelines[key] = FaceIDPipeline.from_model(kwargs["model"], method="none", device=settings.device,
                                                       dtype=settings.dtype, face_backend=settings.backend,
                                                       analyzer_options=options,
                                                       allow_download=settings.allow_download)
        return pipelines[key]

    defaults = {**GENERATION_DEFAULTS, "model": settings.model, "method": "none", "encoder": None, "height": None,
                "width": None, "steps": settings.steps, "guidance": settings.guidance}

    failed: dict[str, str] = {}  # job -> error: generation that failed (a re-run tries it again)

    def run(folder: Path, jobs: list) -> dict[str, dict]:
        folder.mkdir(parents=True, exist_ok=True)
        planned, items = plan(jobs)
        manifest_path = folder / manifest_name(shard)
        with hold_output_lock(manifest_path, hint="another 'faceid selfaug build' writes this folder; give "
                                                  "each process its own --shard"):
            manifest = Manifest(manifest_path)
            pending, _ = prepare_resume(folder, items, manifest)
            runner = BatchRunner(folder, manifest, defaults=defaults, batch_size=settings.batch_size,
                                 load_pipeline=load_pipeline, on_step=on_step)
            failed.update(runner.run(planned, pending).failed_jobs)
            return {r["files"][0]: r for r in manifest.records if r.get("status") == "ok"}

    # step 2: source faces
    source_jobs = []
    for k, name in mine:
        prompt = settings.source_prompt.replace(NAME, name)
        source_jobs.append(Job(index=k, line=0, name=f"{_slug(name)}-{k}", prompts=(prompt,),
                               settings={"num_images": settings.sources, "seed": source_seed(settings.seed, k, 0)}))
    note(f"step 2: {len(mine)} names x {settings.sources} source candidates")
    sources_done = run(out / "sources", source_jobs)
    analyzer = load_analyzer(settings.backend, options)
    accepted: dict[int, dict] = {}
    rejections: dict[str, int] = {}
    source_log = []
    for k, name in mine:
        chosen = None
        for candidate in range(settings.sources):
            file = f"{_slug(name)}-{k}-{source_seed(settings.seed, k, 0) + candidate}.png"
            if file not in sources_done:
                reason = "not generated"
            else:
                image = load_image(out / "sources" / file)
                faces = analyzer.detect(image)
                if not faces:
                    reason = "no face found"
                else:
                    x1, y1, x2, y2 = faces[0].bbox
                    short = min(x2 - x1, y2 - y1)
                    # the paper's 128 px at 512 px, scaled to the picture the model made
                    min_face = (settings.min_face if settings.min_face is not None
                                else PAPER_MIN_FACE * min(image.size) / PAPER_SIZE)
                    reason = None if short > min_face else f"face too small (short side {short:.0f} <= {min_face:.0f} px)"
                    if reason is None:
                        chosen = {"file": f"sources/{file}", "embedding": analyzer.embed(image, faces[0])}
            source_log.append({"name": name, "file": f"sources/{file}", "accepted": reason is None, "reason": reason})
            if reason:
                key = reason.split(" (")[0]
                rejections[key] = rejections.get(key, 0) + 1
            if chosen:
                break
        if chosen:
            accepted[k] = chosen
    note(f"step 2: {len(accepted)} of {len(mine)} names have a source face")

    # step 3: edits
    edit_jobs, meaning = [], {}
    for k, name in mine:
        if k not in accepted:
            continue
        for p, template in enumerate(settings.prompts):
            job_name = f"{_slug(name)}-{k}/p{p:02d}"
            first = edit_seed(settings.seed, k, p, 0, settings.per_prompt)
            edit_jobs.append(Job(index=len(edit_jobs), line=0, name=job_name, prompts=(template.replace(NAME, name),),
                                 settings={"num_images": settings.per_prompt, "seed": first}))
            meaning[job_name] = {"name": name, "name_index": k, "prompt": template.replace(NAME, "S*"),
                                 "template_index": p}
    note(f"step 3: {len(edit_jobs)} edit prompts x {settings.per_prompt} images")
    edits_done = run(out / "edits", edit_jobs)

    # step 4: scores
    from ..evaluate.clip_scorer import ClipScorer
    from ..evaluate.metrics import face_similarity
    from ..evaluate.run import default_clip
    from .rank import NO_FACE_ID_LOSS

    scores_path = out / f"scores{shard_suffix(shard)}.jsonl"
    done = set()
    if scores_path.is_file():
        for line in scores_path.read_text(encoding="utf-8").splitlines():
            try:
                done.add(json.loads(line)["image"])
            except (json.JSONDecodeError, KeyError):
                continue  # a line cut off by a kill: scored again
    todo = [(file, record) for file, record in sorted(edits_done.items()) if f"edits/{file}" not in done]
    scorer = ClipScorer.from_pretrained(settings.clip or default_clip(settings.model),
                                        allow_download=settings.allow_download) if todo else None
    if scores_path.is_file() and scores_path.stat().st_size and not scores_path.read_bytes().endswith(b"\n"):
        with open(scores_path, "a", encoding="utf-8") as handle:
            handle.write("\n")  # end the line a kill cut off, so the next record starts on its own
    with open(scores_path, "a", encoding="utf-8") as handle:
        for start in range(0, len(todo), 32):
            chunk = todo[start:start + 32]
            images = [load_image(out / "edits" / file) for file, _ in chunk]
            infos = [meaning[record["job"]] for _, record in chunk]
            texts = [info["prompt"].replace("S*", settings.neutral) for info in infos]
            clip_scores = scorer.score(images, texts)
            for (file, record), image, info, clip_score in zip(chunk, images, infos, clip_scores):
                similarity = face_similarity(analyzer, image, accepted[info["name_index"]]["embedding"])
                line = {"image": f"edits/{file}", "face": accepted[info["name_index"]]["file"], "name": info["name"],
                        "prompt": info["prompt"], "template_index": info["template_index"], "seed": record["seed"],
                        "id_loss": NO_FACE_ID_LOSS if similarity is None else 1.0 - similarity,
                        "face_found": similarity is not None, "clip_score": float(clip_score),
                        "model": settings.model}
                handle.write(json.dumps(line, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    log_path = out / f"sources{shard_suffix(shard)}.jsonl"
    log_path.write_text("".join(json.dumps(r) + "\n" for r in source_log), encoding="utf-8")
    (out / f"settings{shard_suffix(shard)}.json").write_text(json.dumps(settings.record(), indent=2) + "\n",
                                                             encoding="utf-8")
    return {"names": len(mine), "sources_accepted": len(accepted), "source_rejections": rejections,
            "edited_images": len(edits_done), "scored_now": len(todo), "failed_jobs": failed}


def merge(out: Path, keep: float | None = None, rule: str | None = None) -> dict:
    """Join every shard's scores, rank within each prompt, and write ``manifest.jsonl`` (the kept
    triplets, what ``faceid train`` reads), ``summary.json`` and the contact sheet."""
    from ..images import atomic_output
    from .rank import RULE_TEXT, select

    out = Path(out)
    settings_files = sorted(out.glob("settings*.json"))
    if not settings_files:
        raise InvalidArgumentError(f"'{out}' holds no selfaug build", "run 'faceid selfaug build' first")
    settings = json.loads(settings_files[0].read_text(encoding="utf-8"))
    keep = settings["keep"] if keep is None else keep
    rule = settings["rule"] if rule is None else rule
    candidates, seen = [], set()
    for path in sorted(out.glob("scores*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record["image"] not in seen:  # a resumed shard may have scored an image twice
                seen.add(record["image"])
                candidates.append(record)
    kept, rejected = select(candidates, keep, rule)
    with atomic_output(out / "manifest.jsonl") as tmp:
        tmp.write_text("".join(json.dumps({**k, "rule": rule}, sort_keys=True) + "\n" for k in kept), encoding="utf-8")
    sources = []
    for path in sorted(out.glob("sources*.jsonl")):
        sources += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    per_prompt = {}
    for prompt in sorted({c["prompt"] for c in candidates}):
        mine = [c for c in candidates if c["prompt"] == prompt]
        kept_here = [c for c in kept if c["prompt"] == prompt]
        per_prompt[prompt] = {"candidates": len(mine), "kept": len(kept_here), "keep_rate": len(kept_here) / len(mine),
                              "no_face": sum(not c["face_found"] for c in mine),
                              "id_loss_kept": _mean([c["id_loss"] for c in kept_here]),
                              "id_loss_rejected": _mean([c["id_loss"] for c in mine if c not in kept_here]),
                              "clip_kept": _mean([c["clip_score"] for c in kept_here]),
                              "clip_rejected": _mean([c["clip_score"] for c in mine if c not in kept_here])}
    rejection_reasons: dict[str, int] = {}
    for source in sources:
        if source["reason"]:
            key = source["reason"].split(" (")[0]
            rejection_reasons[key] = rejection_reasons.get(key, 0) + 1
    summary = {"settings": settings, "rule": rule, "rule_text": RULE_TEXT[rule], "keep": keep,
               "names": len({s["name"] for s in sources}),
               "names_with_source": len({s["name"] for s in sources if s["accepted"]}),
               "source_rejections": rejection_reasons, "edited": len(candidates), "kept": len(kept),
               "per_prompt": per_prompt}
    with atomic_output(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    _sheet(out, kept, rejected)
    return summary


def _mean(values):
    return sum(values) / len(values) if values else None


def with_source_inset(edit, source, fraction: float = 1 / 3):
    """``edit`` with ``source`` shrunk into its top-left corner (framed in white), so an edit and
    the face its ID loss was measured against are seen together."""
    from PIL import Image, ImageOps

    edit = edit.convert("RGB")
    side = max(4, round(min(edit.size) * fraction))
    thumb = ImageOps.expand(source.convert("RGB").resize((side - 2, side - 2), Image.Resampling.LANCZOS),
                            border=1, fill="white")
    edit.paste(thumb, (0, 0))
    return edit


def _sheet(out: Path, kept: list[dict], rejected: list[dict], per_prompt: int = 4) -> Path:
    """One row per prompt: its best kept images, then its worst rejected ones, scores under each;
    every edit carries its own source face in its corner (the one its ID loss compares it with)."""
    from ..contact_sheet import contact_sheet
    from ..images import load_image, save_image

    rows, captions = [], []
    for prompt in sorted({c["prompt"] for c in kept + rejected}):
        good = sorted((c for c in kept if c["prompt"] == prompt), key=lambda c: c["rank"])[:per_prompt]
        bad = sorted((c for c in rejected if c["prompt"] == prompt), key=lambda c: -c["rank"])[:per_prompt]
        cells = [load_image(out / good[0]["face"]) if good else None]
        texts = [prompt]
        for label, group in (("KEPT", good), ("rejected", bad)):
            for c in group:
                cells.append(with_source_inset(load_image(out / c["image"]), load_image(out / c["face"])))
                texts.append(f"{label} {c['name']}\nid loss {c['id_loss']:.2f} clip {c['clip_score']:.3f}")
        rows.append(cells)
        captions.append(texts)
    sheet = contact_sheet(rows, captions, cell=128, caption_lines=3,
                          title="faceid selfaug: a source face, the kept edits, then the rejected ones "
                                "(each with its own source face in its corner)")
    return save_image(sheet, out / "contact-sheet.png")
