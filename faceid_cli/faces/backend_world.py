"""The world backend: the miniature identity world's own face detector (presence, box, five
landmarks) and recogniser, for images of world people (``--backend world``; ``auto`` picks it with
``--model world``). Same interface as dlib and insightface, so ``detect``, ``compare``,
``evaluate`` and the encoders use it unchanged.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from .analyzer import FaceAnalyzer
from .face import Face, l2_normalize

#: detector probability at or above which a face is reported
PRESENCE_THRESHOLD = 0.5


class WorldFaceAnalyzer(FaceAnalyzer):
    name = "world"

    def __init__(self, weights: str | Path | None = None):
        from ..world import component_path

        root = Path(weights) if weights else None
        self.detector_dir = component_path("detector", root)
        self.recogniser_dir = component_path("recogniser", root)
        config = json.loads((self.recogniser_dir / "config.json").read_text(encoding="utf-8"))
        self.embedding_dim = int(config["embedding_dim"])
        self.crop_size = int(config["crop_size"])
        self.same_person_threshold = float(config.get("same_person_threshold", 0.5))

    @property
    def description(self) -> str:
        return "world (the miniature world's detector and recogniser)"

    def detect(self, image: Image.Image) -> list[Face]:
        import torch

        detector = _load(self.detector_dir)
        size = detector.config["image_size"]
        scale_x, scale_y = image.width / size, image.height / size
        small = image.convert("RGB")
        if small.size != (size, size):
            small = small.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        pixels = torch.from_numpy(np.asarray(small, dtype=np.float32) / 255).permute(2, 0, 1)[None]
        with torch.inference_mode():
            logit, box, landmarks = detector(pixels)
        score = float(torch.sigmoid(logit[0]))
        if score < PRESENCE_THRESHOLD:
            return []
        # landmarks and boxes use pixel centres at integers: scale about the half-pixel
        scale = np.array([scale_x, scale_y])
        points = (landmarks[0].double().numpy() + 0.5) * scale - 0.5
        corners = (box[0].double().numpy().reshape(2, 2) + 0.5) * scale - 0.5
        return [Face(bbox=tuple(float(v) for v in corners.ravel()), score=score, landmarks=points)]

    def embed(self, image: Image.Image, face: Face) -> np.ndarray:
        import torch

        from ..world.data import align_batch

        # the recogniser's own training alignment (batched torch), so inference sees its crops
        pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]
        crop = align_batch(pixels, torch.from_numpy(np.asarray(face.landmarks, dtype=np.float64))[None], self.crop_size)
        return self.embed_pixels(crop)[0]

    def embed_crops(self, crops: list[Image.Image]) -> np.ndarray:
        """Embeddings of aligned crops, in one batch."""
        import torch

        pixels = torch.stack([torch.from_numpy(np.asarray(c.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
                              for c in crops])
        return self.embed_pixels(pixels)

    def embed_pixels(self, pixels) -> np.ndarray:
        """Embeddings of aligned crops given as a tensor (B, 3, crop, crop) in [0, 1]."""
        import torch

        recogniser = _load(self.recogniser_dir)
        with torch.inference_mode():
            embeddings = recogniser(pixels).numpy()
        return np.stack([l2_normalize(e) for e in embeddings])


@cache
def _load(folder: Path):
    from ..world.nets import WorldNet

    return WorldNet.from_pretrained(folder)
