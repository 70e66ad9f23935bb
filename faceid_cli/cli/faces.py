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


ComparePhotosArgument = Annotated[
    list[str],
    typer.Argument(show_default=False, metavar="PHOTO...",
                   help="Two photos or more: files, folders (every image inside) or quoted globs."),
]

#: more photos than this and the terminal shows the groups only (--json holds the whole matrix)
MATRIX_ROWS_SHOWN = 12


@app.command()
def compare(
    photos: ComparePhotosArgument,
    face_index: Annotated[
        int, typer.Option("--face-index", min=0,
                          help="Which face to use in every photo, largest first (see detect).")
    ] = 0,
    face_index_a: Annotated[
        int | None, typer.Option("--face-index-a", min=0, help="Face to use in the first photo only (two photos).")
    ] = None,
    face_index_b: Annotated[
        int | None, typer.Option("--face-index-b", min=0, help="Face to use in the second photo only (two photos).")
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
    """Say whether photos show the same person.

    Two photos: the cosine similarity of the two faces' identity embeddings, the backend's threshold
    and the verdict. More (or a folder): the similarity of every pair, and the photos grouped into
    people (average linkage: groups join while their mean similarity is at or above the threshold),
    each group with its least alike pair. Use it to check a folder of reference photos before
    'faceid generate' fuses them. The largest face of each photo is used unless --face-index says
    otherwise. Exits 0 whatever the verdict; 1 when a photo is unreadable or has no face (the others
    are still compared).
    """
    from ..errors import FaceIndexError, ImageError, InvalidArgumentError, NoFaceError
    from ..faces import load_analyzer
    from ..faces.grouping import group_by_person, similarity_matrix
    from ..images import expand_photos, load_image

    paths: list[Path] = []  # a photo given twice is compared with itself, as asked
    for spec in photos:
        found = expand_photos([spec], what="photo")
        if not found:
            raise InvalidArgumentError(f"{'folder' if Path(spec).is_dir() else 'glob'} '{spec}' holds no photo",
                                       "give photos (png, jpg, webp, ...) or a folder holding them")
        paths += found
    if len(paths) < 2:
        raise InvalidArgumentError(f"compare needs two photos or more, and '{photos[0]}' gives one",
                                   "give two files, or a folder holding several photos")
    if len(paths) > 2 and (face_index_a is not None or face_index_b is not None):
        raise InvalidArgumentError(f"--face-index-a/-b pick faces in a pair; {len(paths)} photos were given",
                                   "use --face-index for every photo, or compare two photos")
    indices = [face_index] * len(paths)
    for position, index in ((0, face_index_a), (1, face_index_b)):
        if index is not None:
            indices[position] = index
    analyzer = load_analyzer(backend, analyzer_options(insightface_root, insightface_pack, detection_size))
    if not json_output:
        note(f"face backend: {analyzer.description}")
    picked, embeddings, failures, errors = [], [], [], []
    for path, index in progress(list(zip(paths, indices)), "Comparing faces", total=len(paths),
                                enabled=not json_output and len(paths) > 2):
        try:
            face = analyzer.identity(load_image(path, max_pixels=max_pixels), index, str(path))
        except (ImageError, NoFaceError, FaceIndexError) as exc:  # this photo's fault: the others go on
            failures.append({"path": str(path), "error": str(exc)})
            errors.append(exc)
            continue
        picked.append({"path": str(path), "face_index": index, "bbox": face.to_dict()["bbox"]})
        embeddings.append(face.embedding)
    limit = analyzer.same_person_threshold if threshold is None else threshold
    if len(picked) >= 2:
        matrix = similarity_matrix(embeddings)
        groups = group_by_person(matrix, limit)
        if json_output:
            document = {"threshold": limit, "backend": analyzer.name, "faces": picked}
            if len(paths) == 2:
                document.update(similarity=round(float(matrix[0, 1]), 6), same_person=bool(matrix[0, 1] >= limit))
            document.update(matrix=[[round(float(v), 6) for v in row] for row in matrix],
                            groups=groups, failed=failures)
            print_json(document)
        elif len(paths) == 2:
            _print_verdict(float(matrix[0, 1]), limit, analyzer.name)
        else:
            _print_comparison(picked, matrix, groups, limit, analyzer.name)
    if errors:  # each on its line; the last raised, so --debug shows its traceback
        for error in errors[:-1]:
            print_error(str(error))
        raise errors[-1]


def _print_verdict(similarity: float, limit: float, backend: str) -> None:
    verdict = "[bold green]same person[/]" if similarity >= limit else "[bold red]different people[/]"
    stdout_console().print(f"{verdict}  similarity {similarity:.3f} (threshold {limit:g}, {backend})")


def _print_comparison(faces: list[dict], matrix, groups: list[list[int]], limit: float, backend: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ..faces.grouping import least_alike_pair

    console = stdout_console()
    names = [face["path"] for face in faces]
    if len(faces) <= MATRIX_ROWS_SHOWN:
        # names in the rows where they fit the terminal; else a numbered list above the matrix
        inline = 4 + max(map(len, names)) + 2 + 7 * len(faces) <= console.width
        if not inline:
            for number, name in enumerate(names, 1):
                console.print(f"{number:>3}  {escape(name)}")
        table = Table(box=None, pad_edge=False, title=f"similarity ({backend}; same person at {limit:g} or more)",
                      title_justify="left")
        table.add_column("#", justify="right", no_wrap=True)
        if inline:
            table.add_column("photo", no_wrap=True)
        for column in range(len(faces)):
            table.add_column(str(column + 1), justify="right", no_wrap=True, min_width=5)
        for row, name in enumerate(names):
            cells = ["-" if row == column else
                     (f"[green]{value:.3f}[/]" if value >= limit else f"{value:.3f}")
                     for column, value in enumerate(matrix[row])]
            table.add_row(str(row + 1), *([escape(name)] if inline else []), *cells)
        console.print(table)
    else:
        console.print(f"{len(faces)} photos: the similarities are in --json; the groups ({backend}, "
                      f"same person at {limit:g} or more):")
    people = "person" if len(groups) == 1 else "people"
    console.print(f"{len(groups)} {people} in {len(faces)} photos")
    for number, members in enumerate(groups, 1):
        listed = ", ".join(escape(names[i]) for i in members)
        pair = least_alike_pair(matrix, members)
        if pair is None:
            least = ""
        elif len(members) == 2:
            least = f" (similarity {pair[2]:.3f})"
        else:
            least = f" (least alike {escape(names[pair[0]])} and {escape(names[pair[1]])}: {pair[2]:.3f})"
        console.print(f"  person {number}: {listed}{least}")
