"""``faceid evaluate``: face similarity and text alignment, the papers' way, in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..names import GENERATION_DEFAULTS as DEFAULTS
from ..names import GENERATION_LIMITS as LIMITS
from ..names import FACECLIP_NEGATIVE_BRANCHES, METHODS
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
    interruptible,
    new_app,
    note,
    one_of,
    print_json,
    progress_bar,
    stdout_console,
    writable_folder,
)
from .generate import ModelOption, complete_method

app = new_app()


@app.command()
def evaluate(
    faces: Annotated[list[Path] | None, typer.Option("--faces", exists=True, help="Reference photos: files or "
                                                     "folders (repeatable).")] = None,
    fuse_folders: Annotated[bool, typer.Option("--fuse-folders", help="A folder given to --faces is one person: "
                                               "its photos are fused into one identity, as 'faceid encode' fuses "
                                               "several photos, and scored against them all (a folder of folders: "
                                               "a person per folder).")] = False,
    identity_photos: Annotated[Path | None, typer.Option(
        "--identity-photos", exists=True, file_okay=False, metavar="DIR",
        help="Further photos of each person, never given to the encoder: DIR/NAME/ for the reference "
        "NAME (a photo's name without its ending, or the folder holding its photos). Adds a column: the face "
        "similarity to the mean of their unit embeddings, which compares one reference photo with "
        "several fairly.")] = None,
    images: Annotated[Path | None, typer.Option("--images", exists=True, file_okay=False,
                                                help="Score images already made by generate or batch (their "
                                                "metadata gives prompts, seeds and references) instead of "
                                                "generating.")] = None,
    prompts: Annotated[str, typer.Option("--prompts", help="A prompt set (dreamidentity, wide, world) or a "
                                         "file with one prompt a line, each with S*.")] = "dreamidentity",
    out: Annotated[Path, typer.Option("--out", "-o", file_okay=False, callback=writable_folder, help="Output folder.")] = Path("faceid-eval"),
    model: ModelOption = DEFAULTS["model"],
    method: Annotated[list[str] | None, typer.Option("--method", autocompletion=complete_method,
                                                     help=f"Methods compared side by side (repeatable): "
                                                     f"{', '.join(METHODS)} [default: m2].")] = None,
    encoder: Annotated[list[str] | None, typer.Option("--encoder", help="Encoder checkpoints (repeatable: each "
                                                      "makes its own column).")] = None,
    identity_start: Annotated[list[float] | None, typer.Option(
        "--identity-start", min=LIMITS["identity_start"][0], max=LIMITS["identity_start"][1], callback=finite, metavar="FRACTION",
        help="Share of the steps drawn before the identity enters (see generate); repeatable: each value "
        "makes its own column of every identity method [default: 0].")] = None,
    negative_branch: Annotated[list[str] | None, typer.Option(
        "--negative-branch", callback=one_of(FACECLIP_NEGATIVE_BRANCHES), metavar="BRANCH",
        help="faceclip's negative: release (a black face through FaceCLIP, no prefix) or text (the base's "
        "text encoders alone, as generate --text-negative); repeatable: each makes its own column "
        "[default: release].")] = None,
    num_images: Annotated[int, typer.Option("--num-images", "-n", min=LIMITS["num_images"][0], help="Images per (face, prompt).")] = 4,
    seed: Annotated[int, typer.Option("--seed", min=LIMITS["seed"][0], max=LIMITS["seed"][1], help="First seed; every method gets the same seeds.")] = 0,
    steps: Annotated[int, typer.Option("--steps", min=LIMITS["steps"][0], max=LIMITS["steps"][1], help="Denoising steps.")] = DEFAULTS["steps"],
    guidance: Annotated[float, typer.Option("--guidance", min=LIMITS["guidance"][0], callback=finite, help="Guidance scale.")] = DEFAULTS["guidance"],
    clip: Annotated[str | None, typer.Option("--clip", help="CLIP for text alignment: a repo id or folder "
                                             "[default: openai/clip-vit-large-patch14; world for the world].")] = None,
    neutral: Annotated[str, typer.Option("--neutral", help="What replaces S* in the text the CLIP reads.")] = "a person",
    shard: Annotated[str | None, typer.Option("--shard", metavar="I/N|auto", help="Generate only shard I of N; "
                                              "then run without --shard to score and report.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images rendered at once.")] = 4,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    allow_download: AllowDownloadOption = False,
    backend: BackendOption = "auto",
    insightface_root: InsightfaceRootOption = None,
    insightface_pack: PackOption = None,
    detection_size: DetectionSizeOption = None,
    max_pixels: MaxPixelsOption = None,
    json_output: JsonOption = False,
) -> None:
    """Generate n images per (face, prompt) with each method or checkpoint, then score them.

    Face similarity: the cosine of identity embeddings between the reference and the largest face
    of each image (ArcFace through insightface, dlib without a pack, the world's recogniser on the
    world; not comparable across backends); images without a face count in the no-face rate and,
    as 0, in the strict similarity. Text alignment: CLIP image-text cosine with S* replaced by
    --neutral. On the world's models, also the ground-truth context check: the share of asked
    attributes the image shows (read by the world's context classifier, no text model), and how
    often it shows the reference photo's value where the prompt asked another (context copied).
    With --fuse-folders a folder is one person (a folder of folders, a person per folder): every
    image is generated from all its photos, and face similarity is the cosine with the mean of
    their unit embeddings.
    Means come with 95% bootstrap intervals. Writes results.csv, results.json (also per
    prompt and per identity), scores.jsonl, contact-sheet.png and scatter.png into --out; images go
    to --out/images through batch's manifest, so an interrupted evaluation resumes.
    """
    from ..evaluate.prompts import load_prompts
    from ..evaluate.run import references_from, run_evaluation, variants_from
    from ..jobs import parse_shard

    human = not json_output
    if (faces is None) == (images is None):
        raise typer.BadParameter("give either --faces (generate and score) or --images (score what is there)",
                                 param_hint="'--faces'")
    if images is not None:
        from ..evaluate.run import run_on_images

        result = run_on_images(out, images, backend=backend, clip=clip, neutral=neutral, seed=seed,
                               allow_download=allow_download, max_pixels=max_pixels,
                               analyzer_options=analyzer_options(insightface_root, insightface_pack, detection_size),
                               on_note=note if human else None, identity_photos=identity_photos)
        _show(result, out, json_output, "images in " + str(images))
        return
    people = references_from([str(entry) for entry in faces], fuse_folders=fuse_folders)
    if not people:
        raise typer.BadParameter("no photo found", param_hint="'--faces'")
    for name in method or []:
        if name not in METHODS:
            raise typer.BadParameter(f"'{name}' is not one of {', '.join(METHODS)}", param_hint="'--method'")
    variants = variants_from(list(method or []), list(encoder or []), list(identity_start or []),
                             list(negative_branch or []))
    prompt_list = load_prompts(prompts)
    total = len(variants) * len(people) * len(prompt_list) * num_images * steps
    with interruptible("every finished image is kept; run the same command again to resume"), \
            progress_bar("Evaluating", total=total, enabled=human) as advance:
        result = run_evaluation(
            out, people, prompt_list, variants, model=model, num_images=num_images, seed=seed, steps=steps,
            guidance=guidance, backend=backend,
            analyzer_options=analyzer_options(insightface_root, insightface_pack, detection_size, model),
            clip=clip, neutral=neutral, shard=parse_shard(shard), batch_size=batch_size, device=device, dtype=dtype,
            allow_download=allow_download, max_pixels=max_pixels, on_step=advance, on_note=note if human else None,
            identity_photos=identity_photos)
    _show(result, out, json_output, f"{model}, {len(people)} faces x {len(prompt_list)} prompts x {num_images} images")
    if result.failed:
        from ._common import print_error

        print_error(f"{len(result.failed)} generation jobs failed (the first: {next(iter(result.failed.values()))}); "
                    f"see {out / 'images'}")
        raise typer.Exit(1)


def _show(result, out: Path, json_output: bool, what: str) -> None:
    from ..evaluate.report import json_safe, table_header, table_rows

    if json_output:
        print_json({"out": str(out), "scored": result.scored, "generated": result.generated, "failed": result.failed,
                    "results": json_safe(result.summaries.get("variant", [])),
                    "files": {k: str(v) for k, v in result.paths.items()}})
        return
    if not result.scored:
        return
    from rich import box
    from rich.table import Table

    console = stdout_console()
    summary = result.summaries["variant"]
    header, rows = table_header(summary), table_rows(summary, "variant")
    # a terminal too narrow for the intervals gets the means whole rather than every cell cut short
    # (headings wrap at their words; cells never wrap)
    def widths(rows: list[list[str]]) -> list[int]:
        columns = zip([max(map(len, h.split()), default=0) for h in header], *[[len(c) for c in r] for r in rows])
        return [max(column) for column in columns]

    intervals = sum(widths(rows)) + 2 * (len(header) - 1) <= console.width
    if not intervals:
        rows = table_rows(summary, "variant", intervals=False)
    title = "means, 95% intervals" if intervals else "means; the 95% intervals are in results.csv"
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=f"faceid evaluate: {what} ({title})", title_justify="left")
    for index, (heading, least) in enumerate(zip(header, widths(rows))):
        table.add_column(heading, min_width=least, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(f"reports in {out}: " + ", ".join(sorted(p.name for p in result.paths.values())))
