"""The folders ``faceid train`` writes, and the way from any of them to the encoder inside:
``generate --encoder`` (and every ``--encoder``) takes a run's folder or one of its checkpoints as
well as the encoder folder itself."""

from __future__ import annotations

from pathlib import Path

from ..encoders.base import WEIGHTS_NAME as ENCODER_WEIGHTS

CHECKPOINTS = "checkpoints"
COMPLETE = "complete.json"
ENCODER_DIR = "encoder"


def checkpoint_dirs(out: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(out) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / COMPLETE).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def trained_encoder(path: Path) -> Path:
    """The encoder folder that ``path`` means: a run's output folder gives its final ``encoder/``,
    or while it still trains its newest complete checkpoint's; a checkpoint ``step-N`` gives its
    ``encoder/``. Anything else (an encoder folder, a file) is itself."""
    path = Path(path)
    if not path.is_dir() or (path / ENCODER_WEIGHTS).is_file():
        return path
    if (path / ENCODER_DIR / ENCODER_WEIGHTS).is_file():
        return path / ENCODER_DIR
    checkpoints = checkpoint_dirs(path)
    if checkpoints and (checkpoints[-1] / ENCODER_DIR / ENCODER_WEIGHTS).is_file():
        return checkpoints[-1] / ENCODER_DIR
    return path
