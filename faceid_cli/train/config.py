"""``faceid train``'s configuration: a TOML file whose every key has a default here.

The defaults are the DreamIdentity paper's (§4.1): lr 5e-5, effective batch 64, 60k steps, 512 px,
k = 2 words, λ = 1e-4 on Σ‖s_i‖, the base model's own DDPM noise schedule. A config file overrides
any of them; so do ``--set section.key=value`` options on the command line. An unknown key fails
with its name (a typo must never silently train with a default). The resolved config is saved
beside every checkpoint, so a run can be repeated from it alone.
"""

from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path

from ..errors import InvalidArgumentError
from ..models.attention import ATTENTION_KINDS
from ..models.precision import MIXED_PRECISIONS
from ..names import TRAINABLE_METHODS

#: how reconstruction photos are captioned (data.captions; faceid_cli.train.data reads them)
CAPTION_SOURCES = ("templates", "metadata")
#: Hugging Face imagefolder's caption files, looked for in this order in each folder
METADATA_NAMES = ("metadata.jsonl", "metadata.csv")

#: every key of a training config, with the paper's value; None where a run must say it
DEFAULTS: dict = {
    "model": {
        # or "clip-image" (the paper's CLIP baseline, faceid_cli.train.clip_image), or "faceclip": a
        # FaceCLIP-style joint ID-text encoder (faceid_cli.train.faceclip)
        "method": "m2",
        "base": "sd21-base",  # any model faceid loads: an alias, repo id, folder, "tiny", "world"
        "init_encoder": None,  # an encoder checkpoint to start from (else a fresh one)
        "backbone": None,  # face-ViT weights: arcface_torch .pt, FaceCLIP's encoder, or a world face-vit folder
        "backbone_config": {},  # the face ViT's shape, when not read from the backbone's own config
        "num_words": 2,  # k (the paper: 2; 3 hurt text alignment)
        "hidden_dim": 1024,
        "features": "multi-scale",  # or "last": the final identity embedding only (Table 2's ablation)
        # faceclip: the encoder's sizes (fuser, face, prefix...; the towers follow the base's text
        # encoders and start from their weights)
        "faceclip": {},
        # the CLIP whose image embeddings faceclip aligns to, and whose image tower clip-image reads
        "clip": "openai/clip-vit-large-patch14",
    },
    "data": {
        "reconstruction": [],  # folders, globs or files of face photos (FFHQ-like)
        # "templates": each reconstruction photo's caption is drawn from data.templates (the
        # paper's); "metadata": its own, from the metadata.jsonl / metadata.csv beside it (Hugging
        # Face imagefolder's layout), column data.caption_column, with S* where the person is named
        "captions": "templates",
        "caption_column": "text",
        "triplets": [],  # manifests written by 'faceid selfaug'
        "triplet_fraction": 0.0,  # share of each batch drawn from the triplets
        "templates": [
            "a photo of S*", "a close-up photo of S* face", "a portrait of S*", "a photo of S* face",
            "a good photo of S*", "a cropped photo of S*", "a close-up photo of S*", "a bright photo of S*",
        ],
        "resolution": 512,
        "cache_dir": None,  # default: <output>/cache
        "cache_latents": False,
        # a frozen face backbone's features of each item, computed once (its forward is most of
        # the encoder's cost); ignored when the backbone trains or the method has none (faceclip)
        "cache_features": True,
        "face_backend": "auto",
        "workers": 0,
    },
    "train": {
        "steps": 60_000,
        "batch_size": 64,  # effective batch: micro_batch_size x accumulation x processes
        "micro_batch_size": 8,
        "learning_rate": 5e-5,
        "lr_warmup_steps": 500,
        "lr_schedule": "constant",  # or "cosine"
        "weight_decay": 0.01,
        "reg_weight": 1e-4,  # λ of λ·Σ‖s_i‖
        # extra weight of the diffusion loss on the target's face box (1 + w there, 1 elsewhere,
        # rescaled to keep the loss's scale); 0 is the paper's plain MSE (faceid_cli.train.loss_weights)
        "face_loss_weight": 0.0,
        "backbone": "frozen",  # "frozen", "all", or "last:N" (the last N blocks train)
        "backbone_learning_rate": 1e-5,
        "max_grad_norm": 1.0,
        # "fp16" or "bf16" on a GPU; "auto": bf16 where the device computes it natively (a GPU with
        # bf16, a CPU with AVX512-BF16 or AMX), none elsewhere (emulated bf16 is slower than fp32)
        "mixed_precision": "no",
        # the frozen base's attention: PyTorch's fused "sdpa", or "eager" (plain matrix products,
        # faster on a CPU for short sequences such as the world's; faceid_cli.models.attention)
        "attention": "sdpa",
        "gradient_checkpointing": False,  # of the face backbone
        # faceclip: what trains (fuser, projections, text, face, unet; the release: fuser,
        # projections and the UNet), the UNet's learning rate, and the alignment loss
        "faceclip_trains": ["fuser", "projections", "unet"],
        "unet_learning_rate": 1e-5,
        "alignment": "sigmoid",  # or "softmax"
        "alignment_targets": ["face", "text", "image"],
        "alignment_weight": 0.1,
        # faceclip: steps of fitting a fresh encoder's fuser to pass the base's own conditioning
        # through before training (0: start from the fuser as built; faceid_cli.train.faceclip.start)
        "faceclip_start_steps": 0,
        "seed": 0,
        "device": "auto",
    },
    "output": {
        "dir": "faceid-train",
        "checkpoint_every": 1000,  # and at the end (0: at the end only), as validate_every
        "keep_checkpoints": 3,
        "log_every": 10,
        "validate_every": 1000,
        "validation": [],  # [{face = "...", prompt = "S* ..."}]
        "validation_steps": 30,
        "report_to": None,  # "tensorboard" or "wandb", when installed
    },
}

