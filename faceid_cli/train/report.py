"""What a training run shows while it goes: validation contact sheets and the loss-curve plot.

The plot is drawn with Pillow (a few lines and axes): matplotlib is a large dependency for one
picture, and faceid already draws its contact sheets with Pillow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CURVES = {"loss": (200, 40, 40), "diffusion": (40, 90, 200), "reg": (40, 150, 60)}


def loss_plot(metrics: list[dict], path: Path, size: tuple[int, int] = (720, 360)) -> Path:
    """Each loss term against the step (its own scale: min to max of the curve), with a running
    mean over a tenth of the run; written atomically."""
    from ..contact_sheet import _font
    from ..images import save_image

    width, height = size
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = _font(12)
    left, right, top, bottom = 60, width - 20, 30, height - 40
    draw.rectangle([left, top, right, bottom], outline=(120, 120, 120))
    steps = np.array([m["step"] for m in metrics], dtype=np.float64)
    if len(steps) >= 2:
        x = left + (steps - steps[0]) / max(steps[-1] - steps[0], 1) * (right - left)
        legend = left
        for name, colour in CURVES.items():
            values = np.array([m.get(name, np.nan) for m in metrics], dtype=np.float64)
            if not np.isfinite(values).any():
                continue
            window = max(1, len(values) // 10)
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            low, high = np.nanmin(values), np.nanmax(values)
            scale = (high - low) or 1.0
            y = bottom - (smooth - low) / scale * (bottom - top)
            points = list(zip(x[window - 1:], y))
            if len(points) >= 2:
                draw.line(points, fill=colour, width=2)
            label = f"{name} {smooth[-1]:.4g} ({low:.3g}-{high:.3g})"
            draw.text((legend, 8), label, fill=colour, font=font)
            legend += draw.textlength(label, font=font) + 16
        draw.text((left, bottom + 8), f"step {int(steps[0])}", fill=(60, 60, 60), font=font)
        end = f"step {int(steps[-1])}"
        draw.text((right - draw.textlength(end, font=font), bottom + 8), end, fill=(60, 60, 60), font=font)
    save_image(image, path)
    return path


def validation_sheet(pipe, encoder, analyzer, pairs: list[dict], step: int, path: Path, *, steps: int, seed: int,
                     model_name: str, method: str = "m2") -> Path:
    """One row per (face, prompt) pair: the reference photo, then the prompt rendered with the
    encoder as it is now (fixed seed, so sheets of successive steps compare)."""
    import torch

    from ..contact_sheet import contact_sheet
    from ..images import load_image, save_image
    from ..pipeline_faceid import FaceIDPipeline, encode_identity

    # each module's own mode comes back afterwards: a frozen backbone stays in eval mode while the
    # heads train (a plain train() would let its BatchNorm statistics drift from then on)
    modes = {module: module.training for module in encoder.modules()}
    encoder.eval()
    pipeline = FaceIDPipeline(pipe, encoder, model_name=model_name, method=method, analyzer=analyzer)
    rows, captions = [], []
    try:
        with torch.no_grad():
            for k, pair in enumerate(pairs):
                identity = encode_identity(encoder, analyzer, [pair["face"]], method=method)
                image = pipeline(identity, pair["prompt"], seeds=[seed + k], steps=steps)[0]
                rows.append([load_image(pair["face"]), image])
                captions.append([Path(pair["face"]).name, pair["prompt"]])
    finally:
        for module, mode in modes.items():
            module.training = mode
    sheet = contact_sheet(rows, captions, cell=192, caption_lines=2, title=f"validation at step {step}")
    save_image(sheet, path)
    return path
