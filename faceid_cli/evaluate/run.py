"""``faceid evaluate``: generate n images per (face, prompt) for each method or checkpoint with the
same seeds, score them, and write the reports.

Generation goes through ``batch``'s machinery (``BatchRunner``, its manifest, resume and shards):
the images land in ``OUT/images`` as ``VARIANT/FACE/pJ-SEED.png`` with their sidecars, and a killed
evaluation re-run does only what is missing. A sharded run (``--shard I/N``) generates its part
and stops; the same command without ``--shard`` then finds every image on disk, generates nothing,
and scores and reports them all (the merge step).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import InvalidArgumentError

IMAGES = "images"


@dataclass(frozen=True)
class Reference:
    """One person of the evaluation: a photo, or several photos of one person fused into one
    identity (as ``faceid encode`` fuses them). ``name`` is how the results call it: the photo's
    path, or the folder that holds the photos."""

    photos: tuple[str, ...]
    name: str

    @classmethod
    def of(cls, face: "Reference | str | Path") -> "Reference":
        return face if isinstance(face, Reference) else cls((str(face),), str(face))

    @property
    def stem(self) -> str:
        return Path(self.name).stem if len(self.photos) == 1 else Path(self.name).name


def references_from(entries: list, fuse_folders: bool = False, what: str = "--faces") -> list[Reference]:
    """The people of ``--faces``: each photo its own person. With ``fuse_folders`` a folder that
    holds photos is one person, whose photos (every image inside it, recursively) are fused, and
    a folder that holds only folders (``people/ann/``, ``people/bo/``) is a person per folder."""
    from ..images import IMAGE_SUFFIXES, expand_photos

    def person(folder: Path) -> Reference:
        photos = expand_photos([str(folder)], what=what)
        if not photos:
            raise InvalidArgumentError(f"{what} folder '{folder}' holds no photo",
                                       "put the person's photos in it (png, jpg, webp, ...)")
        return Reference(tuple(str(p) for p in photos), str(folder))

    people: dict[str, Reference] = {}
    for entry in entries:
        path = Path(entry).expanduser()
        if fuse_folders and path.is_dir():
            holds_photos = any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir())
            folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
            for folder in ([path] if holds_photos or not folders else folders):
                people.setdefault(str(folder), person(folder))
        else:
            for photo in expand_photos([str(entry)], what=what):
                people.setdefault(str(photo), Reference.of(photo))
    return list(people.values())


@dataclass(frozen=True)
class Variant:
    """One column of the comparison: a method, with an encoder checkpoint for the trained ones,
    the share of steps drawn before the identity enters, and (faceclip) the negative branch."""

    label: str
    method: str
    encoder: str | None = None
    identity_start: float = 0.0
    negative: str | None = None  # None: the method's default branch


def variants_from(methods: list[str], encoders: list[str], identity_starts: list[float] | None = None,
                  negatives: list[str] | None = None) -> list[Variant]:
    """Several ``--method`` values are compared side by side. Each ``--encoder`` checkpoint goes
    to the method of its kind (``m2`` and ``faceclip`` checkpoints in one run make one column
    each); several checkpoints of one method make a column each, labelled by the checkpoint's
    folder. Several ``identity_starts`` make a column each of every identity method
    (``m2@start0.2``); one applies to them all. So do several ``negatives`` for the methods that
    build those negative branches (``faceclip@text-negative``)."""
    from ..methods import get_method

    starts = list(dict.fromkeys(identity_starts or [0.0]))
    negatives = list(dict.fromkeys(negatives or []))
    variants = []
    for variant in _method_variants(methods, encoders):
        if not get_method(variant.method).uses_identity:
            variants.append(variant)
        elif len(starts) == 1:
            variants.append(replace(variant, identity_start=starts[0]))
        else:
            variants += [replace(variant, label=f"{variant.label}@start{start:g}", identity_start=start)
                         for start in starts]
    with_negatives = []
    for variant in variants:
        branches = get_method(variant.method).negative_branches
        mine = [n for n in negatives if n in branches]
        if len(mine) <= 1:
            with_negatives.append(replace(variant, negative=mine[0] if mine else None))
        else:
            with_negatives += [replace(variant, label=variant.label + negative_label(n), negative=n) for n in mine]
    return with_negatives


def negative_label(branch: str) -> str:
    """What a column's label gets for its negative branch, where a method has several columns."""
    return f"@{branch}-negative"


