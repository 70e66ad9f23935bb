"""``faceid train``'s loop: the M² encoder learns on a frozen text-to-image model, on accelerate.

The objective (DreamIdentity §3.4): the diffusion model's usual MSE (noise, or velocity for
v-prediction bases), conditioned through the pseudo-words, plus λ·Σ‖s_i‖. The words enter the text
encoders through :func:`faceid_cli.conditioning.encode_prompt_with_identity`, the code
``generate`` uses, so training and generation cannot drift apart. The UNet, VAE and text encoders
never change (they are not given to the optimizer and their gradients are off); the projection
heads train; the face backbone is frozen unless the config unfreezes it.

Determinism: the items, templates, noise and timesteps of step ``s`` are pure functions of the
seed and ``s`` (and the process rank), so a resumed run draws exactly the batches an uninterrupted
one would; the checkpoint holds the weights, the optimizer, the LR schedule and the RNG states
(accelerate's ``save_state``). On one CPU a resumed run ends bit-identical to an uninterrupted one.

A checkpoint folder ``checkpoints/step-NNNNNNN`` holds the encoder in the format ``generate
--encoder`` loads (``encoder/``), the resolved config, accelerate's state, and ``complete.json``
written last: a folder without it (a run killed while saving) is never resumed from or counted.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import FaceIDError, InvalidArgumentError, MissingModelError
from ..names import GENERATION_DEFAULTS
from .config import dumps_toml
from .loss_weights import face_loss_weights, weighted_mse

from .layout import CHECKPOINTS, COMPLETE, ENCODER_DIR, checkpoint_dirs  # noqa: F401  (the run's layout)

METRICS = "metrics.jsonl"


@dataclass
class TrainResult:
    steps: int
    encoder_dir: Path
    metrics: list[dict]
    data: dict


# ---- models --------------------------------------------------------------------------------------
def build_encoder_for(config: dict, word_dims: tuple[int, ...]):
    """A fresh M² encoder for the base's word widths (or the checkpoint ``init_encoder``), with the
    backbone weights loaded when ``model.backbone`` names them."""
    from ..encoders.base import load_encoder
    from ..encoders.m2 import M2IDEncoder, default_feature_layers

    model = config["model"]
    if model["init_encoder"]:
        encoder = load_encoder(model["init_encoder"])
        if tuple(encoder.word_dims) != tuple(word_dims):
            raise InvalidArgumentError(
                f"model.init_encoder makes words {tuple(encoder.word_dims)} wide; the base takes {tuple(word_dims)}",
                "start from an encoder trained for this base family")
        return encoder
    backbone_config, state = _backbone(model)
    from ..encoders.face_vit import FaceViTConfig

    depth = FaceViTConfig(**backbone_config).depth
    layers = [] if model["features"] == "last" else list(default_feature_layers(depth))
    encoder = M2IDEncoder(backbone=backbone_config, num_words=model["num_words"], word_dims=word_dims,
                          hidden_dim=model["hidden_dim"], feature_layers=layers)
    if state is not None:
        try:
            encoder.load_backbone(state)
        except RuntimeError as exc:
            raise InvalidArgumentError(f"model.backbone '{model['backbone']}' does not fit the face ViT: {exc}",
                                       "give model.backbone_config the checkpoint's shape") from None
    return encoder


def _backbone(model: dict) -> tuple[dict, dict | None]:
    """(face-ViT config, state dict or None) from ``model.backbone``: a world face-vit folder
    (config.json + model.safetensors), a ``.safetensors`` file, or a pickle read with weights_only."""
    path = model["backbone"]
    config = dict(model["backbone_config"])
    if not path:
        return config, None
    if str(path).startswith("world:"):  # a model of the miniature world, wherever faceid keeps it
        from ..world import component_path

        path = component_path(str(path)[len("world:"):])
    path = Path(path).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            config = {**json.loads((path / "config.json").read_text(encoding="utf-8")), **config}
        path = path / "model.safetensors"
    if not path.is_file():
        raise MissingModelError(f"model.backbone '{path}' not found", "point it at a face-ViT checkpoint")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
    return config, {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def trainable_parameters(encoder, config: dict) -> list[dict]:
    """Optimizer groups: the heads at the learning rate; the backbone (whole, its last N blocks, or
    nothing) at its own."""
    train = config["train"]
    encoder.backbone.requires_grad_(False)
    setting = train["backbone"]
    if setting == "all":
        chosen = list(encoder.backbone.parameters())
    elif setting.startswith("last:"):
        count = int(setting[5:])
        blocks = list(encoder.backbone.blocks)
        if count > len(blocks):
            raise InvalidArgumentError(f"train.backbone = {setting!r}: the face ViT has {len(blocks)} blocks",
                                       f"use last:1 to last:{len(blocks)} or all")
        chosen = [p for block in blocks[-count:] for p in block.parameters()]
        chosen += [p for name, p in encoder.backbone.named_parameters() if not name.startswith(("blocks.", "patch"))
                   and not name.startswith("pos")]
    else:
        chosen = []
    return optimizer_groups(train, "heads", list(encoder.heads.parameters()), chosen)


def optimizer_groups(train: dict, head_name: str, heads: list, backbone: list) -> list[dict]:
    """The heads at the learning rate; the chosen backbone parameters (the rest stay frozen)
    unfrozen at the backbone's own, as a second group when there are any."""
    for parameter in backbone:
        parameter.requires_grad_(True)
    groups = [{"params": heads, "lr": train["learning_rate"], "name": head_name}]
    if backbone:
        groups.append({"params": backbone, "lr": train["backbone_learning_rate"], "name": "backbone"})
    return groups


