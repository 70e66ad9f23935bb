"""DreamIdentity's M² ID encoder: multi-scale features of a face-recognition ViT, projected by k
MLPs into k pseudo-words in the text encoders' input embedding space (§3.2 of the paper).

V = [v_{d/4}, v_{d/2}, v_{3d/4}, v_d, v_final]: mean-pooled patch tokens after blocks at 1/4, 1/2,
3/4 and all of the depth d (the last after the final LayerNorm; these ViTs have no class token, so
tokens are pooled), and the identity embedding. Each MLP_i maps V to one word for every text
encoder at once (its output is split by ``word_dims``: SD 1.x 768, SD 2.x 1024, SDXL 768 + 1280).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .base import IdentityEncoder
from .face_vit import FaceViT, FaceViTConfig, extract_backbone_state_dict


def default_feature_layers(depth: int) -> tuple[int, ...]:
    return tuple(sorted({max(1, round(depth * q / 4)) for q in (1, 2, 3, 4)}))


class M2IDEncoder(IdentityEncoder):
    encoder_type = "m2"

    def __init__(
        self,
        backbone: dict | None = None,
        num_words: int = 2,
        word_dims: tuple[int, ...] = (1024,),
        hidden_dim: int = 1024,
        feature_layers: tuple[int, ...] | None = None,
    ):
        super().__init__()
        self.backbone_config = FaceViTConfig(**(backbone or {}))
        # () is "the identity embedding only" (the paper's last-layer ablation); None the default V
        self.feature_layers = tuple(default_feature_layers(self.backbone_config.depth) if feature_layers is None
                                    else feature_layers)
        self._config = {
            "encoder_type": self.encoder_type,
            "backbone": self.backbone_config.to_dict(),
            "num_words": int(num_words),
            "word_dims": [int(d) for d in word_dims],
            "hidden_dim": int(hidden_dim),
            "feature_layers": list(self.feature_layers),
        }
        self.crop_size = self.backbone_config.image_size
        self.backbone = FaceViT(self.backbone_config)
        feature_dim = len(self.feature_layers) * self.backbone_config.width + self.backbone_config.embedding_dim
        self.heads = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(feature_dim),
                nn.Linear(feature_dim, hidden_dim),
                nn.GELU(),
                nn.Linear(hidden_dim, sum(word_dims)),
            )
            for _ in range(num_words)
        )

    @classmethod
    def from_config(cls, config: dict) -> M2IDEncoder:
        args = {k: v for k, v in config.items() if k != "encoder_type"}
        return cls(**args)

    @property
    def config(self) -> dict:
        return dict(self._config)

    def preprocess(self, crop) -> torch.Tensor:
        pixels = np.asarray(crop.convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        layers, _, identity = self.backbone.forward_features(pixels, self.feature_layers)
        return torch.cat([tokens.mean(dim=1) for tokens in layers] + [identity], dim=-1)

    def words_from_features(self, features: torch.Tensor) -> torch.Tensor:
        return torch.stack([head(features) for head in self.heads], dim=1)

    def load_backbone(self, state_dict: dict, prefix: str | None = None) -> None:
        """Load face-ViT weights (arcface_torch or FaceCLIP layout); every key must match."""
        self.backbone.load_state_dict(extract_backbone_state_dict(state_dict, prefix), strict=True)
        self._hash = None


def build_random_m2_encoder(word_dims: tuple[int, ...], seed: int = 0, num_words: int = 2) -> M2IDEncoder:
    """The seeded random encoder the tiny models use: a 4-block, 32-wide face ViT."""
    torch.manual_seed(seed)
    encoder = M2IDEncoder(
        backbone={"image_size": 112, "patch_size": 16, "width": 32, "depth": 4, "num_heads": 2,
                  "embedding_dim": 64},
        num_words=num_words, word_dims=word_dims, hidden_dim=64,
    )
    encoder.name = f"random-m2-seed{seed}"
    return encoder.eval()