def _method_variants(methods: list[str], encoders: list[str]) -> list[Variant]:
    from ..methods import get_method

    methods = list(dict.fromkeys(methods or ["m2"]))
    encoders = list(dict.fromkeys(encoders or []))
    names = checkpoint_names(encoders)
    kinds = {encoder: encoder_type_of(encoder) for encoder in encoders}
    variants = []
    for method in methods:
        if not get_method(method).uses_identity:
            variants.append(Variant(method, method, None))
            continue
        mine = [e for e in encoders if kinds[e] in (None, method)]
        if len(mine) > 1:
            variants += [Variant(f"{method}@{names[encoder]}", method, encoder) for encoder in mine]
        else:
            variants.append(Variant(method, method, mine[0] if mine else None))
    return variants


def encoder_type_of(path: str) -> str | None:
    """The method a checkpoint is for, read from its config (None when it cannot be told)."""
    from ..encoders.base import PICKLE_SUFFIXES
    from ..names import FACECLIP_RELEASE
    from ..train.layout import trained_encoder

    location = trained_encoder(Path(path))
    if location.suffix in PICKLE_SUFFIXES or (location / FACECLIP_RELEASE["encoder"]).is_file():
        return "faceclip"
    config = location / "config.json" if location.is_dir() else location.with_name("config.json")
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("encoder_type")
    except (OSError, ValueError, AttributeError):
        return None


def checkpoint_names(encoders: list[str]) -> dict[str, str]:
    """A short distinct name per checkpoint: its folder, or the run's folder for ``faceid train``'s
    ``RUN/encoder`` and ``RUN/checkpoints/step-N/encoder``; more of the path where names collide."""
    def parts(encoder: str) -> list[str]:
        found = [p for p in Path(encoder).parts if p not in ("/", "")]
        while len(found) > 1 and found[-1] in ("encoder", "checkpoints"):
            found.pop()
        return found

    depth = 1
    while True:
        names = {e: _slug("-".join(parts(e)[-depth:]) or e) for e in encoders}
        longest = max((len(parts(e)) for e in encoders), default=1)
        if len(set(names.values())) == len(names) or depth >= longest:
            return names
        depth += 1


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def image_seed(seed: int, face_index: int, prompt_index: int, count: int, prompts: int) -> int:
    """The first seed of a (face, prompt): the same in every variant, so columns compare."""
    return seed + (face_index * prompts + prompt_index) * count


def evaluation_jobs(faces: list[Reference], prompts: list[str], variants: list[Variant], *, num_images: int, seed: int,
                    settings: dict) -> tuple[list, dict[str, dict]]:
    """batch jobs, and what each job means (variant, face, prompt) for the scoring."""
    from ..jobs import Job

    jobs, meaning = [], {}
    stems = _face_stems([face.stem for face in faces])
    for variant in variants:
        for f, face in enumerate(faces):
            for p, prompt in enumerate(prompts):
                name = f"{_slug(variant.label)}/{stems[f]}/p{p:02d}"
                job_settings = {**settings, "method": variant.method, "num_images": num_images,
                                "seed": image_seed(seed, f, p, num_images, len(prompts)),
                                "identity_start": variant.identity_start,
                                "text_negative": variant.negative == "text"}
                if variant.encoder:
                    job_settings["encoder"] = variant.encoder
                jobs.append(Job(index=len(jobs), line=0, name=name, faces=face.photos, prompts=(prompt,),
                                settings=job_settings))
                meaning[name] = {"variant": variant.label, "method": variant.method, "encoder": variant.encoder,
                                 "identity_start": variant.identity_start, "negative": variant.negative,
                                 "face": face.name,
                                 "photos": list(face.photos),
                                 "face_index": f, "prompt": prompt, "prompt_index": p}
    return jobs, meaning


