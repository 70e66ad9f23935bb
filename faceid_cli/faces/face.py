"""The Face record every backend returns, and the rule for picking one face out of many."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import FaceIndexError, NoFaceError

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face, in the pixel coordinates of the upright image it was found in.

    ``landmarks`` are the five ArcFace points (image-left eye, image-right eye, nose tip, image-left
    and image-right mouth corner) as a (5, 2) float array. ``score`` is the backend's own detection
    confidence (dlib: HOG SVM margin; insightface: SCRFD probability). ``embedding`` is the
    L2-normalised identity vector once a backend has computed it.
    """

    bbox: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray
    embedding: np.ndarray | None = field(default=None, repr=False)

    @property
    def width(self) -> float:
        return self.bbox[2] - self.bbox[0]

    @property
    def height(self) -> float:
        return self.bbox[3] - self.bbox[1]

    @property
    def size(self) -> float:
        """Short side of the box in pixels (the paper keeps faces whose short side > 128 px)."""
        return min(self.width, self.height)

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def with_embedding(self, embedding: np.ndarray) -> Face:
        return Face(self.bbox, self.score, self.landmarks, embedding)

    def to_dict(self) -> dict:
        return {
            "bbox": [round(float(v), 2) for v in self.bbox],
            "score": round(float(self.score), 4),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
            "size": round(float(self.size), 1),
        }


def sort_largest_first(faces: list[Face]) -> list[Face]:
    """Faces are numbered largest box first, so index 0 is the default face of a photo."""
    return sorted(faces, key=lambda face: (-face.area, face.bbox[0], face.bbox[1]))


def select_face(faces: list[Face], index: int, source: str) -> Face:
    """Return face ``index`` of ``faces`` (largest first) or raise the one-line error."""
    if not faces:
        raise NoFaceError(
            f"no face found in '{source}'",
            "use a photo where the face is clearly visible, frontal and at least ~80 px wide",
        )
    if not 0 <= index < len(faces):
        raise FaceIndexError(
            f"--face-index {index} is out of range: '{source}' has {len(faces)} "
            f"face{'s' if len(faces) != 1 else ''}",
            f"use 0 to {len(faces) - 1} (see 'faceid detect {source}')",
        )
    return faces[index]


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def l2_normalize(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32).ravel()
    return vector / max(float(np.linalg.norm(vector)), 1e-12)
