"""The one image loader every command uses, and atomic saving.

``load_image`` turns whatever a user hands us into an upright 8-bit RGB ``PIL.Image``: EXIF
orientation applied, colour profiles converted to sRGB where Pillow's LittleCMS can, transparency
flattened onto white, 16-bit and float images scaled (not clipped) to 8 bits, the first frame of an
animation, and a pixel limit checked from the header *before* anything is decoded. Every failure is
an :class:`~faceid_cli.errors.ImageError` naming the file and what to do.
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, InvalidArgumentError

DEFAULT_MAX_PIXELS = 50_000_000
from .config import MAX_PIXELS_ENV
READABLE_FORMATS = "JPEG, PNG, WebP, GIF, BMP or TIFF"
_HAS_ALPHA = {"RGBA", "RGBa", "LA", "La", "PA"}


#: the file endings faceid takes for images when it looks through a folder
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def expand_photos(specs, base: Path | None = None, what: str = "photo entry") -> list[Path]:
    """Folders (every image inside, recursively), globs and files, sorted and without repeats."""
    found: dict[Path, None] = {}
    for spec in specs:
        path = Path(spec).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        if path.is_dir():
            matches = [p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
        elif any(ch in str(path) for ch in "*?["):
            matches = [Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).suffix.lower() in IMAGE_SUFFIXES]
        elif path.is_file():
            matches = [path]
        else:
            raise InvalidArgumentError(f"{what} '{spec}' does not exist",
                                       "give a folder, a glob or a file of face photos")
        for match in sorted(matches):
            found.setdefault(match, None)
    return list(found)


def face_photos(source: str | os.PathLike) -> list[str]:
    """FACE as photos: a folder gives every image inside it (one person's photos, to be fused),
    anything else is itself."""
    path = Path(source)
    if not path.is_dir():
        return [str(source)]
    photos = expand_photos([str(path)], what="face folder")
    if not photos:
        raise InvalidArgumentError(f"folder '{source}' holds no photo", "put photos of the person in it (png, jpg, webp, ...)")
    return [str(photo) for photo in photos]


def default_max_pixels() -> int:
    """The pixel limit: ``$FACEID_MAX_PIXELS`` if set, else 50 megapixels."""
    raw = os.environ.get(MAX_PIXELS_ENV)
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(raw))
    except ValueError:
        value = 0
    if value <= 0:
        raise InvalidArgumentError(
            f"{MAX_PIXELS_ENV}={raw!r} is not a positive number of pixels", "unset it or use e.g. 100000000"
        )
    return value


def load_image(path: str | os.PathLike, *, max_pixels: int | None = None) -> Image.Image:
    """Read ``path`` as an upright 8-bit RGB image, or raise ``ImageError`` saying why not."""
    path = Path(path)
    limit = default_max_pixels() if max_pixels is None else max_pixels
    if not path.exists():
        raise ImageError(f"image '{path}' does not exist", "check the path")
    if path.is_dir():
        raise ImageError(f"'{path}' is a directory, not an image", "pass an image file")
    if not os.access(path, os.R_OK):
        raise ImageError(f"cannot read '{path}': permission denied", "check the file's permissions")
    if path.stat().st_size == 0:
        raise ImageError(f"image '{path}' is empty (0 bytes)", "re-export or re-download it")

    with warnings.catch_warnings():
        # Our own limit below replaces Pillow's warning; its hard error is mapped to ours.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(path)
        except Image.DecompressionBombError:
            raise _too_large(path, None, limit) from None
        except UnidentifiedImageError:
            raise ImageError(
                f"'{path}' is not an image faceid can read", f"use a {READABLE_FORMATS} file"
            ) from None
        except OSError as exc:
            raise ImageError(f"cannot read image '{path}': {exc}", "check the file") from None

    with image:
        width, height = image.size
        if width * height > limit:
            raise _too_large(path, (width, height), limit)
        if width == 0 or height == 0:
            raise ImageError(f"image '{path}' has no pixels ({width}x{height})", "use another file")
        try:
            image.seek(0)
            image.load()
            upright = ImageOps.exif_transpose(image)
            return to_rgb(upright)
        except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
            reason = str(exc).strip() or type(exc).__name__
            raise ImageError(
                f"image '{path}' is truncated or corrupt ({reason})", "re-export or re-download it"
            ) from None


def _too_large(path: Path, size: tuple[int, int] | None, limit: int) -> ImageError:
    what = f"{size[0]}x{size[1]} ({size[0] * size[1] / 1e6:.1f} megapixels)" if size else "too large"
    return ImageError(
        f"image '{path}' is {what}, over the limit of "
        + (f"{limit / 1e6:g} megapixels" if limit >= 1_000_000 else f"{limit:,} pixels"),
        f"downscale it, or raise the limit with --max-pixels or {MAX_PIXELS_ENV}",
    )


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB without clipping high bit depths."""
    mode = image.mode
    if mode.startswith("I;16") or mode in {"I", "F"}:
        return _high_bit_depth_to_rgb(image)
    image = _to_srgb(image)
    if image.mode in _HAS_ALPHA or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _high_bit_depth_to_rgb(image: Image.Image) -> Image.Image:
    import numpy as np

    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        top = 1.0 if values.size and float(np.nanmax(values)) <= 1.0 else 255.0
    elif image.mode.startswith("I;16") or (values.size and values.max() > 255):
        top = 65535.0
    else:
        top = 255.0
    grey = np.clip(np.nan_to_num(values) * (255.0 / top), 0, 255).round().astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def _to_srgb(image: Image.Image) -> Image.Image:
    """Apply an embedded ICC profile (CMYK print files, Display P3 phone photos) when possible."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in {"RGB", "RGBA", "CMYK", "L"}:
        return image if image.mode != "CMYK" else image.convert("RGB")
    try:
        from PIL import ImageCms

        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        target = ImageCms.createProfile("sRGB")
        out_mode = "RGBA" if image.mode == "RGBA" else "RGB"
        converted = ImageCms.profileToProfile(image, source, target, outputMode=out_mode)
        return converted if converted is not None else image
    except Exception:  # a broken profile must not make a readable photo unreadable
        return image.convert("RGB") if image.mode == "CMYK" else image


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (identity files record their sources by it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def new_file_mode() -> int:
    """0o666 less the process umask: the mode ``open(path, "w")`` would give a new file."""
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only if the block succeeds.

    A crash or kill leaves at most a hidden ``.NAME.*.part`` file, never a half-written ``NAME``.
    The file gets the mode the user's umask gives any new file (``mkstemp`` makes it 0600, which
    would hide outputs from the group in a shared folder).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_image(image: Image.Image, path: str | os.PathLike, **save_kwargs) -> Path:
    """Save atomically; the format follows the suffix of ``path``."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise InvalidArgumentError(f"cannot save '{path}': unknown image extension", "use .png or .jpg")
    with atomic_output(path) as tmp:
        image.save(tmp, format=fmt, **save_kwargs)
    return path
