"""Contrastive image-text training, twice over:

- the world's CLIP (:func:`train_scorer`): a transformers ``CLIPModel`` (ViT image tower) that
  scores text alignment for ``evaluate`` and ranks edits for ``selfaug``, loaded by the same code
  as ``openai/clip-vit-large-patch14``; its captions never name anyone ("a person");
- the text towers of the world's text-to-image models (:func:`train_text_towers`): CLIP text
  encoders that know the celebrities' names, trained against a small CNN image tower that is then
  thrown away, as Stable Diffusion takes its text encoder from a CLIP.

Captions leave attributes out at random, so a caption can be true of several images in a batch.
The loss knows the ground truth, so every caption true of an image is a positive for it (a
multi-positive InfoNCE), instead of treating those as negatives as web-scale CLIP must. The
scorer also has auxiliary heads (thrown away after training, like CoCa's captioner is not part of
its embedding): one per attribute reading the image embedding, and one per attribute reading the
text embedding ("not said" is a class), which teach both towers the attributes in a few hundred
steps where the contrastive loss alone needs thousands.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..contexts import ATTRIBUTE_NAMES, ATTRIBUTES, NEUTRAL_SUBJECT, Context, caption
from ..nets import _trunk
from .common import (Reporter, WorldData, autocast, batches, degrade, lr_at, photometric_jitter, resolved_precision,
                     seed_everything, set_lr, update)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

SCORER_DEFAULTS = {"identities": 2000, "per_identity": 16, "steps": 1750, "batch_size": 128, "lr": 2e-3,
                   "mention_probability": 0.7, "full_caption_probability": 0.3, "auxiliary_weight": 1.0,
                   "text": {"hidden_size": 96, "intermediate_size": 384, "num_hidden_layers": 2,
                            "num_attention_heads": 4},
                   "vision": {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 4,
                              # 8 px patches (64 of them): with 16 px ones a render's glasses were
                              # read right in 0.79 of held-out renders, with 8 px 0.87 (1000 steps
                              # both), 0.90 at 1500 steps and 0.94 at 2000 (which took the whole
                              # build over 90 minutes); all else was 1.00 either way
                              "num_attention_heads": 4, "patch_size": 8},
                   "projection_dim": 128,
                   # part of each batch is blurred, as generated images are softer than renders
                   "max_blur": 1.2, "blur_probability": 0.5,
                   # forward passes in bfloat16 where the CPU computes it natively (common.autocast)
                   "precision": "auto"}


# ---- captions and which of them are true of which image ---------------------------------------
def sample_captions(labels: np.ndarray, subjects: list[str], rng: np.random.Generator, mention: float,
                    full: float) -> tuple[list[str], np.ndarray]:
    """A caption per image (its subject, some of its attributes) and the (B, 5) mention mask."""
    texts, masks = [], []
    for row, subject in zip(labels, subjects):
        if rng.uniform() < full:
            mask = np.ones(len(ATTRIBUTE_NAMES), dtype=bool)
        else:
            mask = rng.uniform(size=len(ATTRIBUTE_NAMES)) < mention
        context = Context.from_labels(dict(zip(ATTRIBUTE_NAMES, row)))
        include = frozenset(name for name, keep in zip(ATTRIBUTE_NAMES, mask) if keep)
        texts.append(caption(context, subject, include))
        masks.append(mask)
    return texts, np.stack(masks)


def consistency(labels: np.ndarray, masks: np.ndarray, identities: np.ndarray | None = None,
                named: np.ndarray | None = None) -> torch.Tensor:
    """(B, B) bool: caption j is true of image i (every attribute it names matches, and its subject
    is i's name or "a person")."""
    match = (labels[:, None, :] == labels[None, :, :]) | ~masks[None, :, :]
    ok = match.all(-1)
    if identities is not None and named is not None:
        ok &= (identities[:, None] == identities[None, :]) | ~named[None, :]
    return torch.from_numpy(ok)


def multi_positive_loss(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with every true caption (image) a positive, weighted equally."""
    target = positives.float()
    log_i2t = logits.log_softmax(dim=1)
    log_t2i = logits.log_softmax(dim=0)
    i2t = -(target * log_i2t).sum(1) / target.sum(1)
    t2i = -(target * log_t2i).sum(0) / target.sum(0)
    return (i2t.mean() + t2i.mean()) / 2


def normalise_pixels(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (images - mean) / std


# ---- the world's CLIP (the scorer) -------------------------------------------------------------
def build_scorer(config: dict, tokenizer):
    from transformers import CLIPConfig, CLIPModel

    text = dict(config["text"], vocab_size=len(tokenizer), max_position_embeddings=tokenizer.model_max_length,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, projection_dim=config["projection_dim"])
    vision = dict(config["vision"], image_size=64, num_channels=3, projection_dim=config["projection_dim"])
    clip_config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=config["projection_dim"])
    return CLIPModel(clip_config)


def image_processor():
    """What the scorer's ``preprocessor_config.json`` holds: 64 px, OpenAI's normalisation."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    return CLIPImageProcessorPil(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64},
                                 image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))


