"""The face-analyzer interface and the choice between backends.

A backend finds faces (box, score, five landmarks) and turns one into an L2-normalised identity
embedding. ``load_analyzer("auto")`` picks the world's own backend for the miniature world's models,
else insightface when a local model pack is present (what the ID-preserving systems this tool
implements were trained with), otherwise dlib, which works offline out of the box.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InvalidArgumentError
from ..names import FACE_BACKENDS, WORLD_MODELS
from .face import Face, select_face

BACKENDS = FACE_BACKENDS


class FaceAnalyzer:
    """What every backend provides. Subclasses set the class attributes and two methods."""

    name: str = ""
    embedding_dim: int = 0
    #: cosine similarity at or above which two faces are judged the same person
    same_person_threshold: float = 0.5

    def detect(self, image: Image.Image) -> list[Face]:
        """Faces in an upright RGB image, largest first, without embeddings."""
        raise NotImplementedError

    def embed(self, image: Image.Image, face: Face) -> np.ndarray:
        """The L2-normalised identity embedding of ``face`` (found in ``image``)."""
        raise NotImplementedError

    @property
    def description(self) -> str:
        """A short human description: backend and where its models came from."""
        return self.name

    def analyze(self, image: Image.Image) -> list[Face]:
        """Detect and embed every face."""
        return [face.with_embedding(self.embed(image, face)) for face in self.detect(image)]

    def identity(self, image: Image.Image, face_index: int = 0, source: str = "image") -> Face:
        """Detect, pick face ``face_index`` (largest first) and embed it; errors name ``source``."""
        face = select_face(self.detect(image), face_index, source)
        return face.with_embedding(self.embed(image, face))


def downscale_for_detection(image: Image.Image, max_side: int) -> tuple[Image.Image, float]:
    """A copy whose long side is at most ``max_side``, and the factor it was scaled by.

    Detectors run on this copy and boxes are mapped back by dividing by the factor: a 4000x2700
    photo costs dlib's HOG about 4 s at full size and about 0.1 s at 1024 px.
    """
    long_side = max(image.size)
    if long_side <= max_side:
        return image, 1.0
    scale = max_side / long_side
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0), scale


@dataclass(frozen=True)
class AnalyzerOptions:
    """Where backends look for their models; constructor arguments of the analyzers."""

    insightface_root: Path | None = None
    insightface_pack: str | None = None
    detection_size: int | None = None
    #: the model the faces are for: ``auto`` picks the world's own backend for the world's models
    model: str | None = None

    @classmethod
    def for_model(cls, options: "AnalyzerOptions | None", model: str | None) -> "AnalyzerOptions":
        """``options`` (or the defaults) for faces of ``model``, unless they already name one: so
        ``--backend auto`` picks the world's own backend for the world's models whoever passes them."""
        options = options or cls()
        return options if options.model or not model else replace(options, model=model)


def resolve_backend(backend: str, options: AnalyzerOptions = AnalyzerOptions()) -> str:
    """Turn ``auto`` into a concrete backend name without loading any model."""
    if backend not in BACKENDS:
        raise InvalidArgumentError(
            f"unknown face backend '{backend}'", f"use one of: {', '.join(BACKENDS)}"
        )
    if backend != "auto":
        return backend
    if options.model in WORLD_MODELS:
        return "world"
    from .backend_insightface import find_pack

    if importlib.util.find_spec("onnxruntime") is not None and find_pack(
        options.insightface_root, options.insightface_pack
    ):
        return "insightface"
    return "dlib"


def load_analyzer(backend: str = "auto", options: AnalyzerOptions = AnalyzerOptions()) -> FaceAnalyzer:
    """Build the analyzer for ``backend`` (one of :data:`~faceid_cli.names.FACE_BACKENDS`)."""
    name = resolve_backend(backend, options)
    if name == "world":
        from .backend_world import WorldFaceAnalyzer

        return WorldFaceAnalyzer()
    if name == "insightface":
        from .backend_insightface import InsightFaceAnalyzer

        kwargs = {"detection_size": options.detection_size} if options.detection_size else {}
        return InsightFaceAnalyzer(
            root=options.insightface_root, pack=options.insightface_pack, **kwargs
        )
    from .backend_dlib import DlibAnalyzer

    kwargs = {"detection_size": options.detection_size} if options.detection_size else {}
    return DlibAnalyzer(**kwargs)