def _face_stems(names: list[str]) -> list[str]:
    stems, seen = [], {}
    for name in names:
        stem = _slug(name)
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return stems


@dataclass
class EvaluationResult:
    rows: list[dict]
    summaries: dict[str, list[dict]]
    paths: dict[str, Path] = field(default_factory=dict)
    generated: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    scored: bool = True


def run_evaluation(out: Path, faces: list, prompts: list[str], variants: list[Variant], *, model: str,
                   num_images: int = 4, seed: int = 0, steps: int = 30, guidance: float = 7.5,
                   backend: str = "auto", analyzer_options=None, clip: str | None = None, neutral: str = "a person",
                   shard: tuple[int, int] = (0, 1), batch_size: int = 4, device: str = "auto", dtype: str = "auto",
                   allow_download: bool = False, max_pixels: int | None = None, on_step=None,
                   on_note=None, identity_photos: Path | None = None) -> EvaluationResult:
    """Generate what is missing, then (unless sharded) score every image and write the reports.
    ``faces``: photo paths (a person each) or :class:`Reference` objects (several photos fused).
    ``identity_photos``: a folder of further photos per person (:func:`identity_targets`)."""
    from ..batch import BatchRunner, Manifest, manifest_name, plan, prepare_resume
    from ..contact_sheet import mosaic
    from ..faces.analyzer import AnalyzerOptions
    from ..jobs import shard_jobs
    from ..locks import hold_output_lock
    from ..names import GENERATION_DEFAULTS
    from ..pipeline_faceid import FaceIDPipeline

    if not faces or not prompts or not variants:
        raise InvalidArgumentError("nothing to evaluate", "give --faces, --prompts and at least one --method")
    from ..errors import MissingModelError
    from ..models.registry import check_model_available, resolve_model
    from .clip_scorer import check_clip_available

    # before any model loads or any image is made: every job, or the scoring at the end, would fail
    for variant in variants:
        if variant.encoder is not None and not Path(variant.encoder).exists():
            raise MissingModelError(f"encoder checkpoint '{variant.encoder}' not found", "check the --encoder path")
    check_model_available(resolve_model(model), allow_download)
    clip = clip or default_clip(model)
    if shard[1] == 1:  # a shard only generates
        check_clip_available(clip, allow_download)
    note = on_note or (lambda message: None)
    out = Path(out)
    images_dir = out / IMAGES
    options = AnalyzerOptions.for_model(analyzer_options, model)
    faces = [Reference.of(face) for face in faces]
    analyzer, references = check_references(faces, backend, options, max_pixels)
    targets = (identity_targets(identity_photos, {face.name: list(face.photos) for face in faces}, analyzer, max_pixels)
               if identity_photos is not None else None)
    settings = {"model": model, "steps": steps, "guidance": guidance}
    jobs, meaning = evaluation_jobs(faces, prompts, variants, num_images=num_images, seed=seed, settings=settings)
    mine, items = plan(shard_jobs(jobs, *shard))
    images_dir.mkdir(parents=True, exist_ok=True)
    encode_seconds: dict[tuple, float] = {}

    class TimedRunner(BatchRunner):
        """batch's runner, timing each identity's encoding (the paper's third column)."""

        def _identity(self, pipeline, item):
            key = (pipeline.method, self.setting(item.job, "encoder"), item.job.faces)
            started = time.perf_counter()
            identity = super()._identity(pipeline, item)
            if key not in encode_seconds and pipeline.uses_identity:
                encode_seconds[key] = time.perf_counter() - started
            return identity

    def load_pipeline(**kwargs):
        return FaceIDPipeline.from_model(kwargs["model"], encoder=kwargs["encoder"], method=kwargs["method"],
                                         device=device, dtype=dtype, face_backend=backend, analyzer_options=options,
                                         identity_token=kwargs["identity_token"], allow_download=allow_download,
                                         method_options=kwargs["method_options"])

    manifest_path = images_dir / manifest_name(shard)
    defaults = {**GENERATION_DEFAULTS, "encoder": None, "height": None, "width": None, "face_index": 0}
    with hold_output_lock(manifest_path, hint="another 'faceid evaluate' writes this folder; wait for it, or "
                                              "split the work with --shard I/N"):
        manifest = Manifest(manifest_path)
        pending, already = prepare_resume(images_dir, items, manifest)
        note(f"{len(items)} images ({already} already there, {len(pending)} to generate)")
        runner = TimedRunner(images_dir, manifest, defaults=defaults, batch_size=batch_size, max_pixels=max_pixels,
                             load_pipeline=load_pipeline, on_step=on_step)
        summary = runner.run(mine, pending)
        records = [r for r in manifest.records if r.get("status") == "ok"]
        _save_encode_seconds(images_dir, shard, encode_seconds)
    result = EvaluationResult(rows=[], summaries={}, generated=summary.images_written,
                              failed=dict(summary.failed_jobs))
    if shard[1] > 1:
        result.scored = False
        note(f"shard {shard[0]}/{shard[1]} generated; run the same command without --shard to score and report")
        return result
    if not records:
        from ..errors import FaceIDError

        failed = result.failed
        first = f": {len(failed)} jobs failed, the first with: {next(iter(failed.values()))}" if failed else ""
        raise FaceIDError(f"no image was generated in '{images_dir}'{first}",
                          f"fix it and re-run ({manifest_path.name} there holds every job's error)")
    result.rows = score_records(images_dir, records, meaning, backend=backend, options=options, clip=clip,
                                neutral=neutral, encode_seconds=_load_encode_seconds(images_dir), note=note,
                                context_check=is_world(model), allow_download=allow_download, analyzer=analyzer,
                                known_references=references, identity_targets=targets)
    result.summaries = {
        "variant": _summaries(result.rows, "variant", seed),
        "variant_prompt": _summaries(result.rows, ("variant", "prompt"), seed),
        "variant_face": _summaries(result.rows, ("variant", "face"), seed),
    }
    result.paths = write_everything(out, result, faces, variants,
                                    {name: mosaic(images) for name, (images, _) in references.items()})
    return result