def _no_usable_item(skipped: Counter, data_cfg: dict) -> FaceIDError:
    """The error of a run whose every photo was skipped, with the reasons counted."""
    return FaceIDError(
        f"no usable training item: every photo was skipped ({', '.join(f'{n} {r}' for r, n in skipped.items())})",
        f"check data.reconstruction ({', '.join(str(p) for p in data_cfg.get('reconstruction') or []) or 'none'}), "
        f"data.triplets ({data_cfg.get('triplets') or 'none'}) and the face backend"
        + ("; data.captions = \"metadata\" needs each photo's caption with S* in a metadata.jsonl beside it"
           if data_cfg["captions"] == "metadata" else ""))


# ---- one step ------------------------------------------------------------------------------------
def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 7919 + rank * 104_729) % 2**63)


def batch_indices(seed: int, step: int, micro: int, counts: dict[str, int], triplet_fraction: float,
                  rank: int, micro_batch: int) -> list[tuple[str, int]]:
    """Which (kind, index) items micro-batch ``micro`` of step ``step`` takes on process ``rank``:
    a pure function, so a resumed run draws what an uninterrupted one would."""
    rng = np.random.default_rng([seed, step, micro, rank])
    triplets = counts.get("triplet", 0)
    reconstruction = counts.get("reconstruction", 0)
    picks = []
    for _ in range(micro_batch):
        use_triplet = triplets and (not reconstruction or rng.uniform() < triplet_fraction)
        kind = "triplet" if use_triplet else "reconstruction"
        picks.append((kind, int(rng.integers(counts[kind]))))
    return picks


def encode_latents(vae, pixels: torch.Tensor) -> torch.Tensor:
    """Scaled latents of targets in [-1, 1]; the KL autoencoder's mode (deterministic, so cached
    and fresh latents are the same), or the tiny autoencoder's latents."""
    out = vae.encode(pixels.to(vae.device, vae.dtype))
    latents = out.latent_dist.mode() if hasattr(out, "latent_dist") else out.latents
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor


