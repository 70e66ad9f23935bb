"""Training a FaceCLIP-style encoder (``model.method = "faceclip"``): no training code was released,
so this is faceid's reading of the paper and the release.

The objective is the diffusion loss through FaceCLIP's ``prompt_embeds`` (the UNet may fine-tune
with it, as the release's did) plus the multi-modal alignment loss: the joint representation, the
bigG branch's pooled end-of-text state (the face token went in with the prompt) projected by its
``text_projection``, is aligned contrastively, within the batch, with

- ``face``: the person's identity embedding (the face ViT's identity vector through ``proj1``);
- ``text``: the same caption encoded by the tower without the face;
- ``image``: the CLIP image embedding of the target picture (a learned linear map into the joint
  space when CLIP's width differs).

``train.alignment`` selects the sigmoid loss (SigLIP; the release's ``logit_bias`` of -10 points to
it) or the softmax one (CLIP's InfoNCE). ``train.faceclip_trains`` chooses what trains: ``fuser``,
``projections``, ``text`` (the towers), ``face`` (the face ViT), ``unet``; the release trains the
first two and fine-tunes the UNet.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidArgumentError

TRAINABLE_PARTS = ("fuser", "projections", "text", "face", "unet")
ALIGNMENT_TARGETS = ("face", "text", "image")
PROJECTIONS = ("proj1", "face_patch_proj", "face_pos_proj", "text_embed_proj", "text_pos_proj", "text_projection",
               "logit_scale", "logit_bias")
TOWER = ("transformer", "token_embedding", "positional_embedding", "ln_final")


class FaceClipTrainee(nn.Module):
    """What trains: the encoder, the UNet when it fine-tunes, and the map from CLIP image
    embeddings into the joint space."""

    def __init__(self, encoder, unet=None, image_dim: int | None = None):
        super().__init__()
        self.encoder = encoder
        if unet is not None:
            self.unet = unet
        width = encoder.branches[-1].text_projection.shape[1]
        self.image_head = nn.Linear(image_dim, width) if image_dim and image_dim != width else nn.Identity()

    # what the data pipeline asks of an encoder
    @property
    def crop_size(self) -> int:
        return self.encoder.crop_size

    @property
    def crop_zoom(self) -> float:
        return self.encoder.crop_zoom

    def preprocess(self, crop) -> torch.Tensor:
        return self.encoder.preprocess(crop)


def build_encoder(config: dict, pipe):
    """A FaceCLIP encoder for the base: ``model.init_encoder`` (the release or one of ours), or a
    fresh one whose towers match the base's text encoders and start from their weights, with the
    face ViT from ``model.backbone`` when given; sizes from ``model.faceclip``."""
    from ..conditioning import text_towers
    from ..encoders.faceclip import FaceClipConfig, FaceClipEncoder, copy_hf_text_tower, tower_config_from_hf
    from ..encoders.face_vit import FaceViTConfig
    from ..methods import get_method
    from .loop import _backbone

    model = config["model"]
    method = get_method("faceclip")
    if model["init_encoder"]:
        encoder = method.load_encoder(method.locate_encoder(model["init_encoder"]))
        method.check_encoder(encoder, tuple(e.get_input_embeddings().embedding_dim for _, e in text_towers(pipe)),
                             model["init_encoder"])
        return encoder
    towers = text_towers(pipe)
    tokenizer = towers[-1][0]
    tables = {encoder.get_input_embeddings().num_embeddings for _, encoder in towers}
    if len(tables) != 1 or len(tokenizer) > min(tables):
        raise InvalidArgumentError(
            f"the base's text encoders have token tables of {sorted(tables)} rows for a tokenizer of {len(tokenizer)}",
            "FaceCLIP shares one vocabulary between its towers: use a base whose text encoders share their tokenizer")
    vocab_size = tables.pop()
    backbone_config, backbone_state = _backbone(model)
    sizes = dict(model["faceclip"])
    face = {**backbone_config, **sizes.pop("face", {}), "pixel_range": "zero_one"}
    face = FaceViTConfig(**face)
    faceclip = FaceClipConfig.from_dict({
        "towers": [tower_config_from_hf(encoder.config).__dict__ for _, encoder in towers],
        # the size of the towers' embedding tables, which the weights are copied from (a model's
        # table may hold more rows than its tokenizer has ids)
        "face": face.to_dict(), "vocab_size": vocab_size, "context_length": tokenizer.model_max_length,
        "crop_size": face.image_size, **sizes})
    encoder = FaceClipEncoder(faceclip)
    for branch, (_, text_encoder) in zip(encoder.branches, towers):
        copy_hf_text_tower(branch, text_encoder)
        if backbone_state is not None:
            from ..encoders.face_vit import extract_backbone_state_dict

            branch.face_encoder.load_state_dict(extract_backbone_state_dict(backbone_state), strict=True)
    return encoder


def check_parts(parts, targets) -> None:
    for part in parts:
        if part not in TRAINABLE_PARTS:
            raise InvalidArgumentError(f"train.faceclip_trains has {part!r}", f"use some of: {', '.join(TRAINABLE_PARTS)}")
    for target in targets:
        if target not in ALIGNMENT_TARGETS:
            raise InvalidArgumentError(f"train.alignment_targets has {target!r}",
                                       f"use some of: {', '.join(ALIGNMENT_TARGETS)}")


def trainable_groups(trainee: FaceClipTrainee, config: dict) -> list[dict]:
    train = config["train"]
    parts = list(train["faceclip_trains"])
    trainee.requires_grad_(False)
    chosen: list[nn.Parameter] = []
    for branch in trainee.encoder.branches:
        if "fuser" in parts:
            chosen += list(branch.fuser.parameters())
        if "projections" in parts:
            chosen += [p for name in PROJECTIONS for p in _parameters(getattr(branch, name))]
        if "text" in parts:
            chosen += [p for name in TOWER for p in _parameters(getattr(branch, name))]
        if "face" in parts:
            chosen += list(branch.face_encoder.parameters())
    chosen += list(trainee.image_head.parameters())
    for parameter in chosen:
        parameter.requires_grad_(True)
    groups = [{"params": chosen, "lr": train["learning_rate"], "name": "encoder"}]
    if "unet" in parts:
        trainee.unet.requires_grad_(True)
        groups.append({"params": list(trainee.unet.parameters()), "lr": train["unet_learning_rate"], "name": "unet"})
    return groups


def _parameters(module_or_parameter) -> list[nn.Parameter]:
    if isinstance(module_or_parameter, nn.Parameter):
        return [module_or_parameter]
    return list(module_or_parameter.parameters())


def contrastive(joint: torch.Tensor, target: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor,
                kind: str, positives: torch.Tensor | None = None) -> torch.Tensor:
    """Row i of ``joint`` matches row i of ``target`` (both L2-normalised), and any row
    ``positives`` (B, B) marks: a batch often holds one caption twice, and two equal targets must
    not be pushed apart. Sigmoid: SigLIP's pairwise loss (Zhai et al., 2023); softmax: CLIP's
    symmetric cross-entropy, over the positives' share."""
    logits = joint @ target.T * scale.exp()
    if positives is None:
        positives = torch.eye(len(joint), dtype=torch.bool, device=joint.device)
    positives = positives.to(joint.device)
    if kind == "sigmoid":
        labels = 2 * positives.float() - 1
        return -F.logsigmoid(labels * (logits + bias)).sum() / len(joint)
    shares = positives.float() / positives.float().sum(-1, keepdim=True)
    columns = positives.T.float() / positives.T.float().sum(-1, keepdim=True)
    return (F.cross_entropy(logits, shares) + F.cross_entropy(logits.T, columns)) / 2


