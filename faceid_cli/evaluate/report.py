"""``faceid evaluate``'s reports: the Table-1 layout, CSV and JSON, per-image scores, and the
face-similarity against text-alignment scatter plot (drawn with Pillow, like the contact sheets)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

#: one colour per method or checkpoint, in order of appearance
PALETTE = ((200, 50, 50), (40, 100, 200), (40, 150, 60), (210, 140, 20), (140, 60, 170), (30, 160, 170),
           (120, 120, 120), (200, 80, 160))


def json_safe(value):
    """The same document with NaN (a mean over no values) as null: strict JSON readers refuse NaN."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


#: the table's heading of each optional figure (:data:`.metrics.OPTIONAL_FIGURES`)
OPTIONAL_HEADINGS = {"identity_similarity": "other photos sim.", "context": "context shown",
                     "context_copied": "reference copied"}


def _optional(summary: Sequence[dict]) -> list[str]:
    """The optional figures this summary holds (--identity-photos; the world's context check)."""
    from .metrics import OPTIONAL_FIGURES

    return [name for name in OPTIONAL_FIGURES if any(name in entry for entry in summary)]


def table_header(summary: Sequence[dict]) -> list[str]:
    """The columns of :func:`table_rows` (--identity-photos and the world's context check add theirs)."""
    header = ["", "text alignment", "face similarity", "face sim. (no face = 0)", "no face", "encode", "images"]
    header[-1:-1] = [OPTIONAL_HEADINGS[name] for name in _optional(summary)]
    return header


def table_rows(summary: Sequence[dict], key: str, intervals: bool = True) -> list[list[str]]:
    """Rows of the paper's Table 1: name, text alignment, face similarity, strict face similarity,
    no-face rate, encode time (and the optional figures: other photos, on the world context shown
    as asked and reference context copied); means with their 95% intervals (or means alone)."""

    def interval(figure: dict | None) -> str:
        if not figure or figure["mean"] is None or figure["mean"] != figure["mean"]:  # NaN: no value
            return "-"
        if not intervals:
            return f"{figure['mean']:.3f}"
        return f"{figure['mean']:.3f} [{figure['low']:.3f}, {figure['high']:.3f}]"

    optional = _optional(summary)
    rows = []
    for entry in summary:
        seconds = entry.get("encode_seconds")
        row = [str(entry[key]), interval(entry["text_alignment"]), interval(entry["face_similarity"]),
               interval(entry["face_similarity_strict"]), f"{entry['no_face_rate']:.3f}",
               "-" if seconds is None else f"{seconds:.3f} s"]
        row += [interval(entry.get(name)) for name in optional]
        rows.append(row + [str(entry["images"])])
    return rows


def csv_text(summary: Sequence[dict], key: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    optional = _optional(summary)
    writer.writerow([key, "images", "text_alignment", "text_alignment_low", "text_alignment_high", "face_similarity",
                     "face_similarity_low", "face_similarity_high", "face_similarity_strict", "no_face_rate",
                     "encode_seconds", *optional])
    for entry in summary:
        extra = [(entry.get(name) or {}).get("mean") for name in optional]
        writer.writerow([entry[key], entry["images"], *(entry["text_alignment"][k] for k in ("mean", "low", "high")),
                         *(entry["face_similarity"][k] for k in ("mean", "low", "high")),
                         entry["face_similarity_strict"]["mean"], entry["no_face_rate"], entry["encode_seconds"], *extra])
    return out.getvalue()


def write_reports(out: Path, rows: Sequence[dict], summaries: dict[str, list[dict]], key: str) -> dict[str, Path]:
    """``scores.jsonl`` (one line per image), ``results.json`` (every summary) and ``results.csv``
    (the main table), each written atomically."""
    from ..images import atomic_output

    out.mkdir(parents=True, exist_ok=True)
    paths = {"scores": out / "scores.jsonl", "json": out / "results.json", "csv": out / "results.csv"}
    with atomic_output(paths["scores"]) as tmp:
        tmp.write_text("".join(json.dumps(json_safe(row), sort_keys=True) + "\n" for row in rows), encoding="utf-8")
    with atomic_output(paths["json"]) as tmp:
        tmp.write_text(json.dumps(json_safe(summaries), indent=2, sort_keys=True, allow_nan=False) + "\n",
                       encoding="utf-8")
    with atomic_output(paths["csv"]) as tmp:
        tmp.write_text(csv_text(summaries[key], key), encoding="utf-8")
    return paths


def scatter_plot(rows: Sequence[dict], key: str, path: Path, size: tuple[int, int] = (640, 480)) -> Path:
    """Face similarity (y) against text alignment (x), one colour per ``key`` value, with each
    group's mean as a large marker: the trade-off the papers argue about, in one picture."""
    from ..contact_sheet import _font
    from ..images import save_image

    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = _font(12)
    left, right, top, bottom = 60, width - 20, 40, height - 45
    draw.rectangle([left, top, right, bottom], outline=(120, 120, 120))
    points = [(r["text_alignment"], r["face_similarity"], r[key]) for r in rows
              if r.get("face_similarity") is not None and r.get("text_alignment") is not None]
    groups = list(dict.fromkeys(r[key] for r in rows))
    if points:
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        x_low, x_high = min(xs), max(xs)
        y_low, y_high = min(min(ys), 0.0), max(max(ys), 1.0) if max(ys) > 0.5 else max(ys)
        x_span, y_span = (x_high - x_low) or 1.0, (y_high - y_low) or 1.0

        def at(x, y):
            return left + (x - x_low) / x_span * (right - left), bottom - (y - y_low) / y_span * (bottom - top)

        for x, y, group in points:
            cx, cy = at(x, y)
            colour = PALETTE[groups.index(group) % len(PALETTE)]
            draw.ellipse([cx - 2.5, cy - 2.5, cx + 2.5, cy + 2.5], fill=colour)
        legend = left
        for index, group in enumerate(groups):
            mine = [(x, y) for x, y, g in points if g == group]
            colour = PALETTE[index % len(PALETTE)]
            if mine:
                cx, cy = at(sum(p[0] for p in mine) / len(mine), sum(p[1] for p in mine) / len(mine))
                draw.rectangle([cx - 6, cy - 6, cx + 6, cy + 6], outline=(0, 0, 0), fill=colour)
            draw.text((legend, 12), str(group), fill=colour, font=font)
            legend += draw.textlength(str(group), font=font) + 18
        for value, anchor in ((x_low, "left"), (x_high, "right")):
            text = f"{value:.3f}"
            x = left if anchor == "left" else right - draw.textlength(text, font=font)
            draw.text((x, bottom + 6), text, fill=(60, 60, 60), font=font)
        draw.text(((left + right) / 2 - 40, bottom + 22), "text alignment", fill=(0, 0, 0), font=font)
        draw.text((4, top), f"{y_high:.2f}", fill=(60, 60, 60), font=font)
        draw.text((4, bottom - 12), f"{y_low:.2f}", fill=(60, 60, 60), font=font)
        draw.text((4, (top + bottom) / 2), "face sim.", fill=(0, 0, 0), font=font)
    save_image(image, path)
    return path