def _timing_key(method: str, encoder: str | None, photos) -> str:
    return json.dumps([method, encoder, *photos])


def _save_encode_seconds(images_dir: Path, shard: tuple[int, int], measured: dict[tuple, float]) -> None:
    """Encode times measured by this run, kept beside the images (one file per shard): a resumed or
    merged evaluation that encodes nothing still reports them."""
    from ..images import atomic_output

    if not measured:
        return
    path = images_dir / ("encode-seconds.json" if shard[1] == 1 else f"encode-seconds.shard-{shard[0]}-of-{shard[1]}.json")
    known = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    known.update({_timing_key(method, encoder, faces): seconds for (method, encoder, faces), seconds in measured.items()})
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _load_encode_seconds(images_dir: Path) -> dict[str, float]:
    known: dict[str, float] = {}
    for path in sorted(images_dir.glob("encode-seconds*.json")):
        known.update(json.loads(path.read_text(encoding="utf-8")))
    return known


def images_rows(folder: Path) -> tuple[list[dict], str]:
    """What ``generate`` or ``batch`` wrote into ``folder`` (PNGs with faceid's metadata): one row
    per image with its variant (method, and encoder where they differ), reference, prompt and seed;
    and the model they were made with."""
    from ..errors import FaceIDError
    from ..generate import read_parameters
    from ..identity import is_identity_file
    from ..methods import get_method

    rows, models = [], set()
    for path in sorted(Path(folder).rglob("*.png")):
        try:
            info = read_parameters(path)
        except (OSError, ValueError):  # unreadable, truncated or not a PNG (PIL's errors are OSErrors)
            continue  # not an image faceid made: nothing to score
        if "prompt" not in info:
            continue  # not made by faceid
        photos = list(info.get("reference") or [])
        if not photos:
            raise FaceIDError(f"'{path}' does not record its reference photo (made by an older faceid)",
                              "evaluate it with --faces and --prompts instead")
        for reference in photos:
            if is_identity_file(reference):
                raise FaceIDError(f"'{path}' was made from the identity file '{reference}', not a photo",
                                  "face similarity needs the photo; generate from photos to evaluate")
        models.add(info["model"])
        # several photos fused into one identity: scored against all of them (read_reference)
        rows.append({"method": info["method"], "encoder": info.get("encoder"), "photos": photos,
                     "face": photos[0] if len(photos) == 1 else " + ".join(photos),
                     "identity_start": float(info.get("identity_start") or 0.0),
                     "negative": (info.get("method_options") or {}).get("negative"),
                     "prompt": info["prompt"], "seed": info["seed"], "file": str(path.relative_to(folder))})
    if not rows:
        raise InvalidArgumentError(f"no image made by faceid in '{folder}'", "point --images at a generate or batch output")
    if len(models) > 1:
        raise InvalidArgumentError(f"'{folder}' mixes models ({', '.join(sorted(models))})",
                                   "evaluate one model's images at a time")
    encoders = {(r["method"], r["encoder"]) for r in rows}
    several = {m for m, _ in encoders if sum(1 for mm, _ in encoders if mm == m) > 1}
    names = checkpoint_names(sorted({e for _, e in encoders if e}))
    starts = {r["identity_start"] for r in rows if r["encoder"]}
    defaults = {m: (get_method(m).negative_branches or (None,))[0] for m in {r["method"] for r in rows}}
    for row in rows:
        row["negative"] = row["negative"] or defaults[row["method"]]
    branches = {m: {r["negative"] for r in rows if r["method"] == m} for m in defaults}
    for row in rows:
        row["variant"] = (f"{row['method']}@{names[row['encoder']]}"
                          if row["method"] in several and row["encoder"] else row["method"])
        if len(starts) > 1 and row["encoder"]:
            row["variant"] += f"@start{row['identity_start']:g}"
        if len(branches[row["method"]]) > 1:
            row["variant"] += negative_label(row["negative"])
    return rows, models.pop()


