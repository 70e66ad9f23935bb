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

import math

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


def check_faceclip_keys(sizes: dict) -> None:
    """``model.faceclip`` (an open table of the config) holds only what a FaceCLIP config takes;
    the towers, vocabulary and context length follow the base."""
    from dataclasses import fields

    from ..encoders.face_vit import FaceViTConfig
    from ..encoders.faceclip import FaceClipConfig, FuserConfig, prefix_before_id
    from ..names import FACECLIP_FACE_PLACEMENTS

    tables = {"": (FaceClipConfig, {"towers", "vocab_size", "context_length"}), "fuser": (FuserConfig, set()),
              "face": (FaceViTConfig, set())}
    for where, (kind, follow_base) in tables.items():
        given = sizes.get(where, {}) if where else sizes
        known = {f.name for f in fields(kind)} - follow_base
        for key in given if isinstance(given, dict) else ():
            if key not in known:
                name = ".".join(filter(None, ("model.faceclip", where, key)))
                raise InvalidArgumentError(f"unknown config key '{name}'", f"known keys here: {', '.join(sorted(known))}")
    if sizes.get("face_at", "prefix") not in FACECLIP_FACE_PLACEMENTS:
        raise InvalidArgumentError(f"model.faceclip.face_at is {sizes['face_at']!r}",
                                   f"use one of: {', '.join(FACECLIP_FACE_PLACEMENTS)}")
    config = FaceClipConfig(**{k: v for k, v in sizes.items() if k in ("prefix", "id_word")})
    if prefix_before_id(config) is None:
        raise InvalidArgumentError(f"model.faceclip.prefix {config.prefix!r} has no word {config.id_word!r} "
                                   "(model.faceclip.id_word) for the face to replace",
                                   "put the face word in the prefix, as the release's 'Photo of a id person. '")


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


#: the base start's sample of the run's captions, and its batch (targets are kept for all of them)
START_TEXTS, START_BATCH, START_LEARNING_RATE = 2048, 64, 1e-2