def same(values: list) -> torch.Tensor:
    """(B, B): where two rows hold the same value."""
    return torch.tensor([[a == b for b in values] for a in values])


def training_loss(pipe, trainee: FaceClipTrainee, noise_scheduler, crops: torch.Tensor, latents: torch.Tensor,
                  captions: list[str], generator: torch.Generator, config: dict, token: str = "S*",
                  image_embeddings: torch.Tensor | None = None,
                  loss_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """Diffusion MSE (weighted per latent cell by ``loss_weights``, if given) through FaceCLIP's
    conditioning + ``alignment_weight`` × the alignment loss.
    Returns (loss, {"diffusion": …, "alignment": …})."""
    from ..encoders.faceclip import tokenize
    from ..methods.faceclip import faceclip_text, faceclip_tokenizer
    from .loop import diffusion_target, unet_conditioning
    from .loss_weights import weighted_mse

    train = config["train"]
    encoder = trainee.encoder
    tokenizer = faceclip_tokenizer(pipe)
    texts = [faceclip_text(c, token) for c in captions]
    faces = encoder.face_features(crops)
    embeds, pooled, _ = encoder.condition(tokenizer, texts, faces, len(texts))
    unet = getattr(trainee, "unet", pipe.unet)
    noise = torch.randn(latents.shape, generator=generator).to(latents)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(latents),),
                              generator=generator).to(latents.device)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    kwargs = unet_conditioning(pipe, embeds, pooled if getattr(pipe, "text_encoder_2", None) is not None else None)
    prediction = unet(noisy, timesteps, **kwargs).sample
    diffusion = weighted_mse(prediction, diffusion_target(noise_scheduler, latents, noise, timesteps), loss_weights)
    targets = list(train["alignment_targets"])
    if not targets or not train["alignment_weight"]:
        return diffusion, {"diffusion": diffusion.detach(), "alignment": torch.zeros(())}
    branch = encoder.branches[-1]
    joint = branch.text_features(pooled)
    name = encoder.faceclip_config.branch_names[-1]
    losses = []
    if "face" in targets:
        face = F.normalize(branch.face_token(faces[f"{name}.identity"]).float(), dim=-1)
        losses.append(contrastive(joint, face.detach(), branch.logit_scale, branch.logit_bias, train["alignment"]))
    if "text" in targets:
        plain = tokenize(tokenizer, texts, [False] * len(texts), encoder.faceclip_config)
        device = crops.device
        with torch.no_grad():
            _, text_pooled = branch.text_states(plain.input_ids.to(device), plain.id_positions.to(device),
                                                plain.eos_positions.to(device), None)
            text = branch.text_features(text_pooled)
        losses.append(contrastive(joint, text, branch.logit_scale, branch.logit_bias, train["alignment"], same(texts)))
    if "image" in targets:
        if image_embeddings is None:
            raise InvalidArgumentError("train.alignment_targets has 'image' but no CLIP is loaded", "set model.clip")
        # the scorer answers in inference mode; a plain copy can enter the autograd graph
        image = F.normalize(trainee.image_head(image_embeddings.clone().to(joint)).float(), dim=-1)
        losses.append(contrastive(joint, image, branch.logit_scale, branch.logit_bias, train["alignment"]))
    alignment = torch.stack(losses).mean()
    return diffusion + train["alignment_weight"] * alignment, {"diffusion": diffusion.detach(),
                                                               "alignment": alignment.detach()}


