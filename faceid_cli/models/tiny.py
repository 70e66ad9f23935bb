"""The built-in tiny models: SD and SDXL pipelines built in code with seeded random weights.

They have the real architectures (UNet2DConditionModel, AutoencoderKL, CLIP text towers, a
byte-level CLIP BPE tokenizer) at widths of 32 with one layer per UNet block, so every code path of
the real bases runs on a CPU in about a second (30 steps at 64x64), offline. Images from them are noise-like textures, not faces: they exist for
CI, smoke runs and tests. The same seed always builds the same weights.
"""

from __future__ import annotations

TINY_SEED = 0
TINY_SIZE = 64  # default image side: the tiny VAE downsamples by 2, the UNet samples 32x32
TINY_WORD_DIMS = {"tiny": (32,), "tiny-xl": (32, 32)}  # input-embedding widths of the text towers
TINY_VOCAB_SIZE = 514  # 256 bytes, 256 word-final bytes, start and end of text
TINY_CONTEXT_LENGTH = 77


def _byte_characters() -> list[str]:
    """The 256 printable characters CLIP's byte-level BPE uses for the 256 byte values."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def build_tiny_tokenizer():
    """A CLIP tokenizer over single bytes (no merges): any text tokenizes, one token a character.

    Ids follow CLIP's layout: characters, characters ending a word (``</w>``), then start and end of
    text, so the end-of-text id is the largest, as in the real vocabulary.
    """
    from transformers import CLIPTokenizer

    characters = _byte_characters()
    vocab = {c: i for i, c in enumerate(characters)}
    vocab.update({c + "</w>": i + 256 for i, c in enumerate(characters)})
    vocab["<|startoftext|>"] = 512
    vocab["<|endoftext|>"] = 513
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=TINY_CONTEXT_LENGTH)


def _text_config(projection_dim: int | None = None):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=512, eos_token_id=2, pad_token_id=513, hidden_size=32, intermediate_size=37,
        layer_norm_eps=1e-5, num_attention_heads=4, num_hidden_layers=5, vocab_size=TINY_VOCAB_SIZE,
        max_position_embeddings=TINY_CONTEXT_LENGTH, hidden_act="gelu", projection_dim=projection_dim or 32,
    )


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"], latent_channels=4, sample_size=TINY_SIZE,
    )


def _scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, steps_offset=1,
    )


def build_tiny_sd(seed: int = TINY_SEED):
    """A StableDiffusionPipeline with 32-wide random components (seeded)."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=TINY_SIZE // 2, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, norm_num_groups=32,
        attention_head_dim=2,  # two wide heads: CPU attention with 8-wide heads is slow
    )
    torch.manual_seed(seed + 1)
    vae = _vae()
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(_text_config())
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=build_tiny_tokenizer(), unet=unet,
        scheduler=_scheduler(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    return _eval(pipe)


def build_tiny_sdxl(seed: int = TINY_SEED):
    """A StableDiffusionXLPipeline with two 32-wide random text towers (seeded)."""
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=TINY_SIZE // 2, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=80,
        cross_attention_dim=64, norm_num_groups=32,
    )
    torch.manual_seed(seed + 1)
    vae = _vae()
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(_text_config())
    torch.manual_seed(seed + 3)
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(projection_dim=32))
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
        tokenizer=build_tiny_tokenizer(), tokenizer_2=build_tiny_tokenizer(), unet=unet,
        scheduler=_scheduler(), force_zeros_for_empty_prompt=True,
    )
    return _eval(pipe)


def _eval(pipe):
    for component in pipe.components.values():
        if hasattr(component, "eval"):
            component.eval()
    return pipe
