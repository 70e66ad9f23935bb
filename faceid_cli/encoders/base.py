"""What identity encoders share: a JSON config that rebuilds the module, safetensors weights, a
content hash, and the split of their output into one word tensor per text encoder.

A checkpoint is a folder with ``config.json`` and ``model.safetensors`` (the config is also kept in
the safetensors metadata, so a lone ``.safetensors`` file loads too). Nothing else is ever written;
pickle checkpoints are only read, with ``torch.load(weights_only=True)``.

A folder may leave out tensors that another checkpoint beside it holds bit for bit (a frozen face
backbone, saved once): ``shared_weights.json`` maps a key prefix to that checkpoint's folder,
relative to this one. Saving checks the tensors are equal, so a shared checkpoint loads to exactly
what was saved.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import InvalidArgumentError, MissingModelError
from ..images import atomic_output

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
SHARED_WEIGHTS_NAME = "shared_weights.json"
ENCODER_TYPES: dict[str, type[IdentityEncoder]] = {}


class IdentityEncoder(nn.Module):
    """Base of the encoders: subclasses define ``encoder_type``, ``config``, ``preprocess``,
    ``features`` and ``words_from_features``."""

    encoder_type = ""
    #: side of the aligned face crop the encoder takes, and the ArcFace-template zoom for it
    crop_size = 112
    crop_zoom = 1.0

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.encoder_type:
            ENCODER_TYPES[cls.encoder_type] = cls

    def __init__(self):
        super().__init__()
        self.name = ""  # set by the loader: where the weights came from
        self._hash: str | None = None

    # --- what subclasses implement ------------------------------------------------------------
    @property
    def config(self) -> dict:
        raise NotImplementedError

    @property
    def word_dims(self) -> tuple[int, ...]:
        return tuple(self.config["word_dims"])

    @property
    def num_words(self) -> int:
        return int(self.config["num_words"])

    def preprocess(self, crop) -> torch.Tensor:
        """An aligned RGB face crop (PIL) to the (3, H, W) tensor ``features`` takes."""
        raise NotImplementedError

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → (B, F): the identity features that photos of one person are fused over."""
        raise NotImplementedError

    def words_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """(B, F) → (B, k, sum(word_dims))."""
        raise NotImplementedError

    # --- shared -------------------------------------------------------------------------------
    def forward(self, pixels: torch.Tensor | None = None, *, features: torch.Tensor | None = None) -> torch.Tensor:
        """Words of face crops, or of their ``features`` computed earlier (training caches a frozen
        backbone's features; they pass through here so a DDP wrapper still sees the forward)."""
        return self.words_from_features(self.features(pixels) if features is None else features)

    def split_words(self, words: torch.Tensor) -> list[torch.Tensor]:
        """(…, k, sum(dims)) → one (…, k, dim) tensor per text encoder."""
        return list(torch.split(words, list(self.word_dims), dim=-1))

    @property
    def content_hash(self) -> str:
        """SHA-256 of the config and every tensor (name, dtype, shape, bytes): the same weights give
        the same hash. Streamed tensor by tensor, so a ViT-L encoder is never copied whole."""
        if self._hash is None:
            digest = hashlib.sha256(_dumps(self.config).encode("utf-8"))
            for name, tensor in sorted(self.state_dict().items()):
                tensor = tensor.detach().cpu().contiguous()
                digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode("utf-8"))
                digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
            self._hash = digest.hexdigest()
        return self._hash

    def save_pretrained(self, folder: str | os.PathLike, shared: dict[str, str] | None = None) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``folder`` (atomically each).

        ``shared`` maps key prefixes (``"backbone."``) to checkpoint folders relative to ``folder``
        whose tensors equal this module's under that prefix: those are not written again, and
        ``shared_weights.json`` says where they are. A tensor that differs is an error."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        for prefix, relative in (shared or {}).items():
            state = _drop_shared(state, prefix, folder / relative)
        with atomic_output(folder / WEIGHTS_NAME) as tmp:
            save_file(state, str(tmp), metadata={"config": _dumps(self.config), "format": "pt"})
        with atomic_output(folder / CONFIG_NAME) as tmp:
            tmp.write_text(json.dumps(self.config, indent=2) + "\n", encoding="utf-8")
        if shared:
            with atomic_output(folder / SHARED_WEIGHTS_NAME) as tmp:
                tmp.write_text(json.dumps(dict(shared), indent=2) + "\n", encoding="utf-8")
        else:
            (folder / SHARED_WEIGHTS_NAME).unlink(missing_ok=True)
        return folder