def train_scorer(data: WorldData, out: Path, config: dict, seed: int, report: Reporter, tokenizer) -> dict:
    config = {**SCORER_DEFAULTS, **config}
    generator = seed_everything(seed)
    rng = np.random.default_rng(seed)
    pool = data.population_pool("recogniser", config["identities"], config["per_identity"])
    model = build_scorer(config, tokenizer)
    # plain-matrix attention while training: PyTorch's CPU SDPA backward is slow on such short
    # sequences (a bfloat16 step: 0.22 s eager, 0.41 s SDPA); the saved model loads with the default
    model.set_attn_implementation("eager")
    width = config["projection_dim"]
    image_heads = nn.ModuleDict({name: nn.Linear(width, len(ATTRIBUTES[name])) for name in ATTRIBUTE_NAMES})
    text_heads = nn.ModuleDict({name: nn.Linear(width, len(ATTRIBUTES[name]) + 1) for name in ATTRIBUTE_NAMES})
    optimizer = torch.optim.AdamW([*model.parameters(), *image_heads.parameters(), *text_heads.parameters()],
                                  lr=config["lr"], weight_decay=0.05)
    stream = batches(len(pool), config["batch_size"], generator)
    report.task("train world CLIP", config["steps"])
    model.train()
    for step in range(config["steps"]):
        set_lr(optimizer, lr_at(step, config["steps"], config["lr"]))
        index = next(stream).numpy()
        labels = pool.labels[index]
        texts, masks = sample_captions(labels, [NEUTRAL_SUBJECT] * len(index), rng, config["mention_probability"],
                                       config["full_caption_probability"])
        tokens = tokenizer(texts, padding=True, return_tensors="pt")
        pixels = normalise_pixels(degrade(photometric_jitter(pool.image_tensor(index), generator, 0.06), generator,
                                          max_blur=config["max_blur"], probability=config["blur_probability"]))
        with autocast(config["precision"]):
            output = model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask, pixel_values=pixels)
        image_embeds, text_embeds = output.image_embeds.float(), output.text_embeds.float()
        loss = multi_positive_loss(output.logits_per_image.float(), consistency(labels, masks))
        targets = torch.from_numpy(labels)
        said = torch.from_numpy(np.where(masks, labels, [len(ATTRIBUTES[n]) for n in ATTRIBUTE_NAMES]))
        auxiliary = sum(nn.functional.cross_entropy(image_heads[n](image_embeds), targets[:, i])
                        + nn.functional.cross_entropy(text_heads[n](text_embeds), said[:, i])
                        for i, n in enumerate(ATTRIBUTE_NAMES))
        loss = loss + config["auxiliary_weight"] * auxiliary / len(ATTRIBUTE_NAMES)
        update(optimizer, loss, step, config["steps"], report, clip=1.0)
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
    model.eval()
    model.half().save_pretrained(out, safe_serialization=True)  # shipped in fp16
    tokenizer.save_pretrained(out)
    image_processor().save_pretrained(out)
    return {"parameters": sum(p.numel() for p in model.parameters()),
            "precision": resolved_precision(config["precision"])}


# ---- the text-to-image models' text towers -----------------------------------------------------
TOWERS_DEFAULTS = {"celebrity_fraction": 0.75, "steps": 600, "batch_size": 128, "lr": 2e-3,
                   "mention_probability": 0.8, "full_caption_probability": 0.4, "name_probability": 0.9,
                   # weight of the "what the celebrity looks like" loss (0: the contrastive loss alone)
                   "trait_weight": 1.0,
                   "towers": [{"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 3,
                               "num_attention_heads": 4, "projection_dim": 128}],
                   "image_widths": [32, 64, 128], "image_size": 32, "embedding_dim": 128}