def start(trainee: FaceClipTrainee, pipe, config: dict, captions: list[str], token: str = "S*",
          note=lambda message: None) -> dict | None:
    """Before a fresh run's first step (``train.faceclip_start_steps`` > 0): make the new encoder
    pass the base's own conditioning through, so that training starts near a space the base's UNet
    reads (the face token in the prefix still starts random).

    A fresh fuser's output is a random mixture of its towers' states, a space the base's UNet has
    never read (the release fine-tuned all of SDXL's UNet, on far more data than a small run has,
    to learn its space). Here, with no face, the fuser's text path is fitted (Adam on the squared
    error) to the base's ``prompt_embeds`` of the same tokens (prefix included): ``text_embed_proj``,
    ``text_pos_proj``, the text layers (their residual branches start at zero) and the bi-attention's
    text norms. The face's paths stay as built (the bi-attention enters at a layer scale of 1e-4).
    When the UNet fine-tunes, it is also made to read FaceCLIP's pooled vector (the end-of-text
    state before ``text_projection``, as released) as it read the base's projected one: the
    projection is folded into the columns of its added embedding that take the pooled text.
    Returns the fit's figures (also noted): the mean squared error before and after, and the share
    of the target's variance explained."""
    steps = int(config["train"]["faceclip_start_steps"])
    if not steps or config["model"]["init_encoder"]:
        return None
    from ..conditioning import prompt_states, text_towers
    from ..encoders.faceclip import tokenize
    from ..methods.faceclip import faceclip_text, faceclip_tokenizer

    encoder = trainee.encoder
    texts = sorted({faceclip_text(caption, token) for caption in captions})
    generator = torch.Generator().manual_seed(int(config["train"]["seed"]))
    if len(texts) > START_TEXTS:  # a large captioned set: a seeded sample is enough for a linear-sized fit
        texts = [texts[i] for i in sorted(torch.randperm(len(texts), generator=generator)[:START_TEXTS].tolist())]
    towers = text_towers(pipe)
    is_xl = len(towers) == 2 or getattr(pipe, "text_encoder_2", None) is not None
    tokens = tokenize(faceclip_tokenizer(pipe), texts, [True] * len(texts), encoder.faceclip_config)
    device = next(encoder.parameters()).device
    ids, eos = tokens.input_ids.to(device), tokens.eos_positions.to(device)
    no_face = torch.full_like(tokens.id_positions, -1).to(device)  # the prefix's word "id" as the base reads it
    chunks = [slice(i, i + START_BATCH) for i in range(0, len(texts), START_BATCH)]
    figures = {"texts": len(texts), "steps": steps}
    for index, (branch, (_, tower)) in enumerate(zip(encoder.branches, towers)):
        was_training = branch.training
        branch.eval()  # no dropout: the fit is deterministic and draws nothing from the global RNG
        size = encoder.faceclip_config.face.image_size
        with torch.no_grad():
            # the base's prompt_embeds as diffusers builds them (SDXL: the penultimate states), and
            # the tower's final states that the fuser reads
            target = torch.cat([prompt_states(tower, ids[c], is_xl)[0].float() for c in chunks])
            hidden = torch.cat([branch.text_states(ids[c], no_face[c], eos[c], None)[0] for c in chunks])
            _, patches = branch.encode_face(torch.zeros(1, 3, size, size, device=device))

        def error(rows) -> torch.Tensor:  # squared error per token, summed over channels
            states = hidden[rows]
            fused = branch.fuse(states, patches.expand(len(states), -1, -1))
            return (fused.float() - target[rows]).pow(2).mean(dim=(0, 1)).sum()

        @torch.no_grad()
        def error_on_all() -> float:
            return sum(float(error(c)) * len(texts[c]) for c in chunks) / len(texts)

        before = error_on_all()  # the fuser as built
        with torch.no_grad():
            for layer in branch.fuser.encoder.text_layers:  # residual branches start at zero
                for linear in (layer.self_attn.out_proj, layer.linear2):
                    linear.weight.zero_()
                    linear.bias.zero_()
            branch.text_embed_proj.weight.copy_(torch.eye(branch.text_embed_proj.weight.shape[0]))
            branch.text_embed_proj.bias.zero_()
        # a high rate, warm-up, cosine decay and clipping: the norms' gains must travel far (a
        # post-norm output's scale is set by them) and a fixed 1e-3 left one world tower at 0.39 of
        # its variance in 500 steps; the best state seen is kept, in case a step overshoots
        parameters = _text_path(branch)
        optimizer = torch.optim.Adam(parameters, lr=START_LEARNING_RATE)
        warmup = max(1, steps // 20)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (
            1 + math.cos(math.pi * min(i, steps) / steps)))
        best, best_state = float("inf"), None
        for step in range(steps):
            with torch.enable_grad():
                loss = error(torch.randperm(len(texts), generator=generator)[:START_BATCH].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(parameters, 1.0)
                optimizer.step()
                schedule.step()
            if (step + 1) % 50 == 0 or step + 1 == steps:
                now = error_on_all()
                if now < best:
                    best, best_state = now, [p.detach().clone() for p in parameters]
        with torch.no_grad():
            if best_state is not None:
                for parameter, value in zip(parameters, best_state):
                    parameter.copy_(value)
        after = best
        branch.train(was_training)
        variance = float(target.var(dim=(0, 1), unbiased=False).sum())
        name = encoder.faceclip_config.branch_names[index]
        figures[name] = {"mse_start": before, "mse_end": after, "explained": 1 - after / variance}
        note(f"faceclip start, {name}: the fuser passes the base's conditioning through "
             f"({figures[name]['explained']:.3f} of its variance explained, {len(texts)} texts, {steps} steps)")
    projection = getattr(towers[-1][1], "text_projection", None)  # the base's: pooled @ weight.T
    if is_xl and hasattr(trainee, "unet") and projection is not None:
        figures["pooled_folded"] = fold_pooled_projection(trainee.unet, projection.weight.T)
    return figures


def _text_path(branch) -> list[nn.Parameter]:
    """The parameters that carry the text through the fuser, with no face."""
    fuser = branch.fuser.encoder
    modules = [branch.text_embed_proj, branch.text_pos_proj, *fuser.text_layers,
               *(block.layer_norm_l for block in fuser.fusion_layers)]
    return [p for module in modules for p in module.parameters()]


@torch.no_grad()
def fold_pooled_projection(unet, text_projection: torch.Tensor) -> bool:
    """Make an SDXL UNet read the unprojected pooled vector as it read the projected one: the
    columns of ``add_embedding.linear_1`` that take the pooled text times the projection. False
    (nothing changed) where the UNet has no such input or the widths differ."""
    embedding = getattr(unet, "add_embedding", None)
    linear = getattr(embedding, "linear_1", None)
    width = text_projection.shape[1]
    if linear is None or getattr(unet.config, "addition_embed_type", None) != "text_time" \
            or text_projection.shape[0] != width or linear.weight.shape[1] <= width:
        return False
    columns = linear.weight[:, :width]
    columns.copy_(columns @ text_projection.to(columns).T)
    return True


def clip_for(config: dict) -> str | None:
    train = config["train"]
    return config["model"]["clip"] if "image" in train["alignment_targets"] and train["alignment_weight"] else None


def set_train_mode(trainee: FaceClipTrainee, config: dict) -> None:
    trainee.train()
    if "face" not in config["train"]["faceclip_trains"]:  # frozen BatchNorm statistics stay as loaded
        for branch in trainee.encoder.branches:
            branch.face_encoder.eval()