def run_on_images(out: Path, folder: Path, *, backend: str = "auto", analyzer_options=None, clip: str | None = None,
                  neutral: str = "a person", seed: int = 0, allow_download: bool = False,
                  max_pixels: int | None = None, on_note=None, identity_photos: Path | None = None) -> EvaluationResult:
    """Score images a user already made (``generate`` or ``batch`` output) and write the reports."""
    from ..faces import load_analyzer
    from ..faces.analyzer import AnalyzerOptions

    note = on_note or (lambda message: None)
    folder = Path(folder)
    rows, model = images_rows(folder)
    options = AnalyzerOptions.for_model(analyzer_options, model)  # the images' model picks the backend
    meaning = {}
    records = []
    for row in rows:
        key = row["file"]
        meaning[key] = {k: row[k] for k in ("variant", "method", "encoder", "identity_start", "negative", "face",
                                            "photos", "prompt")}
        records.append({"job": key, "seed": row["seed"], "files": [row["file"]]})
    analyzer = load_analyzer(backend, options)
    targets = (identity_targets(identity_photos, {row["face"]: row["photos"] for row in rows}, analyzer, max_pixels)
               if identity_photos is not None else None)
    scored = score_records(folder, records, meaning, backend=backend, options=options, clip=clip or default_clip(model),
                           neutral=neutral, encode_seconds={}, note=note, context_check=is_world(model),
                           allow_download=allow_download, max_pixels=max_pixels, analyzer=analyzer,
                           identity_targets=targets)
    result = EvaluationResult(rows=scored, summaries={
        "variant": _summaries(scored, "variant", seed),
        "variant_prompt": _summaries(scored, ("variant", "prompt"), seed),
        "variant_face": _summaries(scored, ("variant", "face"), seed)})
    from .report import scatter_plot, write_reports

    result.paths = write_reports(Path(out), scored, result.summaries, "variant")
    result.paths["scatter"] = scatter_plot(scored, "variant", Path(out) / "scatter.png")
    return result


def check_references(faces: list[Reference], backend: str, options,
                     max_pixels: int | None = None) -> tuple[object, dict[str, tuple]]:
    """Every reference photo must be readable and show a face: otherwise fail before generating,
    naming the photo (its images could never be scored). Returns the analyzer and, by reference
    name, its (images, identity embedding), which the scoring reuses."""
    from ..faces import load_analyzer

    analyzer = load_analyzer(backend, options)
    return analyzer, {face.name: read_reference(analyzer, face.photos, max_pixels) for face in faces}