def save_trained(trainee: FaceClipTrainee, folder) -> None:
    """The encoder in the format ``generate --encoder`` loads; a fine-tuned UNet beside it
    (``unet/``), which ``--method faceclip`` puts into the pipeline."""
    from pathlib import Path

    trainee.encoder.save_pretrained(folder)
    if hasattr(trainee, "unet"):
        trainee.unet.save_pretrained(Path(folder) / "unet", safe_serialization=True)


def build(config: dict, pipe, allow_download: bool = False) -> FaceClipTrainee:
    train = config["train"]
    check_parts(train["faceclip_trains"], train["alignment_targets"])
    encoder = build_encoder(config, pipe)
    scorer = None
    if clip_for(config):
        from ..evaluate.clip_scorer import ClipScorer

        scorer = ClipScorer.from_pretrained(config["model"]["clip"], device=pipe.unet.device,
                                            allow_download=allow_download)
    image_dim = scorer.model.config.projection_dim if scorer is not None else None
    trainee = FaceClipTrainee(encoder, pipe.unet if "unet" in train["faceclip_trains"] else None, image_dim)
    trainee.clip_scorer = scorer  # not a submodule: frozen, never saved
    if train["gradient_checkpointing"]:
        for branch in encoder.branches:
            branch.face_encoder.gradient_checkpointing = True
    return trainee


def clip_for(config: dict) -> str | None:
    train = config["train"]
    return config["model"]["clip"] if "image" in train["alignment_targets"] and train["alignment_weight"] else None


def set_train_mode(trainee: FaceClipTrainee, config: dict) -> None:
    trainee.train()
    if "face" not in config["train"]["faceclip_trains"]:  # frozen BatchNorm statistics stay as loaded
        for branch in trainee.encoder.branches:
            branch.face_encoder.eval()
