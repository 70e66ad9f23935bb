"""The library's ``generate``: render images of an identity and write them with their parameters.

Each PNG carries a ``parameters`` text chunk in the format other diffusion tools read and write
(prompt; ``Negative prompt: ...``; ``Steps: 30, Sampler: DDIM, CFG scale: 7.5, Seed: 42, Size:
512x512, Model: ..., ...``) and a ``faceid`` chunk with the same as JSON; a JSON sidecar beside it
holds the same document. Files are written under a temporary name and renamed.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .images import atomic_output, new_file_mode
from .models.schedulers import sampler_label
from .names import GENERATION_DEFAULTS as DEFAULTS


def method_options(*, text_negative: bool = DEFAULTS["text_negative"]) -> dict | None:
    """A pipeline's ``method_options`` from the generation settings that set them (None: the
    method's defaults)."""
    return {"negative": "text"} if text_negative else None


@dataclass
class GenerationSettings:
    prompt: str
    negative_prompt: str = DEFAULTS["negative_prompt"]
    num_images: int = DEFAULTS["num_images"]
    seed: int | None = None  # None: a random one, recorded in every output
    steps: int = DEFAULTS["steps"]
    guidance: float = DEFAULTS["guidance"]
    scheduler: str = DEFAULTS["scheduler"]
    height: int | None = None
    width: int | None = None
    batch_size: int = DEFAULTS["batch_size"]
    identity_start: float = DEFAULTS["identity_start"]

    def seeds(self) -> list[int]:
        """Image i uses seed + i, so any one image can be regenerated alone."""
        if self.seed is None:
            self.seed = random.SystemRandom().randrange(2**31)
        return [self.seed + i for i in range(self.num_images)]


@dataclass
class GeneratedImage:
    path: Path
    seed: int
    info: dict = field(repr=False)

    @property
    def sidecar(self) -> Path:
        return self.path.with_suffix(".json")


def slugify(text: str, limit: int = 48) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower().replace("s*", "s")).strip("-")
    return (slug[:limit].rstrip("-") or "image")


def parameters_text(info: dict) -> str:
    """The ``parameters`` text other diffusion tools read (A1111's layout)."""
    fields = {
        "Steps": info["steps"], "Sampler": sampler_label(info["scheduler"]),
        "CFG scale": info["guidance"], "Seed": info["seed"], "Size": f"{info['width']}x{info['height']}",
        "Model": info["model"], "Identity": info.get("identity_hash") or "none",
        "Identity method": info["method"], "Encoder": info.get("encoder") or "none",
        **({"Identity start": info["identity_start"]} if info.get("identity_start") else {}),
        "Version": f"faceid {__version__}",
    }
    body = ", ".join(f"{k}: {_quote(v)}" for k, v in fields.items())
    lines = [info["prompt"]]
    if info.get("negative_prompt"):
        lines.append(f"Negative prompt: {info['negative_prompt']}")
    lines.append(body)
    return "\n".join(lines)


def _quote(value) -> str:
    text = str(value)
    return json.dumps(text) if ("," in text or ":" in text) else text


def read_parameters(path: str | os.PathLike) -> dict:
    """The faceid JSON document embedded in a PNG written by faceid (and its parameters text)."""
    from PIL import Image

    with Image.open(path) as image:
        text = dict(image.text) if hasattr(image, "text") else {}
    info = json.loads(text["faceid"]) if "faceid" in text else {}
    info["parameters"] = text.get("parameters")
    return info


def _png_chunk(info: dict):
    from PIL.PngImagePlugin import PngInfo

    chunk = PngInfo()
    chunk.add_text("parameters", parameters_text(info))
    chunk.add_text("faceid", json.dumps(info, sort_keys=True))
    return chunk