class ImageTower(nn.Module):
    """The throwaway image side: a CNN on a 32 px copy of the render."""

    def __init__(self, widths: tuple[int, ...], size: int, embedding_dim: int):
        super().__init__()
        self.size = size
        self.trunk = _trunk(widths)
        side = -(-size // 2 ** len(widths))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(widths[-1] * side * side, embedding_dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = nn.functional.adaptive_avg_pool2d(images, self.size)
        return nn.functional.normalize(self.head(self.trunk(images * 2 - 1)), dim=-1)


def build_text_tower(tower: dict, tokenizer, with_projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=len(tokenizer), max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        hidden_act="quick_gelu", **tower,
    )
    return CLIPTextModelWithProjection(config) if with_projection else CLIPTextModel(config)


def train_text_towers(celebrities, people, names: list[str], out_dirs: list[Path], config: dict, seed: int,
                      report: Reporter, tokenizer) -> dict:
    """Train one CLIP text tower per ``config["towers"]`` entry against one shared image tower.

    ``celebrities`` (a Pool of the named people, ``names[i]`` for seed i) and ``people`` (a Pool
    of anyone, always "a person"). The first tower is saved as a ``CLIPTextModel``, the others
    with their projection (SDXL's second encoder), each with the tokenizer.

    A real CLIP knows what a celebrity looks like from countless captioned photos; a throwaway
    image tower on 32 px renders learns contexts but not faces, and towers trained so gave every
    name nearly the same states (cosine 0.97), so the text-to-image model drew one person for every
    name. So named captions also regress the person's traits (:func:`people.trait_vector`) from
    the tower's pooled output (``trait_weight``), a stand-in for the face knowledge web-scale data
    gives: the words of a name then say what the person looks like, and the text-to-image model
    learns one trait-to-face mapping from every image instead of a lookup per name.
    """
    config = {**TOWERS_DEFAULTS, **config}
    generator = seed_everything(seed)
    rng = np.random.default_rng(seed)
    towers = nn.ModuleList(build_text_tower(tower, tokenizer, with_projection=True) for tower in config["towers"])
    image_tower = ImageTower(tuple(config["image_widths"]), config["image_size"], config["embedding_dim"])
    heads = nn.ModuleList(nn.Linear(t["projection_dim"], config["embedding_dim"], bias=False) for t in config["towers"])
    from ..people import identity_from_seed, trait_vector

    traits = {int(i): torch.from_numpy(trait_vector(identity_from_seed(int(i)))) for i in np.unique(celebrities.identities)}
    width = len(next(iter(traits.values())))
    trait_heads = nn.ModuleList(nn.Linear(t["projection_dim"], width) for t in config["towers"])
    scales = nn.Parameter(torch.full((len(towers),), math.log(1 / 0.07)))
    optimizer = torch.optim.AdamW([*towers.parameters(), *image_tower.parameters(), *heads.parameters(),
                                   *trait_heads.parameters(), scales], lr=config["lr"], weight_decay=0.05)
    n_celebrity = int(round(config["batch_size"] * config["celebrity_fraction"]))
    celebrity_stream = batches(len(celebrities), n_celebrity, generator)
    people_stream = batches(len(people), config["batch_size"] - n_celebrity, generator)
    report.task("train text encoders", config["steps"])
    for step in range(config["steps"]):
        set_lr(optimizer, lr_at(step, config["steps"], config["lr"]))
        c_index, p_index = next(celebrity_stream).numpy(), next(people_stream).numpy()
        images = torch.cat([celebrities.image_tensor(c_index), people.image_tensor(p_index)])
        images = degrade(photometric_jitter(images, generator, 0.06), generator)
        labels = np.concatenate([celebrities.labels[c_index], people.labels[p_index]])
        identities = np.concatenate([celebrities.identities[c_index], people.identities[p_index]])
        named = np.zeros(len(identities), dtype=bool)
        named[:len(c_index)] = rng.uniform(size=len(c_index)) < config["name_probability"]
        subjects = [names[int(i)] if n else NEUTRAL_SUBJECT for i, n in zip(identities, named)]
        texts, masks = sample_captions(labels, subjects, rng, config["mention_probability"],
                                       config["full_caption_probability"])
        positives = consistency(labels, masks, identities, named)
        tokens = tokenizer(texts, padding=True, return_tensors="pt")
        image_embeds = image_tower(images)
        loss = 0.0
        target_traits = torch.stack([traits[int(i)] for i in identities[named]]) if named.any() else None
        for tower, head, trait_head, scale in zip(towers, heads, trait_heads, scales):
            pooled = tower(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).text_embeds
            text_embeds = nn.functional.normalize(head(pooled), dim=-1)
            logits = scale.clamp(max=math.log(100)).exp() * image_embeds @ text_embeds.T
            loss = loss + multi_positive_loss(logits, positives)
            if target_traits is not None and config["trait_weight"]:
                predicted = trait_head(pooled[torch.from_numpy(named)])
                loss = loss + config["trait_weight"] * nn.functional.mse_loss(predicted, target_traits) * width / 10
        update(optimizer, loss, step, config["steps"], report, clip=1.0)
    from transformers import CLIPTextModel

    for index, (tower, folder) in enumerate(zip(towers, out_dirs)):
        tower.eval()
        if index == 0:
            # SD's text encoder: the transformer without the projection
            plain = CLIPTextModel(tower.config)
            # transformers 5's CLIPTextModel is the text transformer itself (4.x wrapped it)
            target = getattr(plain, "text_model", plain)
            target.load_state_dict(tower.text_model.state_dict())
            tower = plain
        tower.save_pretrained(folder, safe_serialization=True)  # fp32: a part, rounded when its pipeline ships
    return {"parameters": [sum(p.numel() for p in t.parameters()) for t in towers]}
