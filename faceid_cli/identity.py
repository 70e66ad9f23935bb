"""Identity files: encode a face once, generate with it many times.

A safetensors file holding what the method needs. Word methods (m2, clip-image): ``words.0`` (k, D0)
[and ``words.1`` (k, D1) for SDXL's second text encoder], the pseudo-words, and ``features``, the
fused encoder features they were projected from. FaceCLIP: each branch's identity vector and patch
tokens (``face_clip_l.identity``, ``face_clip_l.patches``, ...), since its conditioning depends on
the prompt. Its metadata (``faceid_identity``, JSON) records the method, the encoder (name, type,
hash), the base model family and the text towers' widths, each source photo's SHA-256, face index
and box, and the faceid version. Several photos of one person are fused by averaging their encoder
features. Files without a recorded method are M² files (every file before methods were modules).
"""

from __future__ import annotations

import hashlib
import json
import os
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


class Identity:
    """What an identity file holds: the method's tensors (``words.i`` and ``features`` for the word
    methods; each branch's ``identity`` and ``patches`` for FaceCLIP) and metadata."""

    def __init__(self, words: list[torch.Tensor] | None = None, features: torch.Tensor | None = None,
                 metadata: dict | None = None, tensors: dict[str, torch.Tensor] | None = None):
        self.tensors: dict[str, torch.Tensor] = dict(tensors or {})
        for i, word in enumerate(words or []):
            self.tensors[f"words.{i}"] = word
        if features is not None:
            self.tensors["features"] = features
        self.metadata: dict = dict(metadata or {})

    @property
    def method(self) -> str:
        # files from before methods were recorded everywhere hold M² words
        return self.metadata.get("method", "m2")

    @property
    def words(self) -> list[torch.Tensor]:
        """One (k, D_i) tensor per text encoder (word methods; empty for FaceCLIP)."""
        return [self.tensors[f"words.{i}"] for i in range(len(self.tensors)) if f"words.{i}" in self.tensors]

    @property
    def features(self) -> torch.Tensor | None:
        return self.tensors.get("features")

    @property
    def word_dims(self) -> tuple[int, ...]:
        """The widths of the text towers this identity is for."""
        if self.words:
            return tuple(int(w.shape[-1]) for w in self.words)
        return tuple(int(d) for d in self.metadata.get("word_dims", ()))

    @property
    def num_words(self) -> int:
        return int(self.words[0].shape[0]) if self.words else 0

    @property
    def hash(self) -> str:
        """Short content hash (of the words, or of every tensor for feature identities): what
        generated images record as their identity."""
        digest = hashlib.sha256()
        tensors = self.words or [self.tensors[name] for name in sorted(self.tensors)]
        for tensor in tensors:
            digest.update(tensor.detach().to(torch.float32).cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    def save(self, path: str | os.PathLike) -> Path:
        from safetensors.torch import save_file

        from .images import atomic_output

        path = Path(path)
        if path.suffix != ".safetensors":
            raise InvalidArgumentError(f"identity file '{path}' must end in .safetensors", "e.g. -o me.safetensors")
        tensors = {name: t.detach().to(torch.float32).cpu().contiguous() for name, t in self.tensors.items()}
        metadata = {**self.metadata, "format": FORMAT, "format_version": FORMAT_VERSION,
                    "faceid_version": __version__, "word_dims": list(self.word_dims),
                    "num_words": self.num_words, "base_family": family_of(self.word_dims), "method": self.method,
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
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        except (OSError, ValueError, SafetensorError) as exc:
            raise ImageError(f"cannot read identity file '{path}': {exc}", "re-create it with 'faceid encode'") from None
        if raw is None or not tensors:
            raise ImageError(f"'{path}' is a safetensors file but not a faceid identity file",
                             "make one with 'faceid encode FACE -o FILE'")
        metadata = json.loads(raw)
        if metadata.get("format_version", 0) > FORMAT_VERSION:
            raise ImageError(f"identity file '{path}' was written by a newer faceid ({metadata.get('faceid_version')})",
                             "upgrade faceid")
        return cls(tensors={name: t.to(torch.float32) for name, t in tensors.items()}, metadata=metadata)

    def check_method(self, method: str, source: str) -> None:
        if method != self.method:
            raise InvalidArgumentError(
                f"identity '{source}' was made with --method {self.method}, not {method}",
                f"pass --method {self.method}, or re-encode the face with --method {method}",
            )

    def check_compatible(self, word_dims: tuple[int, ...], source: str, method: str | None = None) -> None:
        """Refuse an identity that cannot fit the model or the method (an encoder mismatch is only
        warned about)."""
        if method is not None:
            self.check_method(method, source)
        if tuple(self.word_dims) != tuple(word_dims):
            raise InvalidArgumentError(
                f"identity '{source}' was made for {family_of(self.word_dims)} (word widths "
                f"{list(self.word_dims)}) but the model takes {family_of(word_dims)} {list(word_dims)}",
                "use --model of the same family, or re-encode the face with this model",
            )


def is_identity_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".safetensors"
