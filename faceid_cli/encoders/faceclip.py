"""FaceCLIP's joint ID-text encoder (the public FaceCLIP-SDXL release), in plain PyTorch.

Two branches, one per SDXL text tower (``face_clip_l``: CLIP L/14, 768 wide, QuickGELU;
``face_clip_g``: bigG/14, 1280 wide, GELU). Each branch:

1. encodes the aligned face with a face-recognition ViT (:class:`~.face_vit.FaceViT`, the one the
   M² encoder uses; FaceCLIP feeds it [0, 1] pixels) into an identity vector and 12×12 patch tokens;
2. runs its CLIP text tower (open_clip layout) on ``"Photo of a id person. " + text``, with the
   input embedding of that "id" token replaced by the projected identity vector;
3. fuses the text states with the face patches in a 6-layer fuser (GroundingDINO's feature
   enhancer: image↔text bi-attention, text self-attention, single-level deformable attention over
   the patch grid), and returns the fused text tokens.

The L and G outputs, concatenated, are SDXL's 77×2048 ``prompt_embeds``; G's pooled end-of-text
state is its ``pooled_prompt_embeds``. Module and parameter names follow the release, so its
``face_clip_encoder.pt`` (with ``model.`` removed from the keys) loads with ``strict=True``. Sizes
are configurable, so tests and the miniature world build small ones.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..names import FACECLIP_FACE_PLACEMENTS
from .base import IdentityEncoder
from .face_vit import FaceViT, FaceViTConfig

#: the release's prompt prefix; the face token replaces the input embedding of its "id" word
RELEASE_PREFIX = "Photo of a id person. "
RELEASE_ID_WORD = "id"
#: where the person goes in the texts :meth:`FaceClipEncoder.condition` reads (the FaceCLIP method
#: puts it where the prompt's S* was); :func:`tokenize` turns it into words
FACE_MARK = "\x00face\x00"


@dataclass(frozen=True)
class TextTowerConfig:
    width: int = 768
    layers: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    #: "quick_gelu" (OpenAI's L/14) or "gelu" (bigG/14)
    activation: str = "quick_gelu"


@dataclass(frozen=True)
class FuserConfig:
    layers: int = 6
    deformable_heads: int = 8
    deformable_points: int = 4
    ffn_dim: int = 2048
    text_heads: int = 4
    text_ffn_dim: int = 1024
    fusion_dim: int = 1024
    fusion_heads: int = 4
    fusion_init: float = 1e-4  # the bi-attention's layer scale at initialisation


@dataclass(frozen=True)
class FaceClipConfig:
    towers: tuple[TextTowerConfig, ...] = (
        TextTowerConfig(768, 12, 12, 4.0, "quick_gelu"), TextTowerConfig(1280, 32, 20, 4.0, "gelu"))
    face: FaceViTConfig = FaceViTConfig(pixel_range="zero_one")
    fuser: FuserConfig = FuserConfig()
    vocab_size: int = 49408
    context_length: int = 77
    prefix: str = RELEASE_PREFIX
    id_word: str = RELEASE_ID_WORD
    #: "prefix": the face token on the prefix's face word (the release's); "subject": on the face
    #: word of "a <id_word>" written where S* stood, no prefix (a prompt without S* gets the prefix)
    face_at: str = "prefix"
    #: side of the aligned crop faceid hands the encoder (the release's assets are 448 px); it is
    #: resized to the face ViT's 112 inside, bilinearly, as the release does
    crop_size: int = 448
    branch_names: tuple[str, ...] = field(default=("face_clip_l", "face_clip_g"))

    def __post_init__(self):
        if self.face_at not in FACECLIP_FACE_PLACEMENTS:
            raise ValueError(f"face_at {self.face_at!r}: use one of {', '.join(FACECLIP_FACE_PLACEMENTS)}")
        # one branch per text tower of the base (SD: one, SDXL: two); the release names them l and g
        if len(self.branch_names) < len(self.towers):
            raise ValueError(f"{len(self.towers)} text towers but branch names {list(self.branch_names)}")
        object.__setattr__(self, "branch_names", tuple(self.branch_names[: len(self.towers)]))

    def to_dict(self) -> dict:
        out = asdict(self)
        out["towers"] = [asdict(t) for t in self.towers]
        out["branch_names"] = list(self.branch_names)
        return out

    @classmethod
    def from_dict(cls, config: dict) -> FaceClipConfig:
        config = dict(config)
        config.pop("encoder_type", None)
        towers = tuple(TextTowerConfig(**t) for t in config.pop("towers", [asdict(t) for t in cls.towers]))
        face = FaceViTConfig(**{"pixel_range": "zero_one", **config.pop("face", {})})
        fuser = FuserConfig(**config.pop("fuser", {}))
        names = tuple(config.pop("branch_names", ("face_clip_l", "face_clip_g")))
        return cls(towers=towers, face=face, fuser=fuser, branch_names=names, **config)


# ---- the CLIP text tower (open_clip layout) ---------------------------------------------------------
class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, config: TextTowerConfig):
        super().__init__()
        width, hidden = config.width, int(config.width * config.mlp_ratio)
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, config.heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        act = QuickGELU() if config.activation == "quick_gelu" else nn.GELU()
        self.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(width, hidden), gelu=act, c_proj=nn.Linear(hidden, width)))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, config: TextTowerConfig):
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(config) for _ in range(config.layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, mask)
        return x


# ---- the fuser ---------------------------------------------------------------------------------
def deformable_sample(value: torch.Tensor, shape: tuple[int, int], locations: torch.Tensor,
                      weights: torch.Tensor) -> torch.Tensor:
    """Single-level deformable attention core (Deformable DETR): what ``grid_sample`` computes
    (bilinear, zero outside the grid, align_corners False), written as one matrix product.

    value (B, H*W, heads, dh); locations (B, Q, heads, P, 2) as (x, y) in [0, 1] of the grid;
    weights (B, Q, heads, P). Returns (B, Q, heads*dh).

    Bilinear sampling at pixel coordinate x is sum_j max(0, 1 - |x - j|) v_j over the grid's
    columns j, and the same over rows: a tent per axis, zero off the grid by construction. The
    points' tents, weighted and summed, make one (Q, H*W) mixing matrix per head, applied to the
    values by one batched product. On a 12x12 grid that matrix is small, and this replaces
    grid_sample (no bf16 kernel on the CPU, 2 ms a call in fp32 at full size) and its
    per-point products with one matmul; gradients reach the locations through the tents exactly
    as through grid_sample's bilinear weights.
    """
    batch, _, heads, dim = value.shape
    height, width = shape
    queries = locations.shape[1]
    # coordinates need more than half precision's 8-11 bits: the tents are built in fp32 at least
    compute = value.dtype if value.element_size() >= 4 else torch.float32
    locations, weights = locations.to(compute), weights.to(compute)
    pixel_x = locations[..., 0] * width - 0.5  # (B, Q, heads, P), pixel centres at integers
    pixel_y = locations[..., 1] * height - 0.5
    columns = torch.arange(width, device=value.device, dtype=compute)
    rows = torch.arange(height, device=value.device, dtype=compute)
    tent_x = (1 - (pixel_x[..., None] - columns).abs()).clamp_min(0)  # (B, Q, heads, P, W)
    tent_y = (1 - (pixel_y[..., None] - rows).abs()).clamp_min(0) * weights[..., None]  # (..., P, H)
    mixing = torch.einsum("bqhpi,bqhpj->bhqij", tent_y, tent_x).reshape(batch, heads, queries, height * width)
    out = mixing @ value.permute(0, 2, 1, 3).to(compute)  # (B, heads, Q, dh)
    return out.transpose(1, 2).reshape(batch, queries, heads * dim).to(value.dtype)


class DeformableAttention(nn.Module):
    """Multi-scale deformable attention at one level (the release's fuser uses one)."""

    def __init__(self, width: int, heads: int, points: int, levels: int = 1):
        super().__init__()
        self.heads, self.points, self.levels = heads, points, levels
        self.sampling_offsets = nn.Linear(width, heads * levels * points * 2)
        self.attention_weights = nn.Linear(width, heads * levels * points)
        self.value_proj = nn.Linear(width, width)
        self.output_proj = nn.Linear(width, width)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # Deformable DETR's initialisation: offsets start on a ring of directions, one per head
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.heads, dtype=torch.float32) * (2 * math.pi / self.heads)
        directions = torch.stack([angles.cos(), angles.sin()], -1)
        directions = directions / directions.abs().max(-1, keepdim=True).values
        bias = directions[:, None, None, :].repeat(1, self.levels, self.points, 1)
        bias = bias * torch.arange(1, self.points + 1, dtype=torch.float32)[None, None, :, None]
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(bias.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for linear in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(self, query: torch.Tensor, value: torch.Tensor, reference: torch.Tensor,
                shape: tuple[int, int]) -> torch.Tensor:
        """query (B, Q, D), value (B, H*W, D), reference (B, Q, 2) as (x, y) in [0, 1]."""
        batch, queries, _ = query.shape
        height, width = shape
        values = self.value_proj(value).reshape(batch, height * width, self.heads, -1)
        offsets = self.sampling_offsets(query).reshape(batch, queries, self.heads, self.points, 2)
        weights = self.attention_weights(query).reshape(batch, queries, self.heads, self.points).softmax(-1)
        normaliser = torch.tensor([width, height], dtype=offsets.dtype, device=offsets.device)
        locations = reference[:, :, None, None, :] + offsets / normaliser
        return self.output_proj(deformable_sample(values, shape, locations, weights))


class DeformableEncoderLayer(nn.Module):
    """Deformable self-attention over the face patches, then an FFN; post-norm."""

    def __init__(self, width: int, config: FuserConfig):
        super().__init__()
        self.self_attn = DeformableAttention(width, config.deformable_heads, config.deformable_points)
        self.norm1 = nn.LayerNorm(width)
        self.linear1 = nn.Linear(width, config.ffn_dim)
        self.linear2 = nn.Linear(config.ffn_dim, width)
        self.norm2 = nn.LayerNorm(width)

    def forward(self, x, pos, reference, shape):
        x = self.norm1(x + self.self_attn(x + pos, x, reference, shape))
        return self.norm2(x + self.linear2(F.relu(self.linear1(x))))


class TextEncoderLayer(nn.Module):
    """Vanilla post-norm self-attention layer over the text (query and key carry positions)."""

    def __init__(self, width: int, config: FuserConfig):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(width, config.text_heads, dropout=0.1, batch_first=True)
        self.linear1 = nn.Linear(width, config.text_ffn_dim)
        self.linear2 = nn.Linear(config.text_ffn_dim, width)
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x, pos):
        x = self.norm1(x + self.dropout(self._attend(x, pos)))
        return self.norm2(x + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x))))))

    def _attend(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """``self_attn(x + pos, x + pos, x)``, computed from the module's own weights: query and key
        share their input, so their projections are one matrix product, and the attention is
        one fused call (nn.MultiheadAttention runs three products when query is not value)."""
        attn, width = self.self_attn, x.shape[-1]
        query_key = F.linear(x + pos, attn.in_proj_weight[: 2 * width], attn.in_proj_bias[: 2 * width])
        value = F.linear(x, attn.in_proj_weight[2 * width:], attn.in_proj_bias[2 * width:])
        heads = [t.unflatten(-1, (attn.num_heads, -1)).transpose(1, 2) for t in (*query_key.chunk(2, -1), value)]
        drop = attn.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(*heads, dropout_p=drop)
        return attn.out_proj(out.transpose(1, 2).flatten(2))


class BiMultiHeadAttention(nn.Module):
    """Image↔text cross-attention in both directions from one score matrix (GLIP/GroundingDINO)."""

    def __init__(self, width: int, dim: int, heads: int, dropout: float = 0.1):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim ** -0.5
        self.dropout = dropout
        self.v_proj = nn.Linear(width, dim)
        self.l_proj = nn.Linear(width, dim)
        self.values_v_proj = nn.Linear(width, dim)
        self.values_l_proj = nn.Linear(width, dim)
        self.out_v_proj = nn.Linear(dim, width)
        self.out_l_proj = nn.Linear(dim, width)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # one score matrix q·kᵀ, softmaxed over the text for the image and over the image for the
        # text: two fused attention calls (kᵀ's scores are q's transposed), which skip the copies
        # that transposed operands cost a plain matmul
        q = self._heads(self.v_proj(image))
        k = self._heads(self.l_proj(text))
        image_values = self._heads(self.values_v_proj(image))
        text_values = self._heads(self.values_l_proj(text))
        drop = self.dropout if self.training else 0.0
        image_out = F.scaled_dot_product_attention(q, k, text_values, dropout_p=drop, scale=self.scale)
        text_out = F.scaled_dot_product_attention(k, q, image_values, dropout_p=drop, scale=self.scale)
        return (self.out_v_proj(image_out.transpose(1, 2).flatten(2)),
                self.out_l_proj(text_out.transpose(1, 2).flatten(2)))


class BiAttentionBlock(nn.Module):
    def __init__(self, width: int, config: FuserConfig):
        super().__init__()
        self.layer_norm_v = nn.LayerNorm(width)
        self.layer_norm_l = nn.LayerNorm(width)
        self.attn = BiMultiHeadAttention(width, config.fusion_dim, config.fusion_heads)
        self.gamma_v = nn.Parameter(config.fusion_init * torch.ones(width))
        self.gamma_l = nn.Parameter(config.fusion_init * torch.ones(width))

    def forward(self, image, text):
        image, text = self.layer_norm_v(image), self.layer_norm_l(text)
        delta_image, delta_text = self.attn(image, text)
        return image + self.gamma_v * delta_image, text + self.gamma_l * delta_text


class FuserEncoder(nn.Module):
    def __init__(self, width: int, config: FuserConfig):
        super().__init__()
        self.layers = nn.ModuleList(DeformableEncoderLayer(width, config) for _ in range(config.layers))
        self.text_layers = nn.ModuleList(TextEncoderLayer(width, config) for _ in range(config.layers))
        self.fusion_layers = nn.ModuleList(BiAttentionBlock(width, config) for _ in range(config.layers))


class TextFaceFuser(nn.Module):
    """Six rounds of (bi-attention, text self-attention, deformable attention over the patches);
    returns the text. ``enc_output``/``enc_output_norm`` are in the release's state dict but unused."""

    def __init__(self, width: int, config: FuserConfig):
        super().__init__()
        self.encoder = FuserEncoder(width, config)
        self.enc_output = nn.Linear(width, width)
        self.enc_output_norm = nn.LayerNorm(width)

    def forward(self, image, image_pos, text, text_pos, grid: int) -> torch.Tensor:
        centres = (torch.arange(grid, device=image.device, dtype=image.dtype) + 0.5) / grid
        y, x = torch.meshgrid(centres, centres, indexing="ij")
        reference = torch.stack([x.flatten(), y.flatten()], -1)[None].expand(image.shape[0], -1, -1)
        for deformable, text_layer, fusion in zip(self.encoder.layers, self.encoder.text_layers,
                                                  self.encoder.fusion_layers):
            image, text = fusion(image, text)
            text = text_layer(text, text_pos)
            image = deformable(image, image_pos, reference, (grid, grid))
        return text


# ---- one branch -----------------------------------------------------------------------------------
class FaceClipBranch(nn.Module):
    def __init__(self, tower: TextTowerConfig, config: FaceClipConfig):
        super().__init__()
        width, face = tower.width, config.face
        self.positional_embedding = nn.Parameter(torch.empty(config.context_length, width))
        self.text_projection = nn.Parameter(torch.empty(width, width))
        # for training-time contrastive losses only (init ln(1/0.07) and -10, as released)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.logit_bias = nn.Parameter(torch.tensor(-10.0))
        self.transformer = Transformer(tower)
        self.token_embedding = nn.Embedding(config.vocab_size, width)
        self.ln_final = nn.LayerNorm(width)
        self.face_encoder = FaceViT(face)
        self.proj1 = nn.Linear(face.embedding_dim, width)
        self.face_patch_proj = nn.Linear(face.width, width)
        self.face_pos_proj = nn.Linear(face.width, width)
        self.text_embed_proj = nn.Linear(width, width)
        self.text_pos_proj = nn.Linear(width, width)
        self.fuser = TextFaceFuser(width, config.fuser)
        causal = torch.full((config.context_length, config.context_length), float("-inf")).triu(1)
        self.register_buffer("attn_mask", causal, persistent=False)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.text_projection, std=width ** -0.5)

    def encode_face(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) in [0, 1] → identity (B, E) and patch tokens (B, grid², W)."""
        size = self.face_encoder.config.image_size
        if pixels.shape[-1] != size or pixels.shape[-2] != size:
            pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
        _, patches, identity = self.face_encoder.forward_features(pixels)
        return identity, patches

    def forward(self, input_ids: torch.Tensor, id_positions: torch.Tensor, eos_positions: torch.Tensor,
                identity: torch.Tensor, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused text tokens (B, L, W) and the pooled end-of-text state (B, W).

        ``id_positions`` (B,): where the face token replaces the input embedding (-1: nowhere,
        the negative branch). ``identity``/``patches``: from :meth:`encode_face`.
        """
        hidden, pooled = self.text_states(input_ids, id_positions, eos_positions, identity)
        return self.fuse(hidden, patches), pooled

    def face_token(self, identity: torch.Tensor) -> torch.Tensor:
        """The identity vector, L2-normalised and projected to a token embedding."""
        return self.proj1(F.normalize(identity.float(), dim=-1).to(self.proj1.weight.dtype))

    def text_states(self, input_ids: torch.Tensor, id_positions: torch.Tensor, eos_positions: torch.Tensor,
                    identity: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The CLIP tower's final states (B, L, W), with the face token at ``id_positions``, and
        the end-of-text state (B, W) (taken before ``text_projection``, as released)."""
        embeddings = self.token_embedding(input_ids)
        if identity is not None:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            replace = (positions[None, :] == id_positions[:, None])[..., None]
            embeddings = torch.where(replace, self.face_token(identity)[:, None, :].to(embeddings.dtype), embeddings)
        length = input_ids.shape[1]
        x = self.transformer(embeddings + self.positional_embedding[:length],
                             self.attn_mask[:length, :length].to(embeddings.dtype))
        hidden = self.ln_final(x)
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), eos_positions]
        return hidden, pooled

    def fuse(self, hidden: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """The fuser's text output for the tower's states and the face patches."""
        length = hidden.shape[1]
        text = self.text_embed_proj(hidden)
        text_pos = self.text_pos_proj(self.positional_embedding[:length])[None].expand(hidden.shape[0], -1, -1)
        image = self.face_patch_proj(patches.to(text.dtype))
        image_pos = self.face_pos_proj(self.face_encoder.pos_embed.to(text.dtype)).expand(hidden.shape[0], -1, -1)
        return self.fuser(image, image_pos, text, text_pos, self.face_encoder.config.grid)

    def text_features(self, pooled: torch.Tensor) -> torch.Tensor:
        """The normalised, projected text feature the contrastive losses use."""
        return F.normalize(pooled @ self.text_projection, dim=-1)


@dataclass
class FaceClipTokens:
    """Prompts tokenised for FaceCLIP: ids (B, L), the "id" position per row (-1: no face, no
    prefix), the end-of-text position per row."""

    input_ids: torch.Tensor
    id_positions: torch.Tensor
    eos_positions: torch.Tensor
    truncated: bool = False


def prefix_before_id(config: FaceClipConfig) -> str | None:
    """The prefix's words before its face word ("" when the prefix starts with it), or None when
    the prefix has no face word (the face then never enters)."""
    padded = f" {' '.join(config.prefix.split())} "
    if f" {config.id_word} " not in padded:
        return None
    return padded.split(f" {config.id_word} ")[0].strip()


def face_text(text: str, face: bool, config: FaceClipConfig) -> tuple[str, str | None]:
    """What the tower reads for ``text`` (:data:`FACE_MARK` where the person goes), and the words
    before the face word (None: no face word). Without a face: the person is a neutral subject, no
    prefix (the release's negative branch). With one: the prefix before the text and the face on
    its face word, or, with ``face_at = "subject"``, the face on the word of ``a <id_word>`` where
    the mark stands (its first place)."""
    from ..conditioning import NEUTRAL_SUBJECT

    if not face:
        return text.replace(FACE_MARK, NEUTRAL_SUBJECT), None
    if config.face_at == "subject" and FACE_MARK in text:
        before, after = text.split(FACE_MARK, 1)
        subject = f"a {config.id_word}"
        before_face = f"{before} a"
        return f"{before}{subject}{after.replace(FACE_MARK, NEUTRAL_SUBJECT)}", before_face
    return config.prefix + text.replace(FACE_MARK, NEUTRAL_SUBJECT), prefix_before_id(config)


def tokenize(tokenizer, texts: list[str], has_face: list[bool], config: FaceClipConfig) -> FaceClipTokens:
    """open_clip's tokenisation with a transformers CLIP vocabulary: ``<sot> ids <eot>``, cut to
    the context length with the last token forced to ``<eot>``, padded with id 0 (open_clip's pad,
    not the HF tokenizer's). Rows with a face get the face word (:func:`face_text`); its position is
    found by tokenising the words before it, so a user's own "id" elsewhere is never touched (CLIP's
    BPE splits words first, so those tokens begin the whole text's).
    """
    bos, eos, length = tokenizer.bos_token_id, tokenizer.eos_token_id, config.context_length
    rows, ids_positions, eos_positions, truncated = [], [], [], False

    def words(text: str) -> list[int]:
        return tokenizer(" ".join(text.split()), add_special_tokens=False, verbose=False).input_ids

    offsets: dict[str, int] = {}  # the face word's position after the words before it (the prefix: once)
    for text, face in zip(texts, has_face):
        full, before_face = face_text(text, face, config)
        ids = [bos] + words(full) + [eos]
        if len(ids) > length:
            ids, truncated = ids[:length], True
            ids[-1] = eos
        eos_positions.append(len(ids) - 1)
        rows.append(ids + [0] * (length - len(ids)))
        if before_face is not None and before_face not in offsets:
            offsets[before_face] = 1 + len(words(before_face))
        id_position = offsets[before_face] if before_face is not None else -1
        ids_positions.append(id_position if id_position < len(ids) - 1 else -1)
    return FaceClipTokens(torch.tensor(rows), torch.tensor(ids_positions), torch.tensor(eos_positions), truncated)


class FaceClipEncoder(IdentityEncoder):
    """The two-branch FaceCLIP encoder. ``features`` gives what an identity file stores (each
    branch's identity vector and patch tokens); :meth:`condition` turns those and prompts into SDXL
    ``prompt_embeds`` and ``pooled_prompt_embeds``."""

    encoder_type = "faceclip"

    def __init__(self, config: FaceClipConfig | dict | None = None):
        super().__init__()
        if isinstance(config, dict):
            config = FaceClipConfig.from_dict(config)
        self.faceclip_config = config or FaceClipConfig()
        self.crop_size = self.faceclip_config.crop_size
        for name, tower in zip(self.faceclip_config.branch_names, self.faceclip_config.towers):
            self.add_module(name, FaceClipBranch(tower, self.faceclip_config))

    @classmethod
    def from_config(cls, config: dict) -> FaceClipEncoder:
        return cls(FaceClipConfig.from_dict(config))

    @property
    def config(self) -> dict:
        return {"encoder_type": self.encoder_type, **self.faceclip_config.to_dict()}

    @property
    def branches(self) -> list[FaceClipBranch]:
        return [getattr(self, name) for name in self.faceclip_config.branch_names]

    @property
    def word_dims(self) -> tuple[int, ...]:
        """The width of each branch's output: the base's text towers' widths."""
        return tuple(t.width for t in self.faceclip_config.towers)

    @property
    def num_words(self) -> int:
        return 1

    def preprocess(self, crop) -> torch.Tensor:
        pixels = np.asarray(crop.convert("RGB"), dtype=np.float32) / 255.0  # [0, 1], no mean/std, as released
        return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()

    def face_features(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, S, S) in [0, 1] → per branch: ``<branch>.identity`` (B, E), ``<branch>.patches`` (B, N, W)."""
        out = {}
        for name, branch in zip(self.faceclip_config.branch_names, self.branches):
            identity, patches = branch.encode_face(pixels)
            out[f"{name}.identity"], out[f"{name}.patches"] = identity, patches
        return out

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("FaceCLIP identities are face features, not words: use face_features")

    def condition(self, tokenizer, prompts: list[str], faces: dict[str, torch.Tensor] | None,
                  batch: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(prompt_embeds (B, L, sum widths), pooled (B, last width), truncated) for ``prompts``
        with the faces of ``faces`` (one row per prompt; None: the release's negative branch,
        black faces and no prefix)."""
        has_face = faces is not None
        tokens = tokenize(tokenizer, prompts, [has_face] * batch, self.faceclip_config)
        device = next(self.parameters()).device
        hidden, pooled = [], None
        for name, branch in zip(self.faceclip_config.branch_names, self.branches):
            if faces is None:
                size = self.faceclip_config.face.image_size
                identity, patches = branch.encode_face(torch.zeros(batch, 3, size, size, device=device,
                                                                   dtype=branch.proj1.weight.dtype))
            else:
                identity, patches = faces[f"{name}.identity"].to(device), faces[f"{name}.patches"].to(device)
            fused, pooled = branch(tokens.input_ids.to(device), tokens.id_positions.to(device),
                                   tokens.eos_positions.to(device), identity, patches)
            hidden.append(fused)
        return torch.cat(hidden, dim=-1), pooled, tokens.truncated


def build_random_faceclip_encoder(word_dims: tuple[int, ...], vocab_size: int, context_length: int,
                                  seed: int = 0, prefix: str = RELEASE_PREFIX) -> FaceClipEncoder:
    """A seeded tiny FaceCLIP for the tiny models (one branch per text tower of the base)."""
    torch.manual_seed(seed)
    towers = tuple(TextTowerConfig(width=d, layers=2, heads=2, activation="quick_gelu" if i == 0 else "gelu")
                   for i, d in enumerate(word_dims))
    config = FaceClipConfig(
        towers=towers, face=FaceViTConfig(image_size=112, patch_size=16, width=32, depth=2, num_heads=2,
                                          embedding_dim=64, pixel_range="zero_one"),
        fuser=FuserConfig(layers=2, deformable_heads=2, deformable_points=2, ffn_dim=64, text_heads=2,
                          text_ffn_dim=64, fusion_dim=32, fusion_heads=2),
        vocab_size=vocab_size, context_length=context_length, prefix=prefix, crop_size=112,
        branch_names=("face_clip_l", "face_clip_g")[: len(word_dims)] if len(word_dims) <= 2
        else tuple(f"branch_{i}" for i in range(len(word_dims))),
    )
    encoder = FaceClipEncoder(config)
    encoder.name = f"random-faceclip-seed{seed}"
    return encoder.eval()


def release_state_dict(state: dict) -> dict:
    """The release's checkpoint keys as this module names them: every ``model.`` removed, as the
    release's own inference script does (none of the module's keys contains ``model.``)."""
    return {key.replace("model.", ""): value for key, value in state.items()}


def load_release_encoder(path, config: dict | None = None) -> FaceClipEncoder:
    """The released ``face_clip_encoder.pt`` (or one in its layout), read with
    ``weights_only=True`` and loaded with ``strict=True``. The module is built on the meta device and
    takes the checkpoint's tensors as they are, so the 1.6 B parameters are in memory once.
    ``config``: the encoder's sizes (default: the release's)."""
    from ..errors import MissingModelError
    from .base import pickle_problem, read_pickle_state_dict

    try:
        state = release_state_dict(read_pickle_state_dict(path))
    except Exception as exc:  # torch raises several types for damaged or foreign pickles
        raise MissingModelError(f"cannot read FaceCLIP checkpoint '{path}': {pickle_problem(exc)}",
                                "pass the release's face_clip_encoder.pt (weights only)") from None
    with torch.device("meta"):
        encoder = FaceClipEncoder(FaceClipConfig.from_dict(config) if config else FaceClipConfig())
    try:
        encoder.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise MissingModelError(f"FaceCLIP checkpoint '{path}' does not fit the encoder: "
                                f"{' '.join(str(exc).split())[:300]}",
                                "pass the release's face_clip_encoder.pt, or give its sizes in config.json") from None
    for branch in encoder.branches:  # the causal masks are not in the state dict
        length = branch.positional_embedding.shape[0]
        branch.attn_mask = torch.full((length, length), float("-inf")).triu(1)
    encoder.name = str(path)
    return encoder.float().eval()


def tower_config_from_hf(config) -> TextTowerConfig:
    """The open_clip-layout tower matching a transformers ``CLIPTextConfig``."""
    activation = {"quick_gelu": "quick_gelu", "gelu": "gelu"}.get(config.hidden_act)
    if activation is None:
        raise ValueError(f"a CLIP text tower with {config.hidden_act!r} activations has no open_clip counterpart")
    return TextTowerConfig(width=config.hidden_size, layers=config.num_hidden_layers,
                           heads=config.num_attention_heads, mlp_ratio=config.intermediate_size / config.hidden_size,
                           activation=activation)


@torch.no_grad()
def copy_hf_text_tower(branch: FaceClipBranch, model) -> None:
    """Start a branch's text tower from a transformers CLIP text model (a base's own text encoder):
    the same weights renamed to open_clip's layout (q, k and v packed into ``in_proj``). FaceCLIP's
    towers are CLIP towers too (MetaCLIP in the release); this is how a FaceCLIP for another base
    starts from that base's text knowledge."""
    text = getattr(model, "text_model", model)
    branch.token_embedding.weight.copy_(text.embeddings.token_embedding.weight)
    length = branch.positional_embedding.shape[0]
    branch.positional_embedding.copy_(text.embeddings.position_embedding.weight[:length])
    for block, layer in zip(branch.transformer.resblocks, text.encoder.layers, strict=True):
        attention = layer.self_attn
        block.ln_1.load_state_dict(layer.layer_norm1.state_dict())
        block.attn.in_proj_weight.copy_(torch.cat([attention.q_proj.weight, attention.k_proj.weight,
                                                   attention.v_proj.weight]))
        block.attn.in_proj_bias.copy_(torch.cat([attention.q_proj.bias, attention.k_proj.bias, attention.v_proj.bias]))
        block.attn.out_proj.load_state_dict(attention.out_proj.state_dict())
        block.ln_2.load_state_dict(layer.layer_norm2.state_dict())
        block.mlp.c_fc.load_state_dict(layer.mlp.fc1.state_dict())
        block.mlp.c_proj.load_state_dict(layer.mlp.fc2.state_dict())
    branch.ln_final.load_state_dict(text.final_layer_norm.state_dict())
    projection = getattr(model, "text_projection", None)
    if projection is not None and projection.weight.shape == branch.text_projection.shape:
        branch.text_projection.copy_(projection.weight.T)
