"""Training the M² encoder (``model.method = "m2"``): the functions every method's training module
has, with one signature each (see :mod:`.faceclip` for the other)."""

from __future__ import annotations

import torch


def build(config: dict, pipe, allow_download: bool = False):
    """The module that trains: here the encoder itself."""
    from ..conditioning import word_dims_of
    from .loop import build_encoder_for

    encoder = build_encoder_for(config, word_dims_of(pipe))
    if config["train"]["gradient_checkpointing"]:
        encoder.backbone.gradient_checkpointing = True
    return encoder


def trainable_groups(trainee, config: dict) -> list[dict]:
    from .loop import trainable_parameters

    return trainable_parameters(trainee, config)


def set_train_mode(trainee, config: dict) -> None:
    trainee.train()
    if config["train"]["backbone"] == "frozen":
        trainee.backbone.eval()


def frozen_features(trainee, pixels: torch.Tensor) -> torch.Tensor:
    """What a frozen backbone makes of face crops: the loop caches it per item (``data.cache_features``)."""
    return trainee.features(pixels)


def training_loss(pipe, trainee, noise_scheduler, crops: torch.Tensor, latents: torch.Tensor, captions: list[str],
                  generator: torch.Generator, config: dict, token: str = "S*",
                  image_embeddings: torch.Tensor | None = None,
                  features: torch.Tensor | None = None,
                  loss_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Diffusion MSE through the words (weighted per latent cell by ``loss_weights``, if given) +
    λ·Σ‖s_i‖; metrics: diffusion, reg (Σ‖s_i‖), word_norm."""
    from .loop import training_loss as m2_loss

    loss, diffusion, reg, norms = m2_loss(pipe, trainee, noise_scheduler, crops, latents, captions, generator,
                                          config["train"]["reg_weight"], token, features, loss_weights)
    return loss, {"diffusion": diffusion.detach(), "reg": reg.detach(), "word_norm": norms.mean().detach()}


def save_trained(trainee, folder) -> None:
    trainee.save_pretrained(folder)
