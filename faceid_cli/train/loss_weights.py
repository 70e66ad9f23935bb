"""Per-cell weights of the diffusion loss: more weight where the face is.

A face is often a small part of the picture (a sixth of a world render, less in a half-length
photo), while the background, clothes and hat fill the rest. With a plain MSE most of the gradient
then asks the identity words for what the caption does not say (the background's colour), not for
the person. Weighting the latent cells under the face box shifts it back. Used by ``faceid train``
(``train.face_loss_weight``) and by the world's text-to-image recipe.
"""

from __future__ import annotations

import torch


def face_loss_weights(boxes: torch.Tensor, size: int, image_size: int, weight: float) -> torch.Tensor:
    """(B, 1, size, size) weights: 1 + ``weight`` on the latent cells whose centres the face boxes
    (B, 4: x1, y1, x2, y2 in pixels of an ``image_size`` square) cover, 1 elsewhere. A row of NaN
    (no face found in that target) weighs every cell 1."""
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) * image_size / size
    boxes = boxes.float()
    known = ~torch.isnan(boxes).any(dim=1)
    boxes = torch.nan_to_num(boxes)
    inside_x = (centres[None, :] >= boxes[:, 0:1]) & (centres[None, :] <= boxes[:, 2:3])
    inside_y = (centres[None, :] >= boxes[:, 1:2]) & (centres[None, :] <= boxes[:, 3:4])
    inside = inside_y[:, :, None] & inside_x[:, None, :] & known[:, None, None]
    return (1 + weight * inside.float())[:, None]


def weighted_mse(prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The mean squared error, each sample's cells weighted by ``weights`` (B, 1, h, w) rescaled to
    a mean of 1 per sample (so the loss keeps its scale and every sample its share); plain MSE
    when ``weights`` is None."""
    squared = (prediction.float() - target.float()).pow(2)
    if weights is None:
        return squared.mean()
    weights = weights.to(squared.device, squared.dtype)
    return (squared * weights / weights.mean(dim=(2, 3), keepdim=True)).mean()
