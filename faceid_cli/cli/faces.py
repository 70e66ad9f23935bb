"""``faceid detect`` and ``faceid compare``: face analysis from the shell."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import (
    BackendOption,
    DetectionSizeOption,
    InsightfaceRootOption,
    JsonOption,
    MaxPixelsOption,
    PackOption,
    analyzer_options,
    new_app,
    note,
    print_error,
    print_json,
    progress,
    stdout_console,
)

app = new_app()

ImagesArgument = Annotated[
    list[Path],
    typer.Argument(exists=True, dir_okay=False, show_default=False, metavar="IMAGE",
                   help="Photos to search (JPEG, PNG, WebP, GIF, BMP, TIFF)."),
]
ImageArgument = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, show_default=False)
]


@app.command()
def detect(
    images: ImagesArgument,
    save_crops: Annotated[
        Path | None,
        typer.Option("--save-crops", file_okay=False,
                     help="Write every face, aligned to the ArcFace template, as DIR/NAME_faceN.png."),
    ] = None,
    crop_size: Annotated[
        int, typer.Option("--crop-size", min=16, max=2048,
                          help="Side of the aligned crops in pixels (112 is ArcFace's; 224, 448, ...).")
    ] = 112,
    json_output: JsonOption = False,
    backend: BackendOption = "auto",
    insightface_root: InsightfaceRootOption = None,
    insightface_pack: PackOption = None,
    detection_size: DetectionSizeOption = None,
    max_pixels: MaxPixelsOption = None,
) -> None:
    """Find the faces in photos: box, score, five landmarks and size.

    Faces are listed largest first and numbered from 0: these are the numbers that --face-index takes
    elsewhere (0, the largest face, is the default). Exits 1 if an image cannot be read or has
    no face; the other images are still reported.
    """
    from ..errors import ImageError
    from ..faces import align_face, load_analyzer
    from ..images import load_image, save_image

    analyzer = load_analyzer(backend, analyzer_options(insightface_root, insightface_pack, detection_size))
    if not json_output:
        note(f"face backend: {analyzer.description}")
    results, failures, crop_names = [], [], set()
    for path in progress(images, "Detecting faces", total=len(images), enabled=not json_output):
        entry: dict = {"path": str(path)}
        results.append(entry)
        try:
            image = load_image(path, max_pixels=max_pixels)
        except ImageError as exc:
            entry.update(error=str(exc), faces=[])
            failures.append(str(exc))
            continue
        faces = analyzer.detect(image)
        entry.update(width=image.width, height=image.height,
                     faces=[{"index": i, **face.to_dict()} for i, face in enumerate(faces)])
        if not faces:
            failures.append(f"no face found in '{path}'")
        if save_crops is not None:
            stem = _unique_stem(path.stem, crop_names)
            for i, face in enumerate(faces):
                crop_path = save_image(align_face(image, face.landmarks, crop_size),
                                       save_crops / f"{stem}_face{i}.png")
                entry["faces"][i]["crop"] = str(crop_path)

    if json_output:
        print_json({"images": results, "backend": analyzer.name})
    else:
        _print_detections(results)
    for failure in failures:
        print_error(failure)
    if failures:
        raise typer.Exit(1)


def _unique_stem(stem: str, used: set[str]) -> str:
    candidate, n = stem, 1
    while candidate in used:
        n += 1
        candidate = f"{stem}-{n}"
    used.add(candidate)
    return candidate


def _print_detections(results: list[dict]) -> None:
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("image", "face", "box (x1, y1, x2, y2)", "size", "score"):
        table.add_column(column, justify="right" if column in ("face", "size", "score") else "left")
    for entry in results:
        if not entry["faces"]:
            table.add_row(entry["path"], "-", "unreadable" if "error" in entry else "no face", "", "")
        for face in entry["faces"]:
            box = ", ".join(f"{v:.0f}" for v in face["bbox"])
            table.add_row(entry["path"], str(face["index"]), box, f"{face['size']:.0f}",
                          f"{face['score']:.2f}")
    stdout_console().print(table)


@app.command()
def compare(
    image_a: ImageArgument,
    image_b: ImageArgument,
    face_index: Annotated[
        int, typer.Option("--face-index", min=0,
                          help="Which face to use in both photos, largest first (see detect).")
    ] = 0,
    face_index_a: Annotated[
        int | None, typer.Option("--face-index-a", min=0, help="Face to use in IMAGE_A only.")
    ] = None,
    face_index_b: Annotated[
        int | None, typer.Option("--face-index-b", min=0, help="Face to use in IMAGE_B only.")
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option("--threshold", min=-1.0, max=1.0,
                     help="Similarity at or above which the verdict is 'same person' "
                     "[default: the backend's: dlib 0.905, insightface 0.32]."),
    ] = None,
    json_output: JsonOption = False,
    backend: BackendOption = "auto",
    insightface_root: InsightfaceRootOption = None,
    insightface_pack: PackOption = None,
    detection_size: DetectionSizeOption = None,
    max_pixels: MaxPixelsOption = None,
) -> None:
    """Say whether two photos show the same person.

    Prints the cosine similarity of the two faces' identity embeddings, the backend's threshold
    and the verdict. The largest face of each photo is used unless --face-index says otherwise.
    Exits 0 whatever the verdict; 1 when a photo is unreadable or has no face.
    """
    from ..faces import cosine_similarity, load_analyzer
    from ..images import load_image

    analyzer = load_analyzer(backend, analyzer_options(insightface_root, insightface_pack, detection_size))
    if not json_output:
        note(f"face backend: {analyzer.description}")
    picked = []
    for path, index in ((image_a, face_index_a), (image_b, face_index_b)):
        index = face_index if index is None else index
        face = analyzer.identity(load_image(path, max_pixels=max_pixels), index, str(path))
        picked.append({"path": str(path), "face_index": index, "bbox": face.to_dict()["bbox"],
                       "embedding": face.embedding})
    similarity = cosine_similarity(picked[0].pop("embedding"), picked[1].pop("embedding"))
    limit = analyzer.same_person_threshold if threshold is None else threshold
    same = similarity >= limit
    if json_output:
        print_json({"similarity": round(similarity, 6), "same_person": bool(same),
                    "threshold": limit, "backend": analyzer.name, "faces": picked})
        return
    verdict = "[bold green]same person[/]" if same else "[bold red]different people[/]"
    stdout_console().print(
        f"{verdict}  similarity {similarity:.3f} (threshold {limit:g}, {analyzer.name})"
    )
