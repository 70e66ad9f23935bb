"""``faceid batch``: many (face, prompt) jobs with the models loaded once, resumable and shardable.

Every image has a fixed path (``NAME-SEED.png``, or ``NAME-pJ-SEED.png`` for a job's J-th prompt)
inside the output folder. An image counts as done once its PNG has been renamed into place (the
sidecar is written first); then a line is appended to the manifest. A killed run re-run with the
same command skips every image whose PNG exists, adds any manifest line the kill cut off, retries
what failed, and writes nothing twice. Shards keep their own manifest, so several processes can
share one output folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import FaceIDError, OutOfMemoryError
from .jobs import Job, default_seed


def _uses_identity(method: str) -> bool:
    from .methods import METHOD_MODULES, get_method

    # an unknown method is reported where the job is checked; here it counts as needing a face
    return method not in METHOD_MODULES or get_method(method).uses_identity

MANIFEST = "manifest.jsonl"


@dataclass(frozen=True)
class WorkItem:
    job: Job
    prompt_index: int
    prompt: str
    seed: int
    file: str  # PNG path relative to the output folder

    @property
    def sidecar(self) -> str:
        return self.file[: -len(".png")] + ".json"


def plan(jobs: list[Job]) -> tuple[list[Job], list[WorkItem]]:
    """Every image the valid jobs ask for, in job order, with its seed and output path.

    Returns the jobs too: a job whose file names collide with an earlier job's (``a`` with two
    prompts and a job named ``a-p0``, say) is turned into a failed job rather than sharing files.
    """
    items, planned, claimed = [], [], {}
    for job in jobs:
        if job.error:
            planned.append(job)
            continue
        count = int(job.setting("num_images", 1))
        first = job.setting("seed")
        first = default_seed(job.name) if first is None else int(first)
        mine = []
        for prompt_index, prompt in enumerate(job.prompts):
            stem = job.name if len(job.prompts) == 1 else f"{job.name}-p{prompt_index}"
            for i in range(count):
                mine.append(WorkItem(job, prompt_index, prompt, first + i, f"{stem}-{first + i}.png"))
        clash = next((item.file for item in mine if item.file in claimed), None)
        if clash:
            planned.append(replace(job, error=f"job '{job.name}' (line {job.line}): its image {clash} is "
                                              f"also an image of job '{claimed[clash]}'; rename one of them"))
            continue
        claimed.update({item.file: job.name for item in mine})
        planned.append(job)
        items += mine
    return planned, items


def manifest_name(shard: tuple[int, int]) -> str:
    index, count = shard
    return MANIFEST if count == 1 else f"manifest.shard-{index}-of-{count}.jsonl"


class Manifest:
    """The JSON-lines record of a run: one line per finished image or failed job."""

    def __init__(self, path: Path):
        self.path = path
        self.records: list[dict] = []
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the tail of a line cut off by a kill
                if isinstance(record, dict):
                    self.records.append(record)

    def rewrite(self, records: list[dict]) -> None:
        from .images import atomic_output

        self.records = list(records)
        with atomic_output(self.path) as tmp:
            tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records), encoding="utf-8")

    def append(self, record: dict) -> None:
        line = json.dumps(record, sort_keys=True) + "\n"
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        self.records.append(record)


@dataclass
class BatchSummary:
    jobs: int = 0
    images_written: int = 0
    images_skipped: int = 0
    failed_jobs: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed_jobs


def image_record(item: WorkItem, info: dict | None = None) -> dict:
    record = {"job": item.job.name, "job_index": item.job.index, "prompt": item.prompt,
              "prompt_index": item.prompt_index, "seed": item.seed, "files": [item.file, item.sidecar],
              "status": "ok", "error": None}
    if info:
        record.update({k: info.get(k) for k in ("identity_hash", "model", "method")})
    return record


def failure_record(job: Job, error: str) -> dict:
    return {"job": job.name, "job_index": job.index, "prompt": None, "prompt_index": None, "seed": None,
            "files": [], "status": "failed", "error": error}


def prepare_resume(out_dir: Path, items: list[WorkItem], manifest: Manifest) -> tuple[list[WorkItem], int]:
    """Work out what is left. Keeps the manifest's lines for images on disk, adds lines a kill cut
    off, drops failures (they are retried), removes this run's leftover temporary files."""
    on_disk = {item.file for item in items if (out_dir / item.file).is_file()}
    kept = [r for r in manifest.records if r.get("status") == "ok" and r.get("files")
            and r["files"][0] in on_disk]
    recorded = {r["files"][0] for r in kept}
    for item in items:
        if item.file in on_disk and item.file not in recorded:
            kept.append(image_record(item, _read_sidecar(out_dir / item.sidecar)))
            recorded.add(item.file)
        if item.file not in on_disk:
            for name in (item.file, item.sidecar):
                target = out_dir / name
                for stale in target.parent.glob(f".{target.name}.*.part"):
                    stale.unlink(missing_ok=True)
    manifest.rewrite(kept)
    return [item for item in items if item.file not in on_disk], len(on_disk)