CHOICES = {
    ("model", "method"): TRAINABLE_METHODS,
    ("train", "alignment"): ("sigmoid", "softmax"),
    ("model", "features"): ("multi-scale", "last"),
    ("data", "captions"): CAPTION_SOURCES,
    ("train", "lr_schedule"): ("constant", "cosine"),
    ("train", "mixed_precision"): MIXED_PRECISIONS,
    ("train", "attention"): ATTENTION_KINDS,
    ("output", "report_to"): (None, "tensorboard", "wandb"),
}

#: the numbers a run needs in range: each (section, key) and what it must be
WHOLE_AT_LEAST_1 = (("train", "steps"), ("train", "batch_size"), ("train", "micro_batch_size"),
                    ("model", "num_words"), ("model", "hidden_dim"), ("data", "resolution"),
                    ("output", "keep_checkpoints"), ("output", "log_every"), ("output", "validation_steps"))
# checkpoint_every and validate_every 0: at the end only
WHOLE_AT_LEAST_0 = (("train", "lr_warmup_steps"), ("train", "seed"), ("data", "workers"),
                    ("train", "faceclip_start_steps"), ("output", "checkpoint_every"), ("output", "validate_every"))
# a negative learning rate trains backwards and a negative weight rewards what it should weigh;
# a learning rate of 0 is a control run (the untrained encoder on the same batches), and
# max_grad_norm 0 turns clipping off
AT_LEAST_0 = (("train", "learning_rate"), ("train", "backbone_learning_rate"), ("train", "unet_learning_rate"),
              ("train", "reg_weight"), ("train", "face_loss_weight"), ("train", "weight_decay"),
              ("train", "alignment_weight"), ("train", "max_grad_norm"))


def merge(base: dict, override: dict, where: str = "", schema: dict | None = None) -> dict:
    """``base`` with ``override``'s values; a key the defaults lack fails with its dotted name.

    A table the defaults leave empty (``model.faceclip``, ``model.backbone_config``) is open: it
    takes any key, merged into what an earlier file or ``--set`` put there (what reads the table
    checks its keys)."""
    schema = DEFAULTS if schema is None and not where else schema
    out = copy.deepcopy(base)
    for key, value in override.items():
        name = f"{where}.{key}" if where else key
        if schema == {}:  # an open table
            nested = isinstance(base.get(key), dict) and isinstance(value, dict)
            out[key] = merge(base[key], value, name, {}) if nested else copy.deepcopy(value)
            continue
        if key not in base:
            known = ", ".join(sorted(base))
            raise InvalidArgumentError(f"unknown config key '{name}'", f"known keys here: {known}")
        inner = schema.get(key) if isinstance(schema, dict) else None
        if isinstance(base[key], dict) and isinstance(value, dict) and (base[key] or inner == {}):
            out[key] = merge(base[key], value, name, inner)
        else:
            _check_type(name, base[key], value)
            out[key] = copy.deepcopy(value)
    return out


