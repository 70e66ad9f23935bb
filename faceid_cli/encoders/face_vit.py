"""A face-recognition Vision Transformer in the arcface_torch layout.

Same module names and shapes as InsightFace's arcface_torch ViTs and the face encoder inside
FaceCLIP's release (112 px, patch 9, 24 layers, width 768, 8 heads, ReLU6 MLPs, no class token,
no qkv bias, an identity head Flatten → Linear → BN → Linear(512) → BN), so their state dicts
load without renaming. ``forward_features`` returns the patch tokens after chosen blocks as well as
the identity embedding, which is what the M² encoder needs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.utils.checkpoint
from torch import nn


@dataclass(frozen=True)
class FaceViTConfig:
    image_size: int = 112
    patch_size: int = 9
    width: int = 768
    depth: int = 24
    num_heads: int = 8
    mlp_ratio: float = 4.0
    embedding_dim: int = 512
    #: "minus_one_one": (x - 0.5) / 0.5 as arcface_torch trains; "zero_one": FaceCLIP feeds [0, 1]
    pixel_range: str = "minus_one_one"

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    def to_dict(self) -> dict:
        return asdict(self)


class PatchEmbed(nn.Module):
    def __init__(self, config: FaceViTConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, config.width, kernel_size=config.patch_size, stride=config.patch_size)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.proj(pixels).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(width, width * 3, bias=False)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, width // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        # softmax in fp32, as the reference implementation does under half precision
        out = nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float()).to(x.dtype)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, width))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.ReLU6()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, config: FaceViTConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.width)
        self.attn = Attention(config.width, config.num_heads)
        self.norm2 = nn.LayerNorm(config.width)
        self.mlp = Mlp(config.width, int(config.width * config.mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class FaceViT(nn.Module):
    """arcface_torch-style ViT. Input: RGB in [0, 1], (B, 3, image_size, image_size)."""

    def __init__(self, config: FaceViTConfig = FaceViTConfig()):
        super().__init__()
        self.config = config
        patches = config.grid**2
        self.patch_embed = PatchEmbed(config)
        self.pos_embed = nn.Parameter(torch.zeros(1, patches, config.width))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.width))  # training-time masking only
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.width)
        self.feature = nn.Sequential(
            nn.Linear(patches * config.width, config.width, bias=False),
            nn.BatchNorm1d(config.width, eps=2e-5),
            nn.Linear(config.width, config.embedding_dim, bias=False),
            nn.BatchNorm1d(config.embedding_dim, eps=2e-5),
        )
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        #: recompute each block's activations in the backward pass (training memory, not speed)
        self.gradient_checkpointing = False

    def forward_features(
        self, pixels: torch.Tensor, layers: tuple[int, ...] = ()
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Returns (tokens after each block in ``layers`` (1-based), final normed tokens, identity).

        Block ``depth`` in ``layers`` gives the tokens after the final LayerNorm.
        """
        size = self.config.image_size
        if pixels.shape[-2:] != (size, size):
            raise ValueError(f"the face ViT takes {size}x{size} crops, got {tuple(pixels.shape[-2:])}")
        if self.config.pixel_range == "minus_one_one":
            pixels = (pixels - 0.5) / 0.5
        x = self.patch_embed(pixels) + self.pos_embed
        taken = {}
        checkpointing = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for index, block in enumerate(self.blocks, start=1):
            x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False) if checkpointing else block(x)
            if index in layers:
                taken[index] = x
        # the final LayerNorm in fp32 (as the reference does), whatever the weights' dtype
        tokens = nn.functional.layer_norm(x.float(), self.norm.normalized_shape, self.norm.weight.float(),
                                          self.norm.bias.float(), self.norm.eps).to(x.dtype)
        if self.config.depth in layers:
            taken[self.config.depth] = tokens
        identity = self.feature(tokens.reshape(tokens.shape[0], -1))
        return [taken[i] for i in layers], tokens, identity

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.forward_features(pixels)[2]


FACECLIP_FACE_ENCODER_PREFIX = "face_clip_l.face_encoder."


def extract_backbone_state_dict(state_dict: dict, prefix: str | None = None) -> dict:
    """The face-ViT part of a checkpoint: arcface_torch's own (no prefix, or ``module.``) or
    FaceCLIP's ``face_clip_encoder.pt`` (``face_clip_l.face_encoder.``, after ``model.``)."""
    if prefix is None:
        for candidate in (FACECLIP_FACE_ENCODER_PREFIX, "model." + FACECLIP_FACE_ENCODER_PREFIX,
                          "module.", "backbone."):
            if any(key.startswith(candidate) for key in state_dict):
                prefix = candidate
                break
        else:
            prefix = ""
    return {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}
