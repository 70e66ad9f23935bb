"""The world's small convolutional networks: the evaluation recogniser, the face detector and the
context classifier. Each is rebuilt from its JSON config (the constructor arguments) and loads
its weights from safetensors, like every model faceid ships.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from .contexts import ATTRIBUTES

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.SiLU())


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels), nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(channels))

    def forward(self, x):
        return torch.nn.functional.silu(x + self.body(x))


def _trunk(widths: tuple[int, ...], in_channels: int = 3) -> nn.Sequential:
    """Stride-2 stages: a downsampling conv, then (after the first, cheapest to skip) a residual block."""
    layers, cin = [], in_channels
    for index, width in enumerate(widths):
        layers.append(_conv(cin, width, 2))
        if index:
            layers.append(_Residual(width))
        cin = width
    return nn.Sequential(*layers)


class WorldNet(nn.Module):
    """Base: the config is the constructor's keyword arguments."""

    kind = ""

    def __init__(self, **config):
        super().__init__()
        self.config = {"kind": self.kind, **config}

    def save_pretrained(self, folder: str | os.PathLike, dtype: torch.dtype = torch.float16) -> Path:
        from safetensors.torch import save_file

        from ..images import atomic_output

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {}
        for key, value in self.state_dict().items():
            value = value.detach().cpu().contiguous()
            state[key] = value.to(dtype) if value.is_floating_point() else value
        with atomic_output(folder / WEIGHTS_NAME) as tmp:
            save_file(state, str(tmp), metadata={"config": json.dumps(self.config, sort_keys=True)})
        with atomic_output(folder / CONFIG_NAME) as tmp:
            tmp.write_text(json.dumps(self.config, indent=2) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike) -> WorldNet:
        from safetensors.torch import load_file

        folder = Path(folder)
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        kind = config.pop("kind")
        net_class = NETS[kind]
        net = net_class(**config)
        state = load_file(str(folder / WEIGHTS_NAME))
        net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
        return net.eval()


class Recogniser(WorldNet):
    """Aligned face crop (B, 3, crop_size, crop_size) in [0, 1] → L2-normalised identity embedding.

    Crops are made at the standard 112 px template and reduced to ``input_size`` inside: a world
    face is about 40 px across, so a larger input only costs time.
    """

    kind = "recogniser"

    def __init__(self, crop_size: int = 112, input_size: int = 32, widths: tuple[int, ...] = (32, 64, 128, 192),
                 embedding_dim: int = 128, same_person_threshold: float | None = None):
        # the threshold is measured after training (on people it did not train on) and kept here
        super().__init__(crop_size=crop_size, input_size=input_size, widths=list(widths), embedding_dim=embedding_dim,
                         same_person_threshold=same_person_threshold)
        self.trunk = _trunk(tuple(widths))
        side = -(-input_size // 2 ** len(widths))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(widths[-1] * side * side, embedding_dim),
                                  nn.BatchNorm1d(embedding_dim))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        size = self.config["input_size"]
        if crops.shape[-1] != size:
            crops = nn.functional.adaptive_avg_pool2d(crops, size)
        return nn.functional.normalize(self.head(self.trunk(crops * 2 - 1)), dim=-1)


class Detector(WorldNet):
    """Whole image (B, 3, 64, 64) in [0, 1] → face logit (B,), box (B, 4) and landmarks (B, 5, 2)
    in pixels. The world's portraits hold at most one face."""

    kind = "detector"

    def __init__(self, image_size: int = 64, widths: tuple[int, ...] = (24, 32, 48, 64)):
        super().__init__(image_size=image_size, widths=list(widths))
        self.trunk = _trunk(tuple(widths))
        side = image_size // 2 ** len(widths)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(widths[-1] * side * side, 128), nn.SiLU(), nn.Linear(128, 15))

    def forward(self, images: torch.Tensor):
        out = self.head(self.trunk(images * 2 - 1))
        size = self.config["image_size"]
        return out[:, 0], out[:, 1:5] * size, out[:, 5:].reshape(-1, 5, 2) * size


class ContextClassifier(WorldNet):
    """Whole image (B, 3, 64, 64) in [0, 1] → one logit vector per context attribute: the world's
    ground-truth check of what an image shows, independent of any text model."""

    kind = "context-classifier"

    def __init__(self, image_size: int = 64, widths: tuple[int, ...] = (16, 32, 48, 64),
                 attributes: dict[str, int] | None = None, stem: int = 0):
        attributes = attributes or {name: len(values) for name, values in ATTRIBUTES.items()}
        super().__init__(image_size=image_size, widths=list(widths), attributes=dict(attributes), stem=stem)
        # ``stem``: the width of a convolution at full resolution before the first stride, 0 for none
        self.trunk = nn.Sequential(_conv(3, stem), _trunk(tuple(widths), stem)) if stem else _trunk(tuple(widths))
        side = image_size // 2 ** len(widths)
        self.heads = nn.ModuleDict({
            name: nn.Sequential(nn.Flatten(), nn.Linear(widths[-1] * side * side, 64), nn.SiLU(), nn.Linear(64, count))
            for name, count in attributes.items()
        })

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.trunk(images * 2 - 1)
        return {name: head(features) for name, head in self.heads.items()}


NETS: dict[str, type[WorldNet]] = {net.kind: net for net in (Recogniser, Detector, ContextClassifier)}
