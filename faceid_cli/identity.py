"""Identity files: encode a face once, generate with it many times.

A safetensors file holding ``words.0`` (k, D0) [and ``words.1`` (k, D1) for SDXL's second text
encoder] — the pseudo-words — and ``features``, the fused encoder features they were projected
from. Its metadata (``faceid_identity``, JSON) records the encoder (name, type, hash), the base model
family, k and the widths, each source photo's SHA-256, face index and box, and the faceid version.
Several photos of one person are fused by averaging their encoder features before the projection.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import __version__
from .errors import ImageError, InvalidArgumentError

FORMAT = "faceid-identity"
FORMAT_VERSION = 1
FAMILIES = {(768,): "sd1", (1024,): "sd2", (768, 1280): "sdxl", (32,): "tiny", (32, 32): "tiny-xl", (128,): "world",
            (128, 192): "world-xl"}


def family_of(word_dims: tuple[int, ...]) -> str:
    """The base-model family a set of word widths belongs to (SD 1.x, SD 2.x, SDXL, tiny)."""
    return FAMILIES.get(tuple(word_dims), "custom-" + "+".join(str(d) for d in word_dims))


@dataclass
class Identity:
    words: list[torch.Tensor]  # one (k, D_i) float32 tensor per text encoder
    features: torch.Tensor | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def word_dims(self) -> tuple[int, ...]:
        return tuple(int(w.shape[-1]) for w in self.words)

    @property
    def num_words(self) -> int:
        return int(self.words[0].shape[0])

    @property
    def hash(self) -> str:
        """Short content hash of the words: what generated images record as their identity."""
        digest = hashlib.sha256()
        for tensor in self.words:
            digest.update(tensor.detach().to(torch.float32).cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    def save(self, path: str | os.PathLike) -> Path:
        from safetensors.torch import save_file

        from .images import atomic_output

        path = Path(path)
        if path.suffix != ".safetensors":
            raise InvalidArgumentError(f"identity file '{path}' must end in .safetensors", "e.g. -o me.safetensors")
        tensors = {f"words.{i}": w.detach().to(torch.float32).cpu().contiguous() for i, w in enumerate(self.words)}
        if self.features is not None:
            tensors["features"] = self.features.detach().to(torch.float32).cpu().contiguous()
        metadata = {**self.metadata, "format": FORMAT, "format_version": FORMAT_VERSION,
                    "faceid_version": __version__, "word_dims": list(self.word_dims),
                    "num_words": self.num_words, "base_family": family_of(self.word_dims),
                    "identity_hash": self.hash}
        with atomic_output(path) as tmp:
            save_file(tensors, str(tmp), metadata={"faceid_identity": json.dumps(metadata, sort_keys=True)})
        self.metadata = metadata
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Identity:
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise ImageError(f"identity file '{path}' does not exist", "make one with 'faceid encode FACE -o FILE'")
        try:
            with safe_open(str(path), framework="pt") as handle:
                raw = (handle.metadata() or {}).get("faceid_identity")
                keys = set(handle.keys())
                words = [handle.get_tensor(f"words.{i}") for i in range(len(keys)) if f"words.{i}" in keys]
                features = handle.get_tensor("features") if "features" in keys else None
        except (OSError, ValueError, SafetensorError) as exc:
            raise ImageError(f"cannot read identity file '{path}': {exc}", "re-create it with 'faceid encode'") from None
        if raw is None or not words:
            raise ImageError(f"'{path}' is a safetensors file but not a faceid identity file",
                             "make one with 'faceid encode FACE -o FILE'")
        metadata = json.loads(raw)
        if metadata.get("format_version", 0) > FORMAT_VERSION:
            raise ImageError(f"identity file '{path}' was written by a newer faceid ({metadata.get('faceid_version')})",
                             "upgrade faceid")
        return cls(words=[w.to(torch.float32) for w in words], features=features, metadata=metadata)

    def check_compatible(self, word_dims: tuple[int, ...], source: str) -> None:
        """Refuse words that cannot fit the model (an encoder mismatch is only warned about)."""
        if tuple(self.word_dims) != tuple(word_dims):
            raise InvalidArgumentError(
                f"identity '{source}' was made for {family_of(self.word_dims)} (word widths "
                f"{list(self.word_dims)}) but the model takes {family_of(word_dims)} {list(word_dims)}",
                "use --model of the same family, or re-encode the face with this model",
            )


def is_identity_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".safetensors"
