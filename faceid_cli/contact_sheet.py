"""Contact sheets: a grid of images with short captions, so a person can judge a run at a glance
(the demo, ``selfaug``'s kept and rejected edits, ``evaluate``'s generations with their scores)."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int, max_lines: int) -> list[str]:
    """Words wrapped to ``width``; a newline in ``text`` always starts a new line."""
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}".strip()
            if draw.textlength(candidate, font=font) <= width or not line:
                line = candidate
            else:
                lines.append(line)
                line = word
        if line:
            lines.append(line)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1].rstrip(".") + "…"
    return lines


def contact_sheet(rows: Sequence[Sequence[Image.Image | None]], captions: Sequence[Sequence[str]] | None = None,
                  *, cell: int = 160, caption_lines: int = 3, title: str | None = None, font_size: int = 12) -> Image.Image:
    """A white sheet with one row per entry of ``rows`` and a caption under every image.

    Images are scaled to ``cell`` px on their long side (small images with nearest-neighbour, so
    pixels stay visible); ``None`` leaves a cell empty.
    """
    font = _font(font_size)
    line_height = font_size + 3
    columns = max((len(r) for r in rows), default=1)
    pad = 6
    text_height = line_height * caption_lines if captions else 0
    title_height = line_height + pad if title else 0
    sheet = Image.new("RGB", (pad + columns * (cell + pad), title_height + pad + len(rows) * (cell + text_height + pad)),
                      BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, pad), title, fill=TEXT, font=font)
    for r, row in enumerate(rows):
        top = title_height + pad + r * (cell + text_height + pad)
        for c, image in enumerate(row):
            left = pad + c * (cell + pad)
            if image is not None:
                image = image.convert("RGB")
                scale = cell / max(image.size)
                size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
                resample = Image.Resampling.NEAREST if scale >= 2 else Image.Resampling.LANCZOS
                sheet.paste(image.resize(size, resample), (left + (cell - size[0]) // 2, top + (cell - size[1]) // 2))
            if captions and r < len(captions) and c < len(captions[r]) and captions[r][c]:
                for k, line in enumerate(_wrap(draw, captions[r][c], font, cell, caption_lines)):
                    draw.text((left, top + cell + 1 + k * line_height), line, fill=TEXT, font=font)
    return sheet


def mosaic(images: Sequence[Image.Image], side: int = 256) -> Image.Image:
    """Up to four pictures in one square cell (2x2, each cropped to a square), for a person given by
    several photos; one picture is itself."""
    if len(images) == 1:
        return images[0]
    half = side // 2
    cell = Image.new("RGB", (side, side), BACKGROUND)
    for k, image in enumerate(images[:4]):
        image = image.convert("RGB")
        short = min(image.size)
        left, top = (image.width - short) // 2, (image.height - short) // 2
        square = image.crop((left, top, left + short, top + short)).resize((half, half), Image.Resampling.LANCZOS)
        cell.paste(square, ((k % 2) * half, (k // 2) * half))
    return cell
