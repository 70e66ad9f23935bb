"""The M² encoder's face backbone: a FaceViT in the arcface_torch layout (the module faceid's
encoders load real face ViTs into), trained with a CosFace margin on the ``backbone`` population.
It is a different network, trained apart from the evaluation recogniser, as the paper's encoder
backbone is not the ArcFace that scores it. Saved as ``model.safetensors`` (the ViT's own state
dict, loadable by ``M2IDEncoder.load_backbone``) with its ``FaceViTConfig`` as ``config.json``."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ...encoders.face_vit import FaceViT, FaceViTConfig
from ...images import atomic_output
from .common import Reporter, WorldData, seed_everything
from .recogniser import train_embedder

DEFAULTS = {"identities": 2000, "per_identity": 16, "steps": 1200, "batch_size": 128, "lr": 1e-3,
            "margin": 0.35, "scale": 30.0, "landmark_jitter": 0.8,
            "vit": {"image_size": 112, "patch_size": 14, "width": 96, "depth": 6, "num_heads": 4,
                    "embedding_dim": 128}}


class _Normalised(nn.Module):
    def __init__(self, vit: FaceViT):
        super().__init__()
        self.vit = vit

    def forward(self, crops):
        return nn.functional.normalize(self.vit(crops), dim=-1)


def train(data: WorldData, out: Path, config: dict, seed: int, report: Reporter) -> dict:
    from safetensors.torch import save_file

    config = {**DEFAULTS, **config}
    generator = seed_everything(seed)
    pool = data.population_pool("backbone", config["identities"], config["per_identity"])
    vit_config = FaceViTConfig(**config["vit"])
    vit = FaceViT(vit_config)
    train_config = dict(config, embedding_dim=vit_config.embedding_dim, task="train face ViT (encoder backbone)")
    train_embedder(_Normalised(vit), pool, train_config, generator, report, crop_size=vit_config.image_size,
                   supersample=1)
    vit.eval()
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().to(torch.float16) if v.is_floating_point() else v.contiguous()
             for k, v in vit.state_dict().items()}
    with atomic_output(out / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "config": json.dumps(vit_config.to_dict())})
    with atomic_output(out / "config.json") as tmp:
        tmp.write_text(json.dumps(vit_config.to_dict(), indent=2) + "\n", encoding="utf-8")
    return {"parameters": sum(p.numel() for p in vit.parameters())}