def job_photos(job: Job) -> list[str]:
    """A job's faces as photos (or one identity file): each folder gives the photos inside it."""
    from .images import face_photos

    return list(dict.fromkeys(photo for face in job.faces for photo in face_photos(face)))


def preflight(job: Job, defaults: dict) -> str | None:
    """What would certainly make ``job`` fail, found without loading anything (for --dry-run)."""
    from .conditioning import check_identity_prompt

    method = job.settings.get("method", defaults.get("method"))
    for face in job.faces:
        if not Path(face).exists():
            return f"job '{job.name}': face '{face}' does not exist"
    try:
        job_photos(job)
    except FaceIDError as exc:
        return f"job '{job.name}': {exc}"
    if _uses_identity(method):
        token = job.settings.get("identity_token", defaults.get("identity_token"))
        append = bool(job.settings.get("append_identity", defaults.get("append_identity")))
        try:
            for prompt in job.prompts:
                check_identity_prompt(prompt, token, append)
        except FaceIDError as exc:
            return f"job '{job.name}': {exc}"
    return None


def _read_sidecar(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class BatchRunner:
    """Renders work items, loading each (model, encoder, method) once and each identity once.

    ``defaults`` are the batch command's own settings; a job's fields override them.
    """

    def __init__(self, out_dir: Path, manifest: Manifest, *, defaults: dict, batch_size: int = 4,
                 load_pipeline: Callable[..., object], max_pixels: int | None = None,
                 on_record: Callable[[dict], None] | None = None, on_step: Callable[[], None] | None = None):
        self.out_dir = out_dir
        self.manifest = manifest
        self.defaults = defaults
        self.batch_size = batch_size
        self.load_pipeline = load_pipeline
        self.max_pixels = max_pixels
        self.on_record = on_record or (lambda record: None)
        self.on_step = on_step
        self._pipelines: dict[tuple, object] = {}
        self._identities: dict[tuple, object] = {}
        self._photos: dict[int, list[str]] = {}  # each job's faces as photos, by job index
        self.summary = BatchSummary()

    def setting(self, job: Job, key: str):
        return job.settings.get(key, self.defaults.get(key))

    def fail(self, job: Job, error: str) -> None:
        if job.name in self.summary.failed_jobs:
            return
        self.summary.failed_jobs[job.name] = error
        record = failure_record(job, error)
        self.manifest.append(record)
        self.on_record(record)

    def run(self, jobs: list[Job], items: list[WorkItem]) -> BatchSummary:
        from .conditioning import check_identity_prompt

        self.summary.jobs = len(jobs)
        for job in jobs:
            if job.error:
                self.fail(job, job.error)
        runnable = []
        for item in items:
            if item.job.name in self.summary.failed_jobs:
                continue
            try:
                if item.job.index not in self._photos:  # once a job: a folder is listed here, not per image
                    self._photos[item.job.index] = job_photos(item.job)
                if _uses_identity(self.setting(item.job, "method")):
                    prompt = check_identity_prompt(item.prompt, self.setting(item.job, "identity_token"),
                                                   bool(self.setting(item.job, "append_identity")))
                    item = WorkItem(item.job, item.prompt_index, prompt, item.seed, item.file)
            except FaceIDError as exc:
                self.fail(item.job, f"job '{item.job.name}': {exc}")
                continue
            runnable.append(item)
        for key, group in _group(runnable, self._pipeline_key).items():
            pipeline = self._pipeline(key, group)
            if pipeline is None:
                continue
            by_settings = _group(group, lambda item: self._render_key(item, pipeline))
            for render_key, batch_items in by_settings.items():
                for start in range(0, len(batch_items), self.batch_size):
                    self._render(pipeline, render_key, batch_items[start:start + self.batch_size])
        return self.summary

    def _pipeline_key(self, item: WorkItem) -> tuple:
        return tuple(self.setting(item.job, k) for k in ("model", "encoder", "method", "identity_token")) + (
            bool(self.setting(item.job, "text_negative")),)

    def _render_key(self, item: WorkItem, pipeline) -> tuple:
        size = pipeline.default_size
        return (self.setting(item.job, "height") or size, self.setting(item.job, "width") or size,
                int(self.setting(item.job, "steps")), float(self.setting(item.job, "guidance")),
                self.setting(item.job, "scheduler"), bool(self.setting(item.job, "negative_prompt")),
                float(self.setting(item.job, "identity_start") or 0.0))

    def _pipeline(self, key: tuple, items: list[WorkItem]):
        if key not in self._pipelines:
            from .generate import method_options

            model, encoder, method, token, text_negative = key
            try:
                self._pipelines[key] = self.load_pipeline(model=model, encoder=encoder, method=method,
                                                          identity_token=token,
                                                          method_options=method_options(text_negative=text_negative))
            except FaceIDError as exc:
                self._pipelines[key] = None
                for item in items:
                    self.fail(item.job, f"job '{item.job.name}': {exc}")
        return self._pipelines[key]

    def _identity(self, pipeline, item: WorkItem):
        if not pipeline.uses_identity:
            return None
        faces = item.job.faces
        key = (id(pipeline), faces, int(self.setting(item.job, "face_index") or 0))
        if key not in self._identities:
            try:
                photos = self._photos[item.job.index]  # a folder is its photos, fused
                if len(photos) == 1:
                    identity = pipeline.identity_from(photos[0], face_index=key[2], max_pixels=self.max_pixels)
                else:
                    identity = pipeline.encode(photos, face_index=key[2], max_pixels=self.max_pixels)
            except FaceIDError as exc:
                identity = exc
            self._identities[key] = identity
        return self._identities[key]

    def _render(self, pipeline, render_key: tuple, items: list[WorkItem]) -> None:
        from .pipeline_faceid import RenderRequest

        requests, ready = [], []
        for item in items:
            if item.job.name in self.summary.failed_jobs:
                continue
            identity = self._identity(pipeline, item)
            if isinstance(identity, FaceIDError):
                self.fail(item.job, f"job '{item.job.name}': {identity}")
                continue
            negative = self.setting(item.job, "negative_prompt") or ""
            requests.append(RenderRequest(identity, item.prompt, negative, item.seed))
            ready.append(item)
        if requests:
            self._render_requests(pipeline, render_key, ready, requests)

    def _render_requests(self, pipeline, render_key: tuple, items: list[WorkItem], requests: list) -> None:
        """Render and save; a batch that runs out of memory is split in two and retried."""
        from .generate import image_info, save_generated
        from .interrupts import interrupts_deferred

        height, width, steps, guidance, scheduler, _, identity_start = render_key
        try:
            images = pipeline.render(requests, steps=steps, guidance=guidance, scheduler=scheduler,
                                     height=height, width=width, identity_start=identity_start,
                                     on_step=self.on_step)
        except OutOfMemoryError as exc:
            if len(requests) == 1:
                self.fail(items[0].job, f"job '{items[0].job.name}': {exc}")
                return
            half = len(requests) // 2
            self._render_requests(pipeline, render_key, items[:half], requests[:half])
            self._render_requests(pipeline, render_key, items[half:], requests[half:])
            return
        except FaceIDError as exc:
            for item in items:
                self.fail(item.job, f"job '{item.job.name}': {exc}")
            return
        for item, request, image in zip(items, requests, images):
            info = image_info(pipeline, request.identity, prompt=item.prompt, negative_prompt=request.negative_prompt,
                              steps=steps, guidance=guidance, scheduler=scheduler, height=height, width=width,
                              reference=self._photos[item.job.index], identity_start=identity_start)
            info.update(seed=item.seed, job=item.job.name)
            record = image_record(item, info)
            # the image and its manifest line go together: a Ctrl-C between them would leave an
            # unrecorded image until the next run's resume found it
            with interrupts_deferred():
                save_generated(image, self.out_dir / item.file, info)
                self.manifest.append(record)
            self.summary.images_written += 1
            self.on_record(record)


def _group(items, key) -> dict:
    groups: dict = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups
