"""Training data for the M² encoder: reconstruction photos and self-augmented editing triplets.

Every item gives the encoder an aligned face crop, the diffusion model a target picture at the
training resolution, and a caption with ``S*``:

- *reconstruction*: a face photo (FFHQ-like) is its own target; the caption is drawn from
  templates ("a photo of S*", ...), or with ``data.captions = "metadata"`` is the photo's own, read
  from a ``metadata.jsonl`` (or ``metadata.csv``) beside it or in a folder above it, the layout of
  Hugging Face's ``imagefolder`` (``file_name`` relative to that file, the caption in
  ``data.caption_column``) with ``S*`` where the person is named;
- *triplet*: a line of the manifest ``faceid selfaug`` writes: the identity face, the editing
  prompt with ``S*``, and the edited image as the target.

Faces are detected and aligned once, and the crop and target are cached as PNGs under the cache
folder (named by the file's content hash and the settings), with an index; a second epoch or a
second run reads the cache. A photo that cannot be read, has no face, or (captioned) has no caption
naming ``S*`` is counted and reported with its reason, never fatal.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import FaceIDError, InvalidArgumentError
from .config import METADATA_NAMES

INDEX_NAME = "index.jsonl"
#: part of every cache key: entries written by an older layout are prepared again, not misread
#: (2: the target is the square around the face, and each entry records the face box in it)
CACHE_VERSION = 2


@dataclass(frozen=True)
class Source:
    """One raw item before preprocessing."""

    kind: str  # "reconstruction" or "triplet"
    face: Path
    target: Path
    prompt: str | None = None  # the triplet's editing prompt, or a captioned photo's caption; else templates
    skipped: str | None = None  # why the source is unusable before it is read (no caption)


@dataclass
class Prepared:
    """What preprocessing made of the sources: cached items, and what was skipped and why."""

    # {"kind", "crop", "target", "prompt", "source", "target_box"}
    items: list[dict] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason → count
    examples: dict = field(default_factory=dict)  # reason → one file that had it

    def summary(self) -> dict:
        kinds = Counter(item["kind"] for item in self.items)
        return {"items": len(self.items), "by_kind": dict(kinds), "skipped": dict(self.skipped),
                "skipped_examples": dict(self.examples)}


def read_triplets(manifests: list[str], base: Path | None = None) -> list[Source]:
    """The kept triplets of ``faceid selfaug`` manifests (JSON lines with ``face``, ``prompt`` and
    ``image``; relative paths are relative to the manifest)."""
    sources = []
    for spec in manifests:
        path = Path(spec).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise InvalidArgumentError(f"cannot read triplet manifest '{path}': {exc.strerror}", "check the path") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                face, prompt, image = record["face"], record["prompt"], record["image"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise InvalidArgumentError(f"{path}:{number} is not a triplet (face, prompt, image)",
                                           "use a manifest written by 'faceid selfaug'") from None
            sources.append(Source("triplet", path.parent / face, path.parent / image, prompt))
    return sources


def captioned_sources(photos: list[Path], column: str, token: str, roots: list[Path] = ()) -> list[Source]:
    """Reconstruction sources whose captions are their own: each photo's row in the nearest
    ``metadata.jsonl`` / ``metadata.csv`` of its folder or a folder above it up to the data folder
    it was found in (one of ``roots``; a photo named on its own looks only beside itself), with
    ``file_name`` relative to that file and the caption in ``column``, as Hugging Face's
    imagefolder lays them out. A photo with no metadata file, no row, an empty caption or one
    without ``token`` is a source skipped with that reason."""
    roots = [_absolute(root) for root in roots]
    tables: dict[Path, dict[Path, str]] = {}

    def table(folder: Path) -> dict[Path, str] | None:
        if folder not in tables:
            found = next((folder / name for name in METADATA_NAMES if (folder / name).is_file()), None)
            tables[folder] = None if found is None else _read_metadata(found, column)
        return tables[folder]

    sources = []
    for photo in photos:
        path = _absolute(photo)
        top = max((root for root in roots if root in path.parents), key=lambda root: len(root.parts),
                  default=path.parent)
        folders = [path.parent, *(folder for folder in path.parent.parents if top in (folder, *folder.parents))]
        captions = next((found for found in map(table, folders) if found is not None), None)
        caption = None if captions is None else captions.get(path)
        reason = None
        if captions is None:
            reason = "no metadata file"
        elif not caption:
            reason = "no caption"
        elif token not in caption:
            reason = f"caption without {token}"
        sources.append(Source("reconstruction", photo, photo, caption if reason is None else None, reason))
    return sources


def _absolute(path) -> Path:
    """An absolute, normalised path that keeps symbolic links: a photo linked into a captioned
    folder is captioned there, as it is listed."""
    return Path(os.path.abspath(os.path.expanduser(path)))


def _read_metadata(path: Path, column: str) -> dict[Path, str]:
    """{absolute image path: caption} of one imagefolder metadata file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"cannot read caption file '{path}': {exc}", "check the file") from None
    if path.suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))  # quoted captions may hold commas and newlines
        numbered = [(reader.line_num, row) for row in reader]
    else:
        numbered = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                numbered.append((number, json.loads(line)))
            except json.JSONDecodeError:
                raise InvalidArgumentError(f"{path}:{number} is not a JSON line",
                                           'write one {"file_name": ..., "' + column + '": ...} object a line') from None
    captions = {}
    for number, row in numbered:
        if not isinstance(row, dict) or "file_name" not in row:
            raise InvalidArgumentError(f"{path}:{number} has no file_name", "name each picture relative to the file")
        if column not in row:
            raise InvalidArgumentError(f"{path}:{number} has no '{column}' column",
                                       f"columns there: {', '.join(sorted(row))}; set data.caption_column")
        captions[_absolute(path.parent / str(row["file_name"]))] = str(row[column] or "").strip()
    return captions


def cache_key(source: Source, crop_size: int, crop_zoom: float, resolution: int, backend: str) -> str:
    digest = hashlib.sha256()
    for part in (CACHE_VERSION, source.kind, _file_digest(source.face), _file_digest(source.target), source.prompt or "",
                 crop_size, crop_zoom, resolution, backend):
        digest.update(str(part).encode("utf-8") + b"\0")
    return digest.hexdigest()[:24]


def _file_digest(path: Path) -> str:
    try:
        stat = path.stat()
    except OSError:
        return f"missing:{path}"
    # size and mtime stand in for the bytes: hashing 70k photos on every start would be slow
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def square_around(size: tuple[int, int], box=None) -> tuple[int, int, int]:
    """(left, top, side) of the training target's square in an image of ``size``: the largest
    square, centred on the face box where the image leaves room (a portrait photo's centre is often
    its chest), else on the image."""
    width, height = size
    side = min(width, height)
    if box is None:
        centre_x, centre_y = width / 2, height / 2
    else:
        centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    left = int(round(min(max(centre_x - side / 2, 0), width - side)))
    top = int(round(min(max(centre_y - side / 2, 0), height - side)))
    return left, top, side


def target_square(image: Image.Image, resolution: int, box=None) -> Image.Image:
    """The training target: :func:`square_around` the face box, resized to ``resolution``."""
    left, top, side = square_around(image.size, box)
    square = image.crop((left, top, left + side, top + side))
    return square.resize((resolution, resolution), Image.Resampling.BICUBIC, reducing_gap=3.0)


def box_in_target(box, size: tuple[int, int], resolution: int) -> list[float]:
    """A face box (x1, y1, x2, y2) of an image of ``size`` in the pixels of its
    :func:`target_square` around that box, clipped to it."""
    left, top, side = square_around(size, box)
    scale = resolution / side
    x1, y1, x2, y2 = ((v - offset) * scale for v, offset in zip(box, (left, top, left, top)))
    return [round(min(max(v, 0.0), float(resolution)), 3) for v in (x1, y1, x2, y2)]