def _kind(value) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "a string", list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def _check_type(name: str, default, value) -> None:
    """A value of the default's kind (an unset default takes a string, number or list, never a table)."""
    expected = "a string, number or list" if default is None else _kind(default)
    if (default is None and isinstance(value, dict)) or (default is not None and _kind(value) != _kind(default)):
        raise InvalidArgumentError(f"config key '{name}' takes {expected}, not {_kind(value)}", "fix the config")


def parse_assignment(text: str) -> dict:
    """``section.key=value`` (value in TOML syntax, or a bare string) as a nested dict."""
    if "=" not in text:
        raise InvalidArgumentError(f"--set '{text}' is not section.key=value", "e.g. --set train.steps=100")
    dotted, raw = (part.strip() for part in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare word: a path or a name
    keys = dotted.split(".")
    nested: dict = value
    for key in reversed(keys):
        nested = {key: nested}
    return nested


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> dict:
    """The resolved config: defaults, then the TOML file, then each ``--set`` in order."""
    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidArgumentError(f"cannot read config '{path}': {exc.strerror}", "check the path") from None
        try:
            config = merge(config, tomllib.loads(text))
        except tomllib.TOMLDecodeError as exc:
            raise InvalidArgumentError(f"config '{path}' is not valid TOML: {exc}", "fix the file") from None
    for assignment in overrides:
        config = merge(config, parse_assignment(assignment))
    check(config)
    return config


def check(config: dict) -> None:
    """Values that would fail later, refused now with their names."""
    for (section, key), allowed in CHOICES.items():
        if config[section][key] not in allowed:
            raise InvalidArgumentError(f"{section}.{key} = {config[section][key]!r} is not one of "
                                       f"{', '.join(map(str, allowed))}", "fix the config")
    rules = [(WHOLE_AT_LEAST_1, "a positive integer", lambda v: _whole(v) and v >= 1),
             (WHOLE_AT_LEAST_0, "a whole number, 0 or more", lambda v: _whole(v) and v >= 0),
             (AT_LEAST_0, "0 or more", lambda v: v >= 0)]
    for names, meaning, holds in rules:
        for section, key in names:
            value = config[section][key]
            if not holds(value):  # NaN fails every comparison, so it is refused too
                raise InvalidArgumentError(f"{section}.{key} = {value!r} must be {meaning}", "fix the config")
    train = config["train"]
    if train["batch_size"] % train["micro_batch_size"]:
        raise InvalidArgumentError(
            f"train.batch_size {train['batch_size']} is not a multiple of train.micro_batch_size "
            f"{train['micro_batch_size']}", "the effective batch is reached by accumulating whole micro-batches")
    backbone = train["backbone"]
    if backbone not in ("frozen", "all") and not (isinstance(backbone, str) and backbone.startswith("last:")
                                                  and backbone[5:].isdigit() and int(backbone[5:]) > 0):
        raise InvalidArgumentError(f"train.backbone = {backbone!r}", "use frozen, all, or last:N")
    if not 0.0 <= float(config["data"]["triplet_fraction"]) <= 1.0:
        raise InvalidArgumentError("data.triplet_fraction must be between 0 and 1", "fix the config")
    if config["model"]["method"] == "faceclip":  # model.faceclip is an open table: its reader checks it
        from .faceclip import check_faceclip_keys

        check_faceclip_keys(config["model"]["faceclip"])


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def dumps_toml(config: dict) -> str:
    """The config as TOML (what ``--print-config`` prints and what checkpoints keep)."""
    lines = []
    for section, values in config.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if value is None:
                lines.append(f"# {key} = (unset)")
            else:
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