def _write_sidecar(info: dict, path: Path) -> Path:
    sidecar = path.with_suffix(".json")
    with atomic_output(sidecar) as tmp:
        tmp.write_text(json.dumps({**info, "image": path.name}, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return sidecar


def save_generated(image, path: Path, info: dict) -> GeneratedImage:
    """Write the sidecar, then the PNG: the PNG's rename is the moment the image counts as done
    (batch's resume relies on it). An existing ``path`` is replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sidecar = _write_sidecar(info, path)
    try:
        with atomic_output(path) as tmp:
            image.save(tmp, format="PNG", pnginfo=_png_chunk(info))
    except BaseException:
        sidecar.unlink(missing_ok=True)  # no sidecar of an image that was never written (a full disk)
        raise
    return GeneratedImage(path=path, seed=info["seed"], info=info)


#: link() errors that mean "this file system has no hard links", not "you may not"
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}


def save_new(image, folder: Path, stem: str, info: dict) -> GeneratedImage:
    """Save as ``folder/stem.png`` (``stem-2.png``... if taken) without ever replacing a file, even
    one another run writes in the same moment: the finished PNG takes its name with a hard link,
    which fails where a rename would overwrite, and the next free name is tried. Its sidecar
    follows (the PNG carries the same record, so a kill between the two loses nothing). Where the
    file system has no hard links, the name is taken by rename after the check."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{stem}.", suffix=".png.part", dir=folder)
    os.close(fd)
    finished = Path(name)
    try:
        image.save(finished, format="PNG", pnginfo=_png_chunk(info))
        os.chmod(finished, new_file_mode())
        while True:
            path = unique_path(folder, stem)
            try:
                os.link(finished, path)
                break
            except FileExistsError:
                continue  # taken since unique_path looked
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                os.replace(finished, path)
                break
    finally:
        finished.unlink(missing_ok=True)
    _write_sidecar(info, path)
    return GeneratedImage(path=path, seed=info["seed"], info=info)


def unique_path(folder: Path, stem: str) -> Path:
    """``folder/stem.png``, or ``stem-2.png``... if taken: generating never overwrites."""
    candidate, n = folder / f"{stem}.png", 1
    while candidate.exists():
        n += 1
        candidate = folder / f"{stem}-{n}.png"
    return candidate


def image_info(pipeline, identity, *, prompt: str, negative_prompt: str, steps: int, guidance: float,
               scheduler: str, height: int, width: int, reference: Sequence[str] = (),
               identity_start: float = DEFAULTS["identity_start"]) -> dict:
    """What a generated image records about how it was made (the seed is added per image).

    ``reference``: the photos (or identity file) the person came from, so ``faceid evaluate
    --images`` can score the image against them later."""
    return {
        "reference": [str(Path(r).resolve()) for r in reference],
        "prompt": prompt, "negative_prompt": negative_prompt, "steps": steps, "guidance": guidance,
        "scheduler": scheduler, "height": height, "width": width, "model": pipeline.model_name,
        "method": pipeline.method, **({"method_options": pipeline.method_options} if pipeline.method_options else {}),
        "encoder": pipeline.encoder.name if pipeline.encoder is not None and identity is not None else None,
        "identity_hash": identity.hash if identity is not None else None,
        **({"identity_start": identity_start} if identity is not None else {}),
        "identity_token": pipeline.identity_token, "faceid_version": __version__,
        "device": str(pipeline.device), "dtype": str(pipeline.dtype).replace("torch.", ""),
    }


def generate(
    pipeline, identity, settings: GenerationSettings, out_dir: str | os.PathLike, *,
    name: str | None = None, on_step: Callable[[], None] | None = None,
    on_image: Callable[[GeneratedImage], None] | None = None, reference: Sequence[str] = (),
) -> list[GeneratedImage]:
    """Render ``settings.num_images`` images of ``identity`` into ``out_dir``; returns them in order.

    Images are rendered ``batch_size`` at a time and each is written as soon as its batch is done.
    """
    out_dir = Path(out_dir)  # made by save_new with the first image: a failed run leaves no empty folder
    seeds = settings.seeds()
    height = settings.height or pipeline.default_size
    width = settings.width or pipeline.default_size
    pipeline.check_inputs(steps=settings.steps, guidance=settings.guidance, height=height, width=width,
                          batch_size=settings.batch_size, scheduler=settings.scheduler,
                          identity_start=settings.identity_start)
    stem = name or slugify(settings.prompt)
    base_info = image_info(pipeline, identity, prompt=settings.prompt, negative_prompt=settings.negative_prompt,
                           steps=settings.steps, guidance=settings.guidance, scheduler=settings.scheduler,
                           height=height, width=width, reference=reference,
                           identity_start=settings.identity_start)
    written = []
    for start in range(0, len(seeds), settings.batch_size):
        chunk = seeds[start:start + settings.batch_size]
        images = pipeline(identity, settings.prompt, seeds=chunk, negative_prompt=settings.negative_prompt or None,
                          steps=settings.steps, guidance=settings.guidance, scheduler=settings.scheduler,
                          height=height, width=width, batch_size=settings.batch_size,
                          identity_start=settings.identity_start, on_step=on_step)
        for seed, image in zip(chunk, images):
            result = save_new(image, out_dir, f"{stem}-{seed}", {**base_info, "seed": seed})
            written.append(result)
            if on_image is not None:
                on_image(result)
    return written


def prepare(
    face: str | os.PathLike, prompt: str, *, model: str = DEFAULTS["model"], encoder=None,
    method: str = DEFAULTS["method"], device: str = "auto", dtype: str = "auto", allow_download: bool = False,
    backend: str = "auto", analyzer_options=None, face_index: int = DEFAULTS["face_index"],
    max_pixels: int | None = None, identity_token: str = DEFAULTS["identity_token"],
    append_identity: bool = DEFAULTS["append_identity"], scheduler: str = DEFAULTS["scheduler"],
    on_note: Callable[[str], None] | None = None, method_options: dict | None = None,
    photos: Sequence[str] | None = None,
):
    """Everything ``generate`` needs for FACE (a photo, a folder of one person's photos, or an
    identity file) and PROMPT, loaded in
    the order that fails fast: the prompt, the scheduler and the model's files are checked, then the
    identity is encoded (a bad photo or identity file fails before the diffusion model loads), then
    the pipeline loads and the identity is checked against it.

    ``method_options``: the method's own settings (FaceCLIP: ``{"negative": "text"}``).
    ``photos``: FACE's photos when the caller has listed them already (a folder is read once).

    Returns ``(pipeline, identity, prompt)``: identity is None for ``method="none"``; prompt has the
    identity words appended if ``append_identity`` asked for them. The CLI, ``batch``-style callers,
    ``evaluate`` and ``selfaug`` share this, so a library user gets the CLI's behaviour.
    """
    from .conditioning import check_identity_prompt
    from .faces import load_analyzer
    from .faces.analyzer import AnalyzerOptions
    from .identity import Identity, is_identity_file
    from .images import face_photos
    from .models.registry import check_model_available, resolve_device, resolve_model
    from .models.schedulers import check_scheduler
    from .methods import get_method
    from .pipeline_faceid import FaceIDPipeline, encode_identity, load_identity_encoder

    check_scheduler(scheduler)
    uses_identity = get_method(method).uses_identity
    if uses_identity:
        prompt = check_identity_prompt(prompt, identity_token, append_identity)
    elif is_identity_file(face) and on_note:
        on_note("--method none ignores the identity file")
    check_model_available(resolve_model(model), allow_download)
    options = AnalyzerOptions.for_model(analyzer_options, model)
    identity_encoder = analyzer = identity = None
    if uses_identity:
        identity_encoder = load_identity_encoder(model, encoder, method).to(resolve_device(device))
        if is_identity_file(face):
            identity = Identity.load(face)
            identity.check_method(method, str(face))  # before the diffusion model loads
        else:
            analyzer = load_analyzer(backend, options)
            photos = list(photos) if photos is not None else face_photos(face)
            identity = encode_identity(identity_encoder, analyzer, photos, method=method,
                                       face_index=face_index, max_pixels=max_pixels)
    pipeline = FaceIDPipeline.from_model(
        model, encoder=identity_encoder, method=method, device=device, dtype=dtype, allow_download=allow_download,
        face_backend=backend, analyzer_options=options, analyzer=analyzer, identity_token=identity_token,
        method_options=method_options,
    )
    if identity is not None:
        identity = pipeline.check_identity(identity, str(face))
    return pipeline, identity, prompt
