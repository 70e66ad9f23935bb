"""Identity encoders: the face ViT backbone, DreamIdentity's M² encoder, the CLIP-image baseline."""

from .base import IdentityEncoder, build_encoder, load_encoder
from .face_vit import FaceViT, FaceViTConfig

__all__ = ["FaceViT", "FaceViTConfig", "IdentityEncoder", "build_encoder", "load_encoder"]
