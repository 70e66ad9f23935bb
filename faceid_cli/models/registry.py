"""Which models faceid knows, where they are looked for, and how they are loaded.

A model identifier is one of: ``tiny`` / ``tiny-xl`` (built in code), ``world`` / ``world-xl`` (the
miniature world's trained pipelines, shipped as diffusers folders and loaded like any local
folder), an alias of a real base (``sd21-base``, ``sd15``, ``sdxl``), a diffusers repo id, a local
diffusers folder, or a single-file ``.safetensors`` checkpoint. Repos are looked up in the Hugging Face cache (``HF_HOME`` /
``HF_HUB_CACHE``) offline; downloading needs ``allow_download=True``. Availability is checked from
the file system before anything heavy is imported or loaded.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidArgumentError, MissingModelError
from ..names import DTYPES, KNOWN_MODELS, MODEL_ALIASES, TINY_MODELS, WORLD_MODELS

ALIASES = MODEL_ALIASES
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_repo_id(name: str) -> bool:
    """Whether ``name`` has the shape of a Hugging Face repo id (owner/name)."""
    return bool(_REPO_ID.match(name))


@dataclass(frozen=True)
class ModelRef:
    name: str  # what the user typed
    kind: str  # "tiny", "repo", "folder" or "file"
    location: str  # tiny name, repo id, or path

    @property
    def is_tiny(self) -> bool:
        return self.kind == "tiny"

    @property
    def is_world(self) -> bool:
        """One of the miniature world's shipped models (a local diffusers folder)."""
        return self.name in WORLD_MODELS


def hub_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home) / "hub"


def resolve_model(name: str) -> ModelRef:
    """Classify a model identifier (no file is read beyond existence checks)."""
    if name in TINY_MODELS:
        return ModelRef(name, "tiny", name)
    if name in WORLD_MODELS:
        from ..world import component_path

        return ModelRef(name, "folder", str(component_path(name, check=False)))
    if name in ALIASES:
        return ModelRef(name, "repo", ALIASES[name])
    path = Path(name).expanduser()
    if path.is_dir():
        return ModelRef(name, "folder", str(path))
    if path.is_file() or path.suffix in (".safetensors", ".ckpt", ".pt", ".bin"):
        return ModelRef(name, "file", str(path))
    if is_repo_id(name):
        return ModelRef(name, "repo", name)
    raise InvalidArgumentError(
        f"unknown model '{name}'",
        f"use {', '.join(KNOWN_MODELS)}, a diffusers repo id, a folder or a .safetensors file "
        "(see 'faceid models')",
    )


