"""Pseudo-word conditioning is exact and leaves the text encoders untouched."""

from __future__ import annotations

import copy
import logging

import pytest
import torch

from faceid_cli.conditioning import (
    check_identity_prompt,
    encode_prompt_with_identity,
    replace_identity,
    tokenize_with_identity,
    word_dims_of,
)
from faceid_cli.errors import InvalidArgumentError


@pytest.fixture(scope="module")
def tiny_sd():
    from faceid_cli.models.tiny import build_tiny_sd

    return build_tiny_sd()


@pytest.fixture(scope="module")
def tiny_sdxl():
    from faceid_cli.models.tiny import build_tiny_sdxl

    return build_tiny_sdxl()


def _random_words(dims, k=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(k, d, generator=generator) * 0.3 for d in dims]


def test_ids_away_from_the_placeholder_are_unchanged(tiny_sd):
    tokenizer = tiny_sd.tokenizer
    prompt = "oil painting of S* wearing a hat, looking at the camera"
    ours = tokenize_with_identity(tokenizer, prompt, num_words=2)
    plain = tokenizer(prompt.replace("S*", "x"), padding="max_length", max_length=77).input_ids
    position = ours.slots.tolist().index(0)
    assert ours.input_ids[:position].tolist() == plain[:position]
    tail = len(tokenizer(prompt.replace("S*", "x")).input_ids) - position - 1  # after "x", incl. end token
    assert ours.input_ids[position + 2: position + 2 + tail].tolist() == plain[position + 1: position + 1 + tail]
    assert ours.slots.tolist()[position: position + 2] == [0, 1]
    assert (ours.slots >= 0).sum() == 2 and not ours.truncated


def test_several_placeholders(tiny_sd):
    tokens = tokenize_with_identity(tiny_sd.tokenizer, "S* and S*'s twin", num_words=2)
    assert [s for s in tokens.slots.tolist() if s >= 0] == [0, 1, 0, 1]


def test_long_prompts_are_truncated_with_a_warning(tiny_sd, caplog):
    prompt = "S* " + "very " * 40 + "long"
    tokens = tokenize_with_identity(tiny_sd.tokenizer, prompt, num_words=2)
    assert tokens.truncated and tokens.input_ids.shape == (77,)
    assert tokens.input_ids[76] == tiny_sd.tokenizer.eos_token_id
    with caplog.at_level(logging.WARNING, logger="faceid_cli"):
        encode_prompt_with_identity(tiny_sd, prompt, _random_words((32,)))
    assert "truncated" in caplog.text


def test_words_equal_to_real_token_embeddings_give_diffusers_own_embeddings(tiny_sd):
    """If S*'s words are the embeddings of the tokens of "ab", the result is exactly what
    diffusers' encode_prompt makes of the same prompt with "ab" written out."""
    tokenizer, encoder = tiny_sd.tokenizer, tiny_sd.text_encoder
    ids = tokenizer("ab", add_special_tokens=False).input_ids
    assert len(ids) == 2
    words = encoder.get_input_embeddings().weight[ids].detach()
    with torch.inference_mode():
        ours = encode_prompt_with_identity(tiny_sd, "a portrait of S* as a chef", [words])
        theirs, _ = tiny_sd.encode_prompt("a portrait of ab as a chef", "cpu", 1, False)
    assert torch.equal(ours.prompt_embeds, theirs)


def test_sdxl_embeddings_and_pooled_match_diffusers(tiny_sdxl):
    words = []
    for tokenizer, encoder in ((tiny_sdxl.tokenizer, tiny_sdxl.text_encoder),
                               (tiny_sdxl.tokenizer_2, tiny_sdxl.text_encoder_2)):
        ids = tokenizer("ab", add_special_tokens=False).input_ids
        words.append(encoder.get_input_embeddings().weight[ids].detach())
    with torch.inference_mode():
        ours = encode_prompt_with_identity(tiny_sdxl, "S* as a chef", words)
        embeds, _, pooled, _ = tiny_sdxl.encode_prompt("ab as a chef", device="cpu", do_classifier_free_guidance=False)
    assert ours.prompt_embeds.shape == (1, 77, 64)
    assert torch.equal(ours.prompt_embeds, embeds)
    assert torch.equal(ours.pooled_prompt_embeds, pooled)


def test_injection_equals_a_text_encoder_with_the_words_in_its_vocabulary(tiny_sd):
    """The textual-inversion way (new rows in a copy of the embedding table) gives the same
    hidden states as our hook on the unchanged encoder."""
    words = _random_words((32,))[0]
    prompt = "S* as a chef"
    with torch.inference_mode():
        ours = encode_prompt_with_identity(tiny_sd, prompt, [words]).prompt_embeds
    extended = copy.deepcopy(tiny_sd.text_encoder)
    vocab = extended.get_input_embeddings().num_embeddings
    extended.resize_token_embeddings(vocab + 2)
    with torch.no_grad():
        extended.get_input_embeddings().weight[vocab:] = words
    tokens = tokenize_with_identity(tiny_sd.tokenizer, prompt, num_words=2)
    ids = torch.where(tokens.slots >= 0, vocab + tokens.slots, tokens.input_ids)
    with torch.inference_mode():
        reference = extended(ids[None])[0]
    assert torch.allclose(ours, reference, atol=1e-6)