def condition(pipe, encoder, crops: torch.Tensor, captions: list[str], token: str,
              features: torch.Tensor | None = None) -> tuple[dict, torch.Tensor]:
    """The UNet's conditioning for these crops (or their cached backbone ``features``) and
    captions (the generate path), and the words."""
    from ..conditioning import encode_prompt_with_identity

    words = encoder(crops) if features is None else encoder(features=features)  # (B, k, sum(dims))
    result = encode_prompt_with_identity(pipe, list(captions), encoder_split(encoder, words), token)
    return unet_conditioning(pipe, result.prompt_embeds, result.pooled_prompt_embeds), words


def unet_conditioning(pipe, prompt_embeds: torch.Tensor, pooled: torch.Tensor | None) -> dict:
    """The UNet's keyword arguments for these embeddings: SDXL's pooled text and size ids too, as
    the pipeline builds them for its native size."""
    kwargs = {"encoder_hidden_states": prompt_embeds}
    if pooled is not None:
        size = pipe.unet.config.sample_size * pipe.vae_scale_factor
        time_ids = pipe._get_add_time_ids((size, size), (0, 0), (size, size), dtype=prompt_embeds.dtype,
                                          text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim)
        kwargs["added_cond_kwargs"] = {"text_embeds": pooled,
                                       "time_ids": time_ids.to(prompt_embeds.device).repeat(len(prompt_embeds), 1)}
    return kwargs


def encoder_split(encoder, words):
    module = getattr(encoder, "module", encoder)  # unwrapped under DDP
    return module.split_words(words)


def training_loss(pipe, encoder, noise_scheduler, crops: torch.Tensor, latents: torch.Tensor, captions: list[str],
                  generator: torch.Generator, reg_weight: float, token: str = "S*",
                  features: torch.Tensor | None = None, loss_weights: torch.Tensor | None = None):
    """One micro-batch's objective: diffusion MSE through the words + ``reg_weight``·Σ‖s_i‖
    (``features``: the crops' frozen backbone features, when cached; ``loss_weights``: per latent
    cell, :func:`.loss_weights.weighted_mse`).

    Returns (loss, diffusion term, Σ‖s_i‖ averaged over the batch, per-word norms (B, k))."""
    noise = torch.randn(latents.shape, generator=generator).to(latents)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(latents),),
                              generator=generator).to(latents.device)
    noisy = noise_scheduler.add_noise(latents, noise, timesteps)
    kwargs, words = condition(pipe, encoder, crops, captions, token, features)
    prediction = pipe.unet(noisy, timesteps, **kwargs).sample
    target = diffusion_target(noise_scheduler, latents, noise, timesteps)
    diffusion = weighted_mse(prediction, target, loss_weights)
    word_norms = words.float().norm(dim=-1)
    reg = word_norms.sum(dim=1).mean()
    return diffusion + reg_weight * reg, diffusion, reg, word_norms


def diffusion_target(scheduler, latents, noise, timesteps):
    if scheduler.config.prediction_type == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    if scheduler.config.prediction_type != "epsilon":
        raise InvalidArgumentError(f"the base predicts {scheduler.config.prediction_type!r}",
                                   "faceid trains on epsilon and v-prediction bases")
    return noise


# ---- checkpoints ---------------------------------------------------------------------------------
def resolve_resume(out: Path, resume: str | None) -> Path | None:
    if not resume:
        return None
    if resume == "latest":
        found = checkpoint_dirs(out)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / COMPLETE).is_file():
        raise InvalidArgumentError(f"--resume '{path}' is not a complete checkpoint",
                                   f"use 'latest' or a folder under {out / CHECKPOINTS} with {COMPLETE}")
    return path


def save_checkpoint(accelerator, encoder, config: dict, out: Path, step: int, keep: int, training) -> Path:
    """Write ``checkpoints/step-N`` under a temporary name, mark it complete, rename it into place,
    then drop the oldest beyond ``keep``."""
    final = out / CHECKPOINTS / f"step-{step:07d}"
    partial = out / CHECKPOINTS / f".step-{step:07d}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    accelerator.save_state(str(partial / "state"), safe_serialization=True)
    training.save_trained(accelerator.unwrap_model(encoder), partial / ENCODER_DIR)
    (partial / "config.toml").write_text(dumps_toml(config), encoding="utf-8")
    (partial / COMPLETE).write_text(json.dumps({"step": step}) + "\n", encoding="utf-8")
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)
    for old in checkpoint_dirs(out)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


