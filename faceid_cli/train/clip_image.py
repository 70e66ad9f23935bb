"""Training the paper's CLIP baseline (``model.method = "clip-image"``): the same functions as
:mod:`.m2`, for the encoder DreamIdentity's §4.3 ablation starts from.

Following ELITE and InstantBooth, CLIP's image tower (``model.clip``: OpenAI's ViT-L/14 on real
bases, the world's own CLIP on the world) reads the face at its last layer's class token, and a
linear map turns that feature into ``model.num_words`` pseudo-words (the paper's baseline: one).
The objective and the conditioning are the M² encoder's, through the same ``S*`` code, so the two
encoders differ only in what reads the face. The tower is frozen unless ``train.backbone`` says
``all`` or ``last:N`` (its last N transformer layers), at ``train.backbone_learning_rate``.
"""

from __future__ import annotations

import torch

from ..errors import InvalidArgumentError
from .m2 import frozen_features  # noqa: F401  (the tower's class feature, cached per item like M²'s)


def build(config: dict, pipe, allow_download: bool = False):
    """A fresh encoder whose tower is ``model.clip``'s image side, or ``model.init_encoder``."""
    from ..conditioning import word_dims_of
    from ..encoders.clip_image import ClipImageEncoder
    from ..evaluate.clip_scorer import ClipScorer
    from ..methods import get_method

    model = config["model"]
    dims = word_dims_of(pipe)
    if model["init_encoder"]:
        method = get_method("clip-image")
        encoder = method.load_encoder(method.locate_encoder(model["init_encoder"]))
        method.check_encoder(encoder, dims, model["init_encoder"])
    else:
        clip = ClipScorer.from_pretrained(model["clip"], allow_download=allow_download).model
        vision = {k: v for k, v in clip.config.vision_config.to_diff_dict().items()
                  if k not in ("transformers_version", "model_type")}
        encoder = ClipImageEncoder(vision=vision, word_dims=dims, num_words=model["num_words"])
        encoder.vision.load_state_dict(clip.vision_model.state_dict(), strict=True)
    if config["train"]["gradient_checkpointing"]:
        encoder.vision.gradient_checkpointing_enable()
    return encoder


def trainable_groups(trainee, config: dict) -> list[dict]:
    """The projection at the learning rate; the tower (whole, its last N layers, or nothing) at
    the backbone's."""
    from .loop import optimizer_groups

    train = config["train"]
    trainee.vision.requires_grad_(False)
    setting = train["backbone"]
    tower = trainee.vision
    if setting == "all":
        chosen = list(tower.parameters())
    elif setting.startswith("last:"):
        layers = list(tower.encoder.layers)
        count = int(setting[5:])
        if count > len(layers):
            raise InvalidArgumentError(f"train.backbone = {setting!r}: the CLIP image tower has {len(layers)} layers",
                                       f"use last:1 to last:{len(layers)} or all")
        chosen = [p for layer in layers[-count:] for p in layer.parameters()] + list(tower.post_layernorm.parameters())
    else:
        chosen = []
    return optimizer_groups(train, "projection", list(trainee.projection.parameters()), chosen)


def set_train_mode(trainee, config: dict) -> None:
    trainee.train()
    if config["train"]["backbone"] == "frozen":
        trainee.vision.eval()


def training_loss(pipe, trainee, noise_scheduler, crops: torch.Tensor, latents: torch.Tensor, captions: list[str],
                  generator: torch.Generator, config: dict, token: str = "S*",
                  image_embeddings: torch.Tensor | None = None,
                  features: torch.Tensor | None = None,
                  loss_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """The M² objective: diffusion MSE through the words + λ·Σ‖s_i‖."""
    from . import m2

    return m2.training_loss(pipe, trainee, noise_scheduler, crops, latents, captions, generator, config, token,
                            features=features, loss_weights=loss_weights)


def save_trained(trainee, folder) -> None:
    trainee.save_pretrained(folder)