def find_in_cache(repo_id: str, filename: str = "model_index.json") -> Path | None:
    """The cached snapshot folder of ``repo_id`` holding ``filename`` (a diffusers pipeline's
    ``model_index.json`` unless told), if any."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=str(hub_cache_dir()))
    return Path(found).parent if isinstance(found, str) else None


def check_model_available(ref: ModelRef, allow_download: bool = False) -> None:
    """Raise the one-line error now if loading ``ref`` would fail for want of files."""
    if ref.kind == "tiny":
        return
    if ref.kind == "folder":
        if ref.is_world and not (Path(ref.location) / "model_index.json").is_file():
            from ..world import BUILD_WORLD_XL

            command = BUILD_WORLD_XL if ref.name == "world-xl" else "faceid world build"
            raise MissingModelError(f"the world's model '{ref.name}' is not at '{ref.location}'",
                                    f"run '{command}' (or set FACEID_WORLD_WEIGHTS to a folder it wrote)")
        if not (Path(ref.location) / "model_index.json").is_file():
            raise MissingModelError(
                f"'{ref.location}' is not a diffusers model folder (no model_index.json)",
                "pass the folder that holds model_index.json, unet/, vae/ and text_encoder/",
            )
        return
    if ref.kind == "file":
        path = Path(ref.location)
        if not path.is_file():
            raise MissingModelError(f"model file '{path}' does not exist", "check the path")
        if path.suffix != ".safetensors":
            raise InvalidArgumentError(
                f"model file '{path}' is a pickle checkpoint ({path.suffix})",
                "convert it to .safetensors; faceid does not unpickle model files",
            )
        return
    if allow_download or find_in_cache(ref.location):
        return
    alias = f" ({ref.location})" if ref.location != ref.name else ""
    raise MissingModelError(
        f"model '{ref.name}'{alias} is not in the Hugging Face cache at {hub_cache_dir()}",
        f"download it once with 'hf download {ref.location}' (or set HF_HOME to a cache that has it), "
        "or pass --allow-download",
    )


def resolve_device(device: str = "auto"):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise InvalidArgumentError(f"unknown device '{device}'", "use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InvalidArgumentError(f"--device {device}: no CUDA device is available here", "use --device cpu")
    return resolved


def resolve_dtype(dtype: str, device):
    import torch

    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if dtype not in table:
        raise InvalidArgumentError(f"unknown dtype '{dtype}'", f"use one of: {', '.join(DTYPES)}")
    if dtype == "fp16" and device.type == "cpu":
        raise InvalidArgumentError("--dtype fp16 is not supported on the CPU", "use fp32 or bf16 there")
    return table[dtype]


@contextmanager
def library_progress_bars_off(*libraries: str):
    """The named libraries' own bars (diffusers' "Loading pipeline components", transformers'
    "Loading weights"; default: both) off while faceid loads a model: faceid shows its own progress,
    and on a terminal only. Name only what the load uses: importing diffusers costs seconds."""
    import importlib

    modules = [importlib.import_module(f"{name}.utils.logging") for name in libraries or ("diffusers", "transformers")]
    states = [(library, library.is_progress_bar_enabled()) for library in modules]
    for library, _ in states:
        library.disable_progress_bar()
    try:
        yield
    finally:
        for library, enabled in states:
            if enabled:
                library.enable_progress_bar()


def load_pipeline(ref: ModelRef, device, dtype, allow_download: bool = False):
    """A diffusers SD or SDXL text-to-image pipeline on ``device`` in ``dtype``."""
    import torch

    check_model_available(ref, allow_download)
    if ref.is_tiny:
        from .tiny import build_tiny_sd, build_tiny_sdxl

        pipe = build_tiny_sd() if ref.location == "tiny" else build_tiny_sdxl()
    else:
        with library_progress_bars_off():
            pipe = _load_real_pipeline(ref, dtype, allow_download)
    if ref.is_tiny and dtype != torch.float32:
        pipe = pipe.to(dtype=dtype)  # real pipelines were loaded in `dtype` already
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _load_real_pipeline(ref: ModelRef, dtype, allow_download: bool):
    from diffusers import DiffusionPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

    # the cache folder is passed explicitly: huggingface_hub reads HF_HOME only when first imported
    kwargs = {"dtype": dtype, "local_files_only": not allow_download, "cache_dir": str(hub_cache_dir())}
    try:
        if ref.kind == "file":
            cls = StableDiffusionXLPipeline if _is_sdxl_checkpoint(ref.location) else StableDiffusionPipeline
            pipe = cls.from_single_file(ref.location, **kwargs)
        else:
            if _is_sd(ref):  # faceid never runs the SD safety checker (it is not a filter we ship)
                kwargs.update(safety_checker=None, requires_safety_checker=False)
            pipe = DiffusionPipeline.from_pretrained(ref.location, use_safetensors=True, **kwargs)
    except (OSError, ValueError) as exc:
        raise MissingModelError(
            f"cannot load model '{ref.name}': {str(exc).splitlines()[0]}",
            "check that the model is complete (safetensors weights) or pass --allow-download",
        ) from None
    if not isinstance(pipe, (StableDiffusionPipeline, StableDiffusionXLPipeline)):
        raise InvalidArgumentError(
            f"model '{ref.name}' is a {type(pipe).__name__}",
            "faceid conditions Stable Diffusion 1.x/2.x and SDXL text-to-image pipelines",
        )
    return pipe


def _is_sd(ref: ModelRef) -> bool:
    """Whether the model index names a plain SD pipeline (the only one with a safety checker)."""
    import json

    folder = Path(ref.location) if ref.kind == "folder" else find_in_cache(ref.location)
    if folder is None:
        return False
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError):
        return False
    return index.get("_class_name") == "StableDiffusionPipeline"


def _is_sdxl_checkpoint(path: str) -> bool:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as handle:
        return any(key.startswith("conditioner.embedders.1") for key in handle.keys())


def default_size(pipe) -> int:
    """The base's native resolution: UNet sample size times the VAE's downscale factor."""
    return int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
