"""The paper's ablation baseline: a CLIP image encoder's last-layer class feature mapped to a
single pseudo-word (as ELITE and InstantBooth do), for comparison with the M² encoder."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .base import IdentityEncoder

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipImageEncoder(IdentityEncoder):
    encoder_type = "clip-image"
    crop_zoom = 0.75  # CLIP saw whole heads, not tight recognition crops

    def __init__(self, vision: dict | None = None, word_dims: tuple[int, ...] = (1024,), num_words: int = 1):
        from transformers import CLIPVisionConfig, CLIPVisionModel

        super().__init__()
        vision_config = CLIPVisionConfig(**(vision or {}))
        self._config = {
            "encoder_type": self.encoder_type,
            "vision": {k: v for k, v in vision_config.to_diff_dict().items()
                       if k not in ("transformers_version", "model_type")},
            "word_dims": [int(d) for d in word_dims],
            "num_words": int(num_words),
        }
        self.crop_size = vision_config.image_size
        self.vision = CLIPVisionModel(vision_config)
        self.projection = nn.Linear(vision_config.hidden_size, num_words * sum(word_dims))

    @classmethod
    def from_config(cls, config: dict) -> ClipImageEncoder:
        return cls(vision=config.get("vision"), word_dims=tuple(config["word_dims"]),
                   num_words=config.get("num_words", 1))

    @property
    def config(self) -> dict:
        return dict(self._config)

    def preprocess(self, crop) -> torch.Tensor:
        pixels = np.asarray(crop.convert("RGB"), dtype=np.float32) / 255.0
        pixels = (pixels - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
        return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.vision(pixel_values=pixels).pooler_output

    def words_from_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.projection(features).reshape(features.shape[0], self.num_words, sum(self.word_dims))


def build_random_clip_image_encoder(word_dims: tuple[int, ...], seed: int = 0) -> ClipImageEncoder:
    """A seeded tiny CLIP vision tower for the tiny models."""
    torch.manual_seed(seed)
    encoder = ClipImageEncoder(
        vision={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
                "num_attention_heads": 4, "image_size": 32, "patch_size": 8, "projection_dim": 32},
        word_dims=word_dims,
    )
    encoder.name = f"random-clip-image-seed{seed}"
    return encoder.eval()