def read_reference(analyzer, photos, max_pixels: int | None = None) -> tuple[list, "object"]:
    """A person's photos and the identity embedding the generations are scored against: the one
    photo's, or for several photos the mean of their unit embeddings (re-normalised), so no single
    photo, with its pose and context, is the target."""
    import numpy as np

    from ..images import load_image
    from .metrics import reference_embedding

    images, embeddings = [], []
    for photo in photos:
        images.append(load_image(photo, max_pixels=max_pixels))
        embedding = np.asarray(reference_embedding(analyzer, images[-1], source=str(photo)), dtype=np.float32)
        embeddings.append(embedding / max(float(np.linalg.norm(embedding)), 1e-12))
    if len(embeddings) == 1:
        return images, embeddings[0]
    mean = np.mean(embeddings, axis=0)
    return images, mean / max(float(np.linalg.norm(mean)), 1e-12)


def identity_targets(folder, people: dict[str, list[str]], analyzer, max_pixels: int | None = None) -> dict[str, object]:
    """``--identity-photos``: for each person (reference name -> its photos), the mean unit
    embedding of further photos of them in ``folder/NAME/``, NAME being the reference photo's name
    without its ending or the folder that holds the reference photos. Every person needs photos
    there; a photo without a face fails, naming it."""
    from ..images import expand_photos

    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidArgumentError(f"--identity-photos '{folder}' is not a folder",
                                   "give a folder holding a folder of photos per person")

    def candidates(name: str, photos: list[str]) -> list[str]:
        parents = {Path(photo).parent.name for photo in photos}
        names = [Path(photos[0]).stem] if len(photos) == 1 else []
        names += [Path(name).name] if Path(name).is_dir() else []
        return names + sorted(parents)

    listed: dict[str, list[Path]] = {}  # each person folder's photos, listed once

    def photos_in(key: str) -> list[Path]:
        if key not in listed:
            listed[key] = expand_photos([str(folder / key)], what="--identity-photos folder") \
                if (folder / key).is_dir() else []
        return listed[key]

    keys, missing = {}, []
    for name, photos in people.items():
        found = [key for key in candidates(name, photos) if photos_in(key)]
        if found:
            keys[name] = found[0]
        else:
            missing.append(candidates(name, photos)[0])
    if missing:
        shown = ", ".join(f"'{folder / key}'" for key in missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise InvalidArgumentError(f"--identity-photos has no photos of {len(missing)} of the people: {shown}",
                                   "put further photos of each person in a folder named as their reference "
                                   "(the photo's name without its ending, or the folder holding the photos)")
    by_key = {key: read_reference(analyzer, photos_in(key), max_pixels)[1] for key in sorted(set(keys.values()))}
    return {name: by_key[key] for name, key in keys.items()}


def is_world(model: str) -> bool:
    from ..names import WORLD_MODELS

    return model in WORLD_MODELS


def default_clip(model: str) -> str:
    from ..names import WORLD_MODELS
    from .clip_scorer import DEFAULT_CLIP, WORLD_CLIP

    return WORLD_CLIP if model in WORLD_MODELS else DEFAULT_CLIP


def score_records(images_dir: Path, records: list[dict], meaning: dict[str, dict], *, backend: str, options,
                  clip: str, neutral: str, encode_seconds: dict, note, context_check: bool = False,
                  allow_download: bool = False, analyzer=None, known_references: dict | None = None,
                  max_pixels: int | None = None, identity_targets: dict | None = None) -> list[dict]:
    """One row per generated image: its variant, face, prompt, seed, file and both scores; with
    ``context_check`` (world models) also the world's ground-truth context figures
    (:mod:`.world_check`); with ``identity_targets`` (by reference name, :func:`identity_targets`)
    the face similarity to further photos of the person. ``known_references``: (image, embedding)
    of reference photos already read (:func:`check_references`); the others are read here."""
    from ..faces import load_analyzer
    from ..images import load_image
    from .clip_scorer import ClipScorer
    from .metrics import largest_face_embedding, similarity_to, text_alignment

    scorer = ClipScorer.from_pretrained(clip, allow_download=allow_download)
    analyzer = analyzer or load_analyzer(backend, options)
    note(f"scoring with {analyzer.description} and CLIP '{clip}'")
    reference_images = {face: images for face, (images, _) in (known_references or {}).items()}
    references = {face: embedding for face, (_, embedding) in (known_references or {}).items()}
    rows = []
    records = [r for r in records if r["job"] in meaning]
    records.sort(key=lambda r: (r["job"], r["seed"]))
    images = []
    for record in records:
        info = meaning[record["job"]]
        if info["face"] not in references:
            reference_images[info["face"]], references[info["face"]] = read_reference(
                analyzer, info.get("photos") or [info["face"]], max_pixels)
        image = load_image(images_dir / record["files"][0], max_pixels=max_pixels)
        images.append(image)
        embedding = largest_face_embedding(analyzer, image)
        rows.append({**{k: info[k] for k in ("variant", "method", "face", "prompt")},
                     "identity_start": info.get("identity_start", 0.0),
                     "seed": record["seed"], "file": record["files"][0],
                     "face_similarity": similarity_to(embedding, references[info["face"]]),
                     "encode_seconds": encode_seconds.get(
                         _timing_key(info["method"], info["encoder"], info.get("photos") or [info["face"]]))})
        if identity_targets is not None:
            rows[-1]["identity_similarity"] = similarity_to(embedding, identity_targets[info["face"]])
    for row, value in zip(rows, text_alignment(scorer, images, [r["prompt"] for r in rows], neutral=neutral)):
        row["text_alignment"] = value
    if context_check:
        from .world_check import context_rows

        checked = context_rows(images, [r["prompt"] for r in rows], [reference_images[r["face"]] for r in rows])
        for row, figures in zip(rows, checked):
            row.update(figures)
    return rows


def _summaries(rows: list[dict], key, seed: int) -> list[dict]:
    from .metrics import summarise

    if isinstance(key, tuple):
        joined = [{**row, "group": " | ".join(str(row[k]) for k in key)} for row in rows]
        return summarise(joined, "group", seed=seed)
    return summarise(rows, key, seed=seed)


def write_everything(out: Path, result: EvaluationResult, faces: list[Reference], variants: list[Variant],
                     reference_images: dict) -> dict:
    from .report import scatter_plot, write_reports

    paths = write_reports(out, result.rows, result.summaries, "variant")
    paths["scatter"] = scatter_plot(result.rows, "variant", out / "scatter.png")
    paths["sheet"] = evaluation_sheet(out, result.rows, faces, variants, reference_images)
    return paths


def evaluation_sheet(out: Path, rows: list[dict], faces: list[Reference], variants: list[Variant],
                     reference_images: dict, per_row: int = 6) -> Path:
    """References in the first column (``reference_images``: each reference's picture by name: its
    photo, or a mosaic of a person's photos);
    each (face, variant) row shows its first generations with their scores written under them."""
    from ..contact_sheet import contact_sheet
    from ..images import load_image, save_image

    grid, captions = [], []
    for face in faces:
        for variant in variants:
            mine = [r for r in rows if r["face"] == face.name and r["variant"] == variant.label][:per_row]
            if not mine:
                continue
            cells = [reference_images[face.name]] + [load_image(out / IMAGES / r["file"]) for r in mine]
            photos = "" if len(face.photos) == 1 else f" ({len(face.photos)} photos)"
            texts = [f"{Path(face.name).name}{photos}\n{variant.label}"] + [
                f"{r['prompt'][:40]}\nsim {'no face' if r['face_similarity'] is None else format(r['face_similarity'], '.2f')}"
                f"  clip {r['text_alignment']:.3f}" for r in mine]
            grid.append(cells)
            captions.append(texts)
    sheet = contact_sheet(grid, captions, cell=160, caption_lines=3, title="faceid evaluate: reference, then generations")
    return save_image(sheet, out / "contact-sheet.png")


def results_document(result: EvaluationResult) -> str:
    return json.dumps(result.summaries, indent=2)