def test_pooled_output_comes_from_the_end_token_not_the_placeholders(tiny_sdxl):
    words = _random_words((32, 32))
    with torch.inference_mode():
        ours = encode_prompt_with_identity(tiny_sdxl, "S* as a chef", words)
        tokens = tokenize_with_identity(tiny_sdxl.tokenizer_2, "S* as a chef", 2)
        end = tokens.input_ids.tolist().index(tiny_sdxl.tokenizer_2.eos_token_id)
        from faceid_cli.conditioning import injected_words

        with injected_words(tiny_sdxl.text_encoder_2, tokens.slots[None], words[1][None]):
            out = tiny_sdxl.text_encoder_2(tokens.input_ids[None])
        expected = tiny_sdxl.text_encoder_2.text_projection(out.last_hidden_state[0, end])
    assert torch.allclose(ours.pooled_prompt_embeds[0], expected, atol=1e-6)


def test_text_encoder_is_unchanged_afterwards(tiny_sd):
    before = {k: v.clone() for k, v in tiny_sd.text_encoder.state_dict().items()}
    ids = tiny_sd.tokenizer("a chef", return_tensors="pt").input_ids
    with torch.inference_mode():
        plain_before = tiny_sd.text_encoder(ids)[0]
        encode_prompt_with_identity(tiny_sd, "S* as a chef", _random_words((32,)))
        plain_after = tiny_sd.text_encoder(ids)[0]
    assert torch.equal(plain_before, plain_after), "the hook must be removed"
    after = tiny_sd.text_encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert len(tiny_sd.tokenizer) == 514, "the tokenizer gains no tokens"


def test_different_words_change_the_embeddings_only_from_the_placeholder_on(tiny_sd):
    with torch.inference_mode():
        a = encode_prompt_with_identity(tiny_sd, "a photo of S*", _random_words((32,), seed=1)).prompt_embeds
        b = encode_prompt_with_identity(tiny_sd, "a photo of S*", _random_words((32,), seed=2)).prompt_embeds
    position = tokenize_with_identity(tiny_sd.tokenizer, "a photo of S*", 2).slots.tolist().index(0)
    assert torch.equal(a[0, :position], b[0, :position]), "causal attention: earlier tokens unaffected"
    assert not torch.allclose(a[0, position:], b[0, position:])


def test_wrong_word_width_is_refused(tiny_sd):
    with pytest.raises(InvalidArgumentError, match="wide"):
        encode_prompt_with_identity(tiny_sd, "S*", [torch.zeros(2, 1024)])
    with pytest.raises(InvalidArgumentError, match="text encoder"):
        encode_prompt_with_identity(tiny_sd, "S*", _random_words((32, 32)))


def test_prompt_checks():
    assert check_identity_prompt("S* as a chef", "S*", False) == "S* as a chef"
    assert check_identity_prompt("a chef", "S*", True) == "a chef, photo of S*"
    with pytest.raises(InvalidArgumentError, match="does not mention"):
        check_identity_prompt("a chef", "S*", False)
    with pytest.raises(InvalidArgumentError, match="empty"):
        check_identity_prompt("  ", "S*", False)
    assert replace_identity("S* as a chef") == "a person as a chef"


def test_word_dims(tiny_sd, tiny_sdxl):
    assert word_dims_of(tiny_sd) == (32,)
    assert word_dims_of(tiny_sdxl) == (32, 32)


@pytest.mark.parametrize("fixture", ["tiny_sd", "tiny_sdxl"])
def test_a_list_of_prompts_equals_one_call_per_prompt(fixture, request):
    pipe = request.getfixturevalue(fixture)
    dims = word_dims_of(pipe)
    torch.manual_seed(0)
    words = [torch.randn(3, 2, d) for d in dims]
    prompts = ["a photo of S*", "S* wearing a red hat, green background", "oil painting of S* as a chef"]
    batched = encode_prompt_with_identity(pipe, prompts, words)
    for i, prompt in enumerate(prompts):
        alone = encode_prompt_with_identity(pipe, prompt, [w[i] for w in words])
        assert torch.allclose(batched.prompt_embeds[i:i + 1], alone.prompt_embeds, atol=1e-6)
        if alone.pooled_prompt_embeds is not None:
            assert torch.allclose(batched.pooled_prompt_embeds[i:i + 1], alone.pooled_prompt_embeds, atol=1e-6)
    with pytest.raises(InvalidArgumentError, match="2 prompts for 3 rows"):
        encode_prompt_with_identity(pipe, prompts[:2], words)