# ---- the run -------------------------------------------------------------------------------------
def _due(step: int, every: int, last: int) -> bool:
    """Whether an every-N-steps event happens at ``step``: each ``every`` steps and at the last
    (``every`` 0: at the last only)."""
    return step == last or (every > 0 and step % every == 0)


def train(config: dict, resume: str | None = None, on_step: Callable[[dict], None] | None = None,
          on_note: Callable[[str], None] | None = None, allow_download: bool = False) -> TrainResult:
    """Run (or resume) a training run as ``config`` says; returns where the final encoder is.
    ``allow_download``: fetch a base or CLIP missing from the Hugging Face cache (a choice of the
    machine, not of the recipe: it is not part of the saved config)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler

    from ..faces import load_analyzer
    from ..models.attention import attention_kind
    from ..models.precision import resolve_mixed_precision
    from ..methods import get_method
    from ..faces.analyzer import AnalyzerOptions
    from ..locks import hold_output_lock, output_folder
    from ..models.registry import load_pipeline, resolve_device, resolve_model
    from ..images import expand_photos
    from . import data as training_data
    from . import report

    note = on_note or (lambda message: None)
    config = {**config, "train": dict(config["train"])}  # the caller's stays as given ("auto" too)
    config_precision = config["train"]["mixed_precision"]
    train_cfg, out_cfg, data_cfg = config["train"], config["output"], config["data"]
    out = Path(out_cfg["dir"]).expanduser()
    busy = "another 'faceid train' writes this output folder; give this run its own output.dir"
    with output_folder(out, out / METRICS), hold_output_lock(out / METRICS, hint=busy):
        checkpoint = resolve_resume(out, resume)  # a bad --resume fails before any loading
        if not resume and (checkpoint_dirs(out) or (out / METRICS).is_file()):
            # a fresh run here would mix its metrics into the old run's and leave its checkpoints
            # beside ones that 'latest' would then pick
            raise InvalidArgumentError(f"output.dir '{out}' already holds a training run",
                                       "go on with it with --resume latest, or give this run a new output.dir")
        device = resolve_device(train_cfg["device"])
        accumulation = train_cfg["batch_size"] // train_cfg["micro_batch_size"]
        # accelerate keeps one state per process and refuses a second precision in it; a library
        # caller may train twice in one process (bf16, then fp32): start this run's precision
        # afresh, keeping the process group a launcher made
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=False)
        # "auto" is settled here, and the saved config says what this machine trained in
        train_cfg["mixed_precision"] = resolve_mixed_precision(train_cfg["mixed_precision"], device)
        if config_precision == "auto":
            native = train_cfg["mixed_precision"] == "bf16"
            note(f"mixed precision auto: {'bf16' if native else 'fp32'} "
                 f"(this {device.type} {'computes' if native else 'has no'} native bfloat16)")
        accelerator = Accelerator(gradient_accumulation_steps=1, mixed_precision=train_cfg["mixed_precision"],
                                  cpu=device.type == "cpu", log_with=out_cfg["report_to"], project_dir=str(out))
        processes = accelerator.num_processes
        if accumulation % processes:
            raise InvalidArgumentError(
                f"train.batch_size {train_cfg['batch_size']} over {processes} processes of micro-batch "
                f"{train_cfg['micro_batch_size']} does not divide", "pick sizes whose ratio is a multiple of the processes")
        accumulation //= processes
        set_seed(train_cfg["seed"])
        seed = int(train_cfg["seed"])

        # the data's paths before the base's weights: a mistyped folder fails in a moment, not after loading
        token = GENERATION_DEFAULTS["identity_token"]  # the word generate reads the person from
        photos = expand_photos(list(data_cfg["reconstruction"]), what="data.reconstruction entry")
        if data_cfg["captions"] == "metadata":
            sources = training_data.captioned_sources(
                photos, data_cfg["caption_column"], token,
                roots=[Path(spec).expanduser() for spec in data_cfg["reconstruction"] if Path(spec).expanduser().is_dir()])
        else:
            sources = [training_data.Source("reconstruction", p, p) for p in photos]
        sources += training_data.read_triplets(list(data_cfg["triplets"]))
        if not sources:
            raise InvalidArgumentError("no training data", "set data.reconstruction (face photos) or data.triplets")
        if all(source.skipped for source in sources):  # no photo has a caption: say so before loading the base
            raise _no_usable_item(Counter(source.skipped for source in sources), data_cfg)
        pipe = load_pipeline(resolve_model(config["model"]["base"]), accelerator.device, torch.float32, allow_download)
        text_encoders = [m for m in (getattr(pipe, "text_encoder", None), getattr(pipe, "text_encoder_2", None))
                         if m is not None]
        for module in (pipe.unet, pipe.vae, *text_encoders):
            module.requires_grad_(False).eval()
        noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)  # the base's own schedule
        # the method's training functions: what trains, its loss, how it is saved
        training = get_method(config["model"]["method"]).training()
        encoder = training.build(config, pipe, allow_download=allow_download)
        start_fn = getattr(training, "start", None)  # a method's own preparation of a fresh run
        if start_fn is not None and checkpoint is None:
            captions = sorted({s.prompt for s in sources if s.prompt and not s.skipped} | set(data_cfg["templates"]))
            start_fn(encoder, pipe, config, captions, token, note)
        groups = training.trainable_groups(encoder, config)
        # a method whose loss needs the targets' CLIP image embeddings brings its scorer
        clip = getattr(encoder, "clip_scorer", None)
        image_cache: dict[int, torch.Tensor] = {}
        optimizer = torch.optim.AdamW(groups, weight_decay=train_cfg["weight_decay"])
        lr_scheduler = get_scheduler("cosine" if train_cfg["lr_schedule"] == "cosine" else "constant_with_warmup",
                                     optimizer, num_warmup_steps=train_cfg["lr_warmup_steps"],
                                     num_training_steps=train_cfg["steps"])

        # data: detect, align and cache once
        analyzer = load_analyzer(data_cfg["face_backend"], AnalyzerOptions(model=config["model"]["base"]))
        cache_dir = Path(data_cfg["cache_dir"] or out / "cache")
        prepared = training_data.prepare(sources, analyzer, encoder.crop_size, encoder.crop_zoom,
                                         data_cfg["resolution"], cache_dir)
        summary = prepared.summary()
        note(f"data: {summary['items']} items {summary['by_kind']}, skipped {sum(prepared.skipped.values())}"
             + (f" ({', '.join(f'{n} {r}' for r, n in prepared.skipped.items())})" if prepared.skipped else ""))
        if not prepared.items:
            raise _no_usable_item(prepared.skipped, data_cfg)
        by_kind = {kind: [i for i, item in enumerate(prepared.items) if item["kind"] == kind]
                   for kind in ("reconstruction", "triplet")}
        counts = {kind: len(v) for kind, v in by_kind.items()}
        dataset = training_data.TrainingSet(prepared.items, encoder.preprocess)
        latent_cache: dict[int, torch.Tensor] = {}
        # a frozen backbone gives each item the same features every epoch: compute them once
        frozen_features = getattr(training, "frozen_features", None)
        cache_features = bool(data_cfg["cache_features"] and frozen_features and train_cfg["backbone"] == "frozen")
        feature_cache: dict[int, torch.Tensor] = {}

        encoder, optimizer, lr_scheduler = accelerator.prepare(encoder, optimizer, lr_scheduler)
        start = 0
        if checkpoint is not None:
            accelerator.load_state(str(checkpoint / "state"))
            start = json.loads((checkpoint / COMPLETE).read_text())["step"]
            note(f"resumed from {checkpoint} at step {start}")
        if accelerator.is_main_process:
            (out / "config.toml").write_text(dumps_toml(config), encoding="utf-8")
            (out / "data.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        if out_cfg["report_to"]:
            _check_tracker(out_cfg["report_to"])
            accelerator.init_trackers("faceid-train", config=_flat(config))
        validation = [_validation_pair(pair) for pair in out_cfg["validation"]]
        # a resumed run keeps the lines up to its checkpoint; one that found no checkpoint, none
        history = _read_metrics(out / METRICS, start) if accelerator.is_main_process else []

        metrics: list[dict] = []
        metric_names: list[str] = []
        rank = accelerator.process_index
        templates = list(data_cfg["templates"])
        timer = time.perf_counter()
        training.set_train_mode(accelerator.unwrap_model(encoder), config)
        # the frozen base's attention (train.attention): the weights are the same either way
        with attention_kind(train_cfg["attention"], [pipe.unet], text_encoders):
            for step in range(start, train_cfg["steps"]):
                totals: dict[str, float] = {"loss": 0.0}
                for micro in range(accumulation):
                    picks = batch_indices(seed, step, micro, counts, float(data_cfg["triplet_fraction"]), rank,
                                          train_cfg["micro_batch_size"])
                    indices = [by_kind[kind][i] for kind, i in picks]
                    batch = [dataset[i] for i in indices]
                    crops = torch.stack([b["crop"] for b in batch]).to(accelerator.device)
                    caption_rng = np.random.default_rng([seed, step, micro, rank, 1])
                    captions = [training_data.caption_for(prepared.items[i], templates, caption_rng) for i in indices]
                    with torch.no_grad():
                        latents = []
                        for i, b in zip(indices, batch):
                            if i not in latent_cache:
                                value = encode_latents(pipe.vae, b["target"][None])[0]
                                if data_cfg["cache_latents"]:
                                    latent_cache[i] = value
                            else:
                                value = latent_cache[i]
                            latents.append(value)
                        latents = torch.stack(latents)
                    image_embeddings = None
                    if clip is not None:
                        missing = [i for i, b in zip(indices, batch) if i not in image_cache]
                        if missing:
                            targets = [_target_image(dataset[i]["target"]) for i in missing]
                            image_cache.update(zip(missing, clip.image_embeddings(targets)))
                        image_embeddings = torch.stack([image_cache[i] for i in indices]).to(accelerator.device)
                    extra = {}
                    if cache_features:
                        # one item at a time, like the latents: a feature never depends on which batch
                        # first met its item, so a resumed run computes the same bits
                        missing = [(i, b) for i, b in zip(indices, batch) if i not in feature_cache]
                        if missing:
                            unwrapped = accelerator.unwrap_model(encoder)
                            with torch.no_grad(), accelerator.autocast():
                                for i, b in missing:
                                    feature_cache[i] = frozen_features(unwrapped, b["crop"][None].to(accelerator.device))[0]
                        extra["features"] = torch.stack([feature_cache[i] for i in indices])
                    if train_cfg["face_loss_weight"]:
                        boxes = torch.stack([b["face_box"] for b in batch])
                        extra["loss_weights"] = face_loss_weights(boxes, latents.shape[-1], data_cfg["resolution"],
                                                                  train_cfg["face_loss_weight"]).to(accelerator.device)
                    generator = step_generator(seed, step * accumulation + micro, rank)
                    with accelerator.autocast():
                        loss, parts = training.training_loss(pipe, encoder, noise_scheduler, crops, latents, captions,
                                                             generator, config, token, image_embeddings=image_embeddings,
                                                             **extra)
                    accelerator.backward(loss / accumulation)
                    totals["loss"] += loss.item() / accumulation
                    for name, value in parts.items():
                        totals[name] = totals.get(name, 0.0) + float(value) / accumulation
                if train_cfg["max_grad_norm"]:
                    accelerator.clip_grad_norm_(encoder.parameters(), train_cfg["max_grad_norm"])
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                done = step + 1
                elapsed = time.perf_counter() - timer
                record = {"step": done, **{k: round(v, 6) for k, v in totals.items()},
                          "lr": lr_scheduler.get_last_lr()[0], "steps_per_s": round((done - start) / max(elapsed, 1e-9), 4)}
                if accelerator.device.type == "cuda":  # what a user sizes micro_batch_size by
                    record["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(accelerator.device) / 2**30, 3)
                metrics.append(record)
                if accelerator.is_main_process and _due(done, out_cfg["log_every"], train_cfg["steps"]):
                    with open(out / METRICS, "a", encoding="utf-8") as handle:
                        handle.write(json.dumps(record) + "\n")
                    history.append(record)
                    report.loss_plot(history, out / "loss.png")
                    if out_cfg["report_to"]:
                        accelerator.log(record, step=done)
                if validation and accelerator.is_main_process and _due(done, out_cfg["validate_every"], train_cfg["steps"]):
                    unwrapped = accelerator.unwrap_model(encoder)
                    report.validation_sheet(pipe, getattr(unwrapped, "encoder", unwrapped), analyzer, validation, done,
                                            out / "validation" / f"step-{done:07d}.png", steps=out_cfg["validation_steps"],
                                            seed=seed, model_name=config["model"]["base"], method=config["model"]["method"])
                if on_step:
                    on_step(record)
                if _due(done, out_cfg["checkpoint_every"], train_cfg["steps"]):
                    accelerator.wait_for_everyone()
                    if accelerator.is_main_process:
                        save_checkpoint(accelerator, encoder, config, out, done, out_cfg["keep_checkpoints"], training)
        accelerator.wait_for_everyone()
        final = out / ENCODER_DIR
        if accelerator.is_main_process:
            training.save_trained(accelerator.unwrap_model(encoder), final)
        accelerator.end_training()
    return TrainResult(steps=train_cfg["steps"], encoder_dir=final, metrics=metrics, data=summary)


def _target_image(target: torch.Tensor):
    """A training target (3, H, W) in [-1, 1] as the PIL image CLIP's processor takes."""
    from PIL import Image

    pixels = ((target.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(pixels)


def _read_metrics(path: Path, upto: int) -> list[dict]:
    """The metrics a resumed run had written before its checkpoint (later lines are dropped, and
    the file is rewritten so it holds each step once)."""
    if not path.is_file():
        return []
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("step", 0) <= upto:
            kept.append(record)
    path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    return kept


def _validation_pair(pair) -> dict:
    if not isinstance(pair, dict) or set(pair) != {"face", "prompt"}:
        raise InvalidArgumentError(f"output.validation entry {pair!r}", 'use {face = "photo.jpg", prompt = "S* ..."}')
    if not Path(pair["face"]).expanduser().is_file():
        raise InvalidArgumentError(f"validation face '{pair['face']}' not found", "fix output.validation")
    return {"face": str(Path(pair["face"]).expanduser()), "prompt": pair["prompt"]}


def _check_tracker(name: str) -> None:
    import importlib.util

    module = {"tensorboard": "tensorboard", "wandb": "wandb"}[name]
    if importlib.util.find_spec(module) is None:
        raise InvalidArgumentError(f"output.report_to = {name!r} but {module} is not installed",
                                   f"pip install {module}, or leave report_to unset")


def _flat(config: dict) -> dict:
    """Trackers take flat scalars: section.key → value (lists as text)."""
    flat = {}
    for section, values in config.items():
        for key, value in values.items():
            flat[f"{section}.{key}"] = value if isinstance(value, (int, float, str, bool)) else json.dumps(value)
    return flat