def prepare(sources: list[Source], analyzer, crop_size: int, crop_zoom: float, resolution: int, cache_dir: Path,
            progress=None) -> Prepared:
    """Detect, align and cache every source once; later calls read the cache."""
    from ..faces import align_face
    from ..images import load_image, save_image

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    known = _read_index(cache_dir / INDEX_NAME)
    prepared = Prepared()
    new_lines = []
    for source in sources:
        if source.skipped:  # known before reading: never cached, a caption may be added later
            prepared.skipped[source.skipped] += 1
            prepared.examples.setdefault(source.skipped, str(source.face))
            if progress:
                progress()
            continue
        key = cache_key(source, crop_size, crop_zoom, resolution, analyzer.name)
        entry = known.get(key)
        if entry is None:
            entry = {"key": key, "kind": source.kind, "source": str(source.face), "prompt": source.prompt}
            try:
                image = load_image(source.face)
                faces = analyzer.detect(image)
                if not faces:
                    entry["skipped"] = "no face found"
                else:
                    crop = align_face(image, faces[0].landmarks, crop_size, crop_zoom)
                    if source.target == source.face:
                        target_image, target_faces = image, faces
                    else:  # an edited image: its face is where the edit drew it
                        target_image = load_image(source.target)
                        target_faces = analyzer.detect(target_image)
                    # the largest face: the person the photo is of (None: the loss weighs it evenly)
                    largest = max(target_faces, key=lambda f: f.width * f.height, default=None)
                    box = None if largest is None else largest.bbox
                    save_image(crop, cache_dir / f"{key}-crop.png")
                    save_image(target_square(target_image, resolution, box), cache_dir / f"{key}-target.png")
                    entry["target_box"] = None if box is None else box_in_target(box, target_image.size, resolution)
            except FaceIDError as exc:  # unreadable, corrupt, too large: the loader's one-line reason
                entry["skipped"] = _reason(exc)
            new_lines.append(entry)
            known[key] = entry
        if progress:
            progress()
        if "skipped" in entry:
            prepared.skipped[entry["skipped"]] += 1
            prepared.examples.setdefault(entry["skipped"], entry["source"])
            continue
        prepared.items.append({"kind": entry["kind"], "crop": cache_dir / f"{key}-crop.png",
                               "target": cache_dir / f"{key}-target.png", "prompt": entry["prompt"],
                               "source": entry["source"], "target_box": entry.get("target_box")})
    if new_lines:
        index = cache_dir / INDEX_NAME
        with open(index, "a", encoding="utf-8") as handle:
            for line in new_lines:
                handle.write(json.dumps(line) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    return prepared


def _reason(exc: FaceIDError) -> str:
    """A short, countable reason: the kind of failure without the file name."""
    name = type(exc).__name__
    return {"ImageError": "unreadable image", "NoFaceError": "no face found"}.get(name, name)


def _read_index(path: Path) -> dict[str, dict]:
    entries = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                entries[entry["key"]] = entry
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut off by a kill: that item is simply prepared again
    return entries


class TrainingSet(torch.utils.data.Dataset):
    """Cached items as tensors: the encoder's crop (3, c, c), the target in [-1, 1], and the face
    box in the target's pixels (NaN where it has no face)."""

    def __init__(self, items: list[dict], preprocess):
        self.items = items
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        with Image.open(item["crop"]) as crop:
            pixels = self.preprocess(crop.convert("RGB"))
        with Image.open(item["target"]) as target:
            array = np.asarray(target.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
        box = item.get("target_box")
        face_box = torch.tensor(box if box is not None else [float("nan")] * 4, dtype=torch.float32)
        return {"crop": pixels, "target": torch.from_numpy(array).permute(2, 0, 1).contiguous(), "face_box": face_box,
                "index": index}


def caption_for(item: dict, templates: list[str], rng: np.random.Generator) -> str:
    """The item's own caption (a triplet's prompt, a captioned photo's), or a template drawn with
    ``rng`` for a reconstruction photo without one."""
    if item["kind"] == "triplet" or item["prompt"]:
        return item["prompt"]
    return templates[int(rng.integers(len(templates)))]