def _drop_shared(state: dict, prefix: str, other: Path) -> dict:
    """``state`` without its ``prefix`` tensors, after checking ``other`` holds each bit for bit."""
    from safetensors.torch import load_file

    theirs = load_file(str(other / WEIGHTS_NAME))
    mine = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not mine:
        raise ValueError(f"no tensor of this encoder starts with {prefix!r}")
    for key, tensor in mine.items():
        if key not in theirs or theirs[key].dtype != tensor.dtype or not torch.equal(theirs[key], tensor):
            raise ValueError(f"tensor {prefix}{key} differs from '{other}': it cannot be shared")
    return {k: v for k, v in state.items() if not k.startswith(prefix)}


def _read_shared(folder: Path, path: Path) -> dict:
    """The tensors a checkpoint folder takes from its neighbours (``shared_weights.json``), with their
    prefixes added back."""
    from safetensors.torch import load_file

    state = {}
    for prefix, relative in json.loads((folder / SHARED_WEIGHTS_NAME).read_text(encoding="utf-8")).items():
        other = folder / relative / WEIGHTS_NAME
        if not other.is_file():
            raise MissingModelError(
                f"encoder checkpoint '{path}' takes its {prefix!r} tensors from '{other}', which is missing",
                "keep the folders side by side as they were saved, or re-save the encoder whole",
            )
        state.update({prefix + k: v for k, v in load_file(str(other), device="cpu").items()})
    return state


def _dumps(config: dict) -> str:
    return json.dumps(config, sort_keys=True)


def build_encoder(config: dict) -> IdentityEncoder:
    """Rebuild an encoder from its config (random weights)."""
    # importing the modules registers their classes
    from . import clip_image, faceclip, m2  # noqa: F401

    kind = config.get("encoder_type")
    if kind not in ENCODER_TYPES:
        raise InvalidArgumentError(
            f"unknown encoder_type {kind!r} in encoder config", f"use one of: {', '.join(ENCODER_TYPES)}"
        )
    return ENCODER_TYPES[kind].from_config(config)


def load_encoder(path: str | os.PathLike, device: str | torch.device = "cpu") -> IdentityEncoder:
    """Load a checkpoint folder or ``.safetensors`` file written by ``save_pretrained``."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    weights = path / WEIGHTS_NAME if path.is_dir() else path
    if not weights.is_file():
        raise MissingModelError(
            f"encoder checkpoint '{path}' not found",
            "pass a folder with config.json and model.safetensors (see 'faceid train'), or a .safetensors file",
        )
    if weights.suffix != ".safetensors":
        raise InvalidArgumentError(
            f"encoder checkpoint '{weights}' is not a .safetensors file",
            "faceid reads encoders only as safetensors + JSON config",
        )
    config_file = weights.parent / CONFIG_NAME
    try:
        if config_file.is_file():
            config = json.loads(config_file.read_text(encoding="utf-8"))
        else:
            with safe_open(str(weights), framework="pt") as handle:
                config = json.loads((handle.metadata() or {})["config"])
        state = load_file(str(weights), device="cpu")
        if (weights.parent / SHARED_WEIGHTS_NAME).is_file():
            state = {**_read_shared(weights.parent, path), **state}
    except (OSError, KeyError, ValueError, SafetensorError) as exc:
        raise MissingModelError(
            f"cannot read encoder checkpoint '{path}': {exc}", "the file is damaged or not an encoder"
        ) from None
    encoder = build_encoder(config)
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise MissingModelError(
            f"encoder checkpoint '{path}' does not match its config "
            f"({len(missing)} missing, {len(unexpected)} unexpected keys, e.g. {(missing or unexpected)[0]})",
            "re-save it with 'faceid train' or fix config.json",
        )
    encoder.name = str(path)
    return encoder.to(device).eval()


#: files read as pickled state dicts (never written)
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def pickle_problem(exc: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in a few words for a one-line error
    (torch's own message suggests turning weights_only off, which faceid never does)."""
    text = str(exc)
    if "Weights only load failed" in text:
        return "not a weights-only PyTorch file (faceid never unpickles code)"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first or f"{type(exc).__name__} (empty or truncated file?)"


def read_pickle_state_dict(path: str | os.PathLike) -> dict:
    """A ``.pt``/``.pth``/``.bin``/``.ckpt`` state dict, read safely (tensors only, no code)."""
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return state


def read_state_dict(path: str | os.PathLike) -> dict:
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    return read_pickle_state_dict(path)
