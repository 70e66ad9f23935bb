"""dlib backend: HOG detector, 68-point landmarks reduced to the five ArcFace points, and dlib's
128-D ResNet face descriptor (99.38% on LFW). Works offline: the model files ship in the PyPI
package ``face_recognition_models`` and dlib itself in ``dlib-bin``.
"""

from __future__ import annotations

import importlib.util
import os
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import DLIB_MODELS_ENV
from ..errors import BackendUnavailableError, MissingModelError
from .analyzer import FaceAnalyzer, downscale_for_detection
from .face import Face, l2_normalize, sort_largest_first


LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"
RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"


def find_dlib_models() -> Path:
    """The folder with dlib's model files: ``$FACEID_DLIB_MODELS`` or face_recognition_models'.

    ``face_recognition_models/__init__.py`` imports ``pkg_resources``, which current setuptools
    no longer has, so the package is located without importing it.
    """
    if os.environ.get(DLIB_MODELS_ENV):
        return Path(os.environ[DLIB_MODELS_ENV])
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingModelError(
            "dlib's model files are not installed (package face_recognition_models)",
            f"run 'pip install face_recognition_models' or set {DLIB_MODELS_ENV} to a folder with "
            f"{LANDMARK_MODEL} and {RECOGNITION_MODEL}",
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class DlibAnalyzer(FaceAnalyzer):
    name = "dlib"
    embedding_dim = 128
    # dlib's own rule is Euclidean distance < 0.6 between descriptors of norm ~1.4, which is a
    # cosine of about 0.91; on the bundled test photos same-person pairs score >= 0.93 and
    # different people <= 0.88.
    same_person_threshold = 0.905

    def __init__(self, models_dir: str | os.PathLike | None = None, detection_size: int = 1024):
        try:
            import dlib
        except ImportError as exc:
            raise BackendUnavailableError(
                f"the dlib face backend cannot be imported ({exc})", "run 'pip install dlib-bin'"
            ) from None
        self._dlib = dlib
        self.models_dir = Path(models_dir) if models_dir else find_dlib_models()
        for filename in (LANDMARK_MODEL, RECOGNITION_MODEL):
            if not (self.models_dir / filename).is_file():
                raise MissingModelError(
                    f"dlib model file '{self.models_dir / filename}' is missing",
                    "reinstall face_recognition_models or set " + DLIB_MODELS_ENV,
                )
        self.detection_size = int(detection_size)

    @property
    def description(self) -> str:
        return "dlib (HOG detector, ResNet-128 embeddings)"

    # Models load lazily (detection alone never pays for the recogniser) and once per process:
    # loading them takes ~1.8 s, and batch jobs or tests build many analyzers.
    @property
    def _detector(self):
        return _load_detector()

    @property
    def _landmarker(self):
        return _load_model("shape_predictor", self.models_dir / LANDMARK_MODEL)

    @property
    def _recognizer(self):
        return _load_model("face_recognition_model_v1", self.models_dir / RECOGNITION_MODEL)

    def detect(self, image: Image.Image) -> list[Face]:
        pixels = np.asarray(image)
        small, scale = downscale_for_detection(image, self.detection_size)
        # HOG finds faces down to ~80 px; small photos are searched at twice their size.
        upsample = 1 if max(small.size) <= self.detection_size // 2 else 0
        rects, scores, _ = self._detector.run(np.asarray(small), upsample, 0.0)
        faces = []
        for rect, score in zip(rects, scores):
            bbox = (
                rect.left() / scale,
                rect.top() / scale,
                (rect.right() + 1) / scale,
                (rect.bottom() + 1) / scale,
            )
            shape = self._landmarker(pixels, self._rectangle(bbox))
            faces.append(Face(bbox=bbox, score=float(score), landmarks=_five_points(shape)))
        return sort_largest_first(faces)

    def embed(self, image: Image.Image, face: Face) -> np.ndarray:
        pixels = np.asarray(image)
        shape = self._landmarker(pixels, self._rectangle(face.bbox))
        return l2_normalize(np.asarray(self._recognizer.compute_face_descriptor(pixels, shape)))

    def _rectangle(self, bbox):
        x1, y1, x2, y2 = (int(round(v)) for v in bbox)
        return self._dlib.rectangle(x1, y1, x2 - 1, y2 - 1)


@cache
def _load_detector():
    import dlib

    return dlib.get_frontal_face_detector()


@cache
def _load_model(kind: str, path: Path):
    import dlib

    return getattr(dlib, kind)(str(path))


def _five_points(shape) -> np.ndarray:
    """Eye centres, nose tip and mouth corners from dlib's 68-point (iBUG 300-W) layout."""
    points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
    return np.stack(
        [points[36:42].mean(axis=0), points[42:48].mean(axis=0), points[30], points[48], points[54]]
    )
