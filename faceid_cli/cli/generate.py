"""``faceid encode`` and ``faceid generate``: identities and images of them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import (
    AllowDownloadOption,
    BackendOption,
    DetectionSizeOption,
    DeviceOption,
    DtypeOption,
    InsightfaceRootOption,
    JsonOption,
    MaxPixelsOption,
    PackOption,
    analyzer_options,
    finite,
    new_app,
    note,
    one_of,
    print_json,
    progress_bar,
    stdout_console,
    writable_file,
    writable_folder,
)

app = new_app()

from ..names import GENERATION_DEFAULTS as DEFAULTS
from ..names import GENERATION_LIMITS as LIMITS
from ..names import KNOWN_MODELS, SCHEDULER_NAMES
from ..names import METHODS as METHOD_NAMES


def complete_model(incomplete: str) -> list[str]:
    return [name for name in KNOWN_MODELS if name.startswith(incomplete)]


def complete_scheduler(incomplete: str) -> list[str]:
    return [name for name in SCHEDULER_NAMES if name.startswith(incomplete)]


def complete_method(incomplete: str) -> list[str]:
    return [name for name in METHOD_NAMES if name.startswith(incomplete)]


ModelOption = Annotated[
    str, typer.Option("--model", "-m", envvar="FACEID_MODEL", autocompletion=complete_model,
                      help="tiny, tiny-xl (built-in random models for smoke runs), sd21-base, sd15, sdxl, "
                      "a diffusers repo id, a local folder or a .safetensors file.")
]
EncoderOption = Annotated[
    Path | None, typer.Option("--encoder", envvar="FACEID_ENCODER",
                              help="Identity encoder checkpoint (folder or .safetensors). Required for real "
                              "models; the tiny models use a seeded random encoder.")
]
MethodOption = Annotated[
    str, typer.Option("--method", callback=one_of(METHOD_NAMES), autocompletion=complete_method,
                      help="m2 (DreamIdentity's encoder), clip-image (the paper's CLIP baseline), faceclip "
                      "(FaceCLIP's joint ID-text encoder, SDXL) or none (S* becomes 'a person').")
]
FaceIndexOption = Annotated[
    int, typer.Option("--face-index", min=LIMITS["face_index"][0], help="Which face of the photo, largest first (see detect).")
]
IdentityTokenOption = Annotated[
    str, typer.Option("--identity-token", help="The word in prompts that stands for the person.")
]
IdentityStartOption = Annotated[
    float, typer.Option("--identity-start", min=LIMITS["identity_start"][0], max=LIMITS["identity_start"][1], callback=finite, metavar="FRACTION",
                        help="Share of the steps drawn from the prompt alone (S* read as 'a person') before "
                        "the identity enters, like PhotoMaker's style strength: higher follows the prompt "
                        "more and keeps less of the person; 0 conditions every step on it.")
]


@app.command()
def encode(
    faces: Annotated[list[Path], typer.Argument(exists=True, metavar="FACE",
                                                help="One or more photos of one person, or folders of them.")],
    output: Annotated[Path, typer.Option("--output", "-o", dir_okay=False, callback=writable_file,
                                         help="Identity file to write (.safetensors).")],
    model: ModelOption = DEFAULTS["model"],
    encoder: EncoderOption = None,
    method: MethodOption = DEFAULTS["method"],
    face_index: FaceIndexOption = DEFAULTS["face_index"],
    device: DeviceOption = "auto",
    json_output: JsonOption = False,
    backend: BackendOption = "auto",
    insightface_root: InsightfaceRootOption = None,
    insightface_pack: PackOption = None,
    detection_size: DetectionSizeOption = None,
    max_pixels: MaxPixelsOption = None,
) -> None:
    """Encode a face once into an identity file, to generate with it many times.

    Several photos of the same person are fused: their encoder features are averaged (m2 and
    clip-image: before the projection to pseudo-words; faceclip: the face ViT's identity vector and
    patch tokens, which every prompt is fused with at generation). The file records the encoder, the model family, the source photos'
    hashes and face boxes.
    """
    from ..errors import InvalidArgumentError
    from ..faces import load_analyzer
    from ..images import face_photos
    from ..models.registry import resolve_device
    from ..pipeline_faceid import encode_identity, load_identity_encoder

    if output.suffix != ".safetensors":
        raise InvalidArgumentError(f"identity file '{output}' must end in .safetensors", "e.g. -o me.safetensors")
    faces = list(dict.fromkeys(photo for face in faces for photo in face_photos(face)))
    identity_encoder = load_identity_encoder(model, encoder, method).to(resolve_device(device))
    analyzer = load_analyzer(backend, analyzer_options(insightface_root, insightface_pack, detection_size, model))
    timings: dict = {}
    identity = encode_identity(identity_encoder, analyzer, faces, method=method, face_index=face_index,
                               max_pixels=max_pixels, timings=timings)
    identity.save(output)
    if json_output:
        print_json({"identity": str(output), "identity_hash": identity.hash,
                    "base_family": identity.metadata["base_family"], "num_words": identity.num_words,
                    "word_dims": list(identity.word_dims), "encoder": identity_encoder.name,
                    "sources": identity.metadata["sources"], "seconds": timings})
        return
    note(f"face backend: {analyzer.description}")
    stdout_console().print(
        f"wrote {output}  ({identity.metadata['base_family']}, {identity.method}"
        + (f", {identity.num_words} words" if identity.num_words else "") + ", "
        f"{len(faces)} photo{'s' if len(faces) != 1 else ''}, identity {identity.hash})"
    )


@app.command()
def generate(
    face: Annotated[Path, typer.Argument(exists=True, metavar="FACE|ID",
                                         help="A photo of the person, a folder of their photos (fused, as "
                                         "'faceid encode' fuses them), or an identity file from 'faceid encode'.")],
    prompt: Annotated[str, typer.Argument(metavar="PROMPT", help="What to generate; S* stands for the person: 'S* as a chef'.")],
    num_images: Annotated[int, typer.Option("--num-images", "-n", min=LIMITS["num_images"][0], help="How many images.")] = DEFAULTS["num_images"],
    seed: Annotated[int | None, typer.Option("--seed", min=LIMITS["seed"][0], max=LIMITS["seed"][1],
                                             help="Seed of the first image; image i uses seed+i "
                                             "[default: random, recorded in the files].")] = None,
    steps: Annotated[int, typer.Option("--steps", min=LIMITS["steps"][0], max=LIMITS["steps"][1], help="Denoising steps.")] = DEFAULTS["steps"],
    guidance: Annotated[float, typer.Option("--guidance", min=LIMITS["guidance"][0], callback=finite, help="Classifier-free guidance scale.")] = DEFAULTS["guidance"],
    scheduler: Annotated[str, typer.Option("--scheduler", callback=one_of(SCHEDULER_NAMES),
                                           autocompletion=complete_scheduler,
                                           help=f"Sampler: {', '.join(SCHEDULER_NAMES)}.")] = DEFAULTS["scheduler"],
    height: Annotated[int | None, typer.Option("--height", min=LIMITS["height"][0], help="Image height, a multiple of 8 "
                                               "[default: the model's native size].")] = None,
    width: Annotated[int | None, typer.Option("--width", min=LIMITS["width"][0], help="Image width, a multiple of 8 "
                                              "[default: the model's native size].")] = None,
    negative_prompt: Annotated[str, typer.Option("--negative-prompt", help="What to steer away from.")] = DEFAULTS["negative_prompt"],
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images rendered at once.")] = DEFAULTS["batch_size"],
    out: Annotated[Path, typer.Option("--out", "-o", file_okay=False, callback=writable_folder, help="Folder for the images.")] = Path("faceid-out"),
    name: Annotated[str | None, typer.Option("--name", help="File name stem [default: from the prompt].")] = None,
    model: ModelOption = DEFAULTS["model"],
    encoder: EncoderOption = None,
    method: MethodOption = DEFAULTS["method"],
    face_index: FaceIndexOption = DEFAULTS["face_index"],
    append_identity: Annotated[bool, typer.Option("--append-identity",
                                                  help="Add ', photo of S*' to a prompt without S*.")] = DEFAULTS["append_identity"],
    identity_token: IdentityTokenOption = DEFAULTS["identity_token"],
    identity_start: IdentityStartOption = DEFAULTS["identity_start"],
    text_negative: Annotated[bool, typer.Option(
        "--text-negative", help="faceclip: encode the negative prompt with the base's text encoders alone, "
        "instead of the release's negative branch (a black face through FaceCLIP, no prefix).")] = DEFAULTS["text_negative"],
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    allow_download: AllowDownloadOption = False,
    json_output: JsonOption = False,
    backend: BackendOption = "auto",
    insightface_root: InsightfaceRootOption = None,
    insightface_pack: PackOption = None,
    detection_size: DetectionSizeOption = None,
    max_pixels: MaxPixelsOption = None,
) -> None:
    """Generate images of the person in FACE (a photo, a folder of their photos, or an identity file)
    as PROMPT describes.

    Writes NAME-SEED.png files into --out, each with its parameters embedded (a 'parameters' text
    chunk other diffusion tools read) and a JSON sidecar. The same seed and settings reproduce an
    image exactly; a photo and the identity file encoded from it give the same images.
    """
    from ..generate import GenerationSettings, method_options, prepare
    from ..generate import generate as render
    from ..images import face_photos

    photos = face_photos(face)  # a folder without photos fails here, before any model loads
    pipeline, identity, prompt = prepare(
        face, prompt, model=model, encoder=encoder, method=method, device=device, dtype=dtype,
        allow_download=allow_download, backend=backend,
        analyzer_options=analyzer_options(insightface_root, insightface_pack, detection_size, model),
        face_index=face_index, max_pixels=max_pixels, identity_token=identity_token,
        append_identity=append_identity, scheduler=scheduler, on_note=note,
        method_options=method_options(text_negative=text_negative), photos=photos)
    described = pipeline.describe()
    if not json_output and identity is not None and len(photos) > 1:
        note(f"identity: {len(photos)} photos in '{face}', fused")
    if not json_output:
        note(f"model {described['model']} ({described['family']}) on {described['device']} "
             f"({described['dtype']}), method {described['method']}"
             + (f", encoder {described['encoder']}" if described["encoder"] else ""))
    settings = GenerationSettings(
        prompt=prompt, negative_prompt=negative_prompt, num_images=num_images, seed=seed, steps=steps,
        guidance=guidance, scheduler=scheduler, height=height, width=width, batch_size=batch_size,
        identity_start=identity_start,
    )
    with progress_bar("Generating", total=num_images * steps, enabled=not json_output) as advance:
        results = render(pipeline, identity, settings, out, name=name, on_step=advance, reference=photos)
    if json_output:
        print_json({"images": [str(r.path) for r in results], "seed": settings.seed,
                    "seeds": [r.seed for r in results], "prompt": prompt,
                    "identity_hash": identity.hash if identity is not None else None,
                    **({"identity_start": identity_start} if identity is not None else {}), **described})
        return
    console = stdout_console()
    for result in results:
        console.print(str(result.path))
