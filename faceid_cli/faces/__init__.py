"""Face analysis: detection, five-point landmarks, alignment and identity embeddings."""

from .alignment import ARCFACE_TEMPLATE_112, align_face, alignment_matrix, arcface_template
from .analyzer import BACKENDS, AnalyzerOptions, FaceAnalyzer, load_analyzer, resolve_backend
from .face import LANDMARK_NAMES, Face, cosine_similarity, select_face, sort_largest_first

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "BACKENDS",
    "LANDMARK_NAMES",
    "AnalyzerOptions",
    "Face",
    "FaceAnalyzer",
    "align_face",
    "alignment_matrix",
    "arcface_template",
    "cosine_similarity",
    "load_analyzer",
    "resolve_backend",
    "select_face",
    "sort_largest_first",
]
