"""Tiny offline tokenizer and the prompt with its image placeholder."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
import torch

from tinyvla_ros.vla.config import DEFAULT_PROMPT
from tinyvla_ros.vla.tokenizer import (
    IMAGE_TOKEN_INDEX,
    PAD_TOKEN,
    PromptTokenizer,
    build_tiny_tokenizer,
    load_tokenizer,
)

_HASH_SNIPPET = (
    "import hashlib; from tinyvla_ros.vla.tokenizer import build_tiny_tokenizer; "
    "print(hashlib.sha256(build_tiny_tokenizer().backend_tokenizer.to_str().encode()).hexdigest())"
)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def test_tiny_tokenizer_basics(tokenizer):
    assert 300 < len(tokenizer) <= 2048
    assert tokenizer.convert_tokens_to_ids("<|endoftext|>") == 0 and tokenizer.pad_token_id == 1
    ids = tokenizer("pick up the red cube", add_special_tokens=False)["input_ids"]
    assert len(ids) == 5  # one token per known word
    assert tokenizer.decode(ids) == "pick up the red cube"
    odd = "Ünïcödé zebra 42!"  # unseen words fall back to bytes: nothing is lost
    assert tokenizer.decode(tokenizer(odd, add_special_tokens=False)["input_ids"]) == odd


def test_tiny_tokenizer_is_deterministic_across_processes(tokenizer):
    here = hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run(
        [sys.executable, "-c", _HASH_SNIPPET], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == here


def test_prompt_ids_place_the_image_token(tokenizer):
    prompt = PromptTokenizer(tokenizer, DEFAULT_PROMPT, max_tokens=48)
    ids = prompt.ids("open the drawer")
    assert ids[prompt.image_position] == IMAGE_TOKEN_INDEX and ids.count(IMAGE_TOKEN_INDEX) == 1
    prefix = tokenizer("USER: ", add_special_tokens=False)["input_ids"]
    assert ids[: prompt.image_position] == prefix
    assert tokenizer.decode(ids[prompt.image_position + 1 :]) == "\nopen the drawer ASSISTANT:"
    assert prompt.ids("  open the drawer ") == ids  # surrounding whitespace ignored
    assert prompt.ids("open the drawer") is ids  # cached


def test_batch_padding(tokenizer):
    prompt = PromptTokenizer(tokenizer, DEFAULT_PROMPT, max_tokens=48)
    ids, mask = prompt.batch(["go", "put the red cube into the bowl"])
    assert ids.shape == mask.shape and ids.dtype == torch.long
    short = len(prompt.ids("go"))
    assert mask[0].tolist() == [1] * short + [0] * (ids.shape[1] - short)
    assert torch.all(ids[0, short:] == tokenizer.convert_tokens_to_ids(PAD_TOKEN))
    assert torch.all(ids[:, prompt.image_position] == IMAGE_TOKEN_INDEX)


def test_too_long_and_wrong_types(tokenizer):
    prompt = PromptTokenizer(tokenizer, DEFAULT_PROMPT, max_tokens=12)
    with pytest.raises(ValueError, match="max_text_tokens=12"):
        prompt.ids("put the red cube into the blue bowl on the left side")
    with pytest.raises(TypeError, match="instruction must be a str"):
        prompt.ids(3)
    with pytest.raises(ValueError, match="non-empty list"):
        prompt.batch([])


def test_save_and_load_offline(tokenizer, tmp_path):
    tokenizer.save_pretrained(str(tmp_path))
    again = load_tokenizer(tmp_path)
    text = "stack the green block on the yellow one"
    assert again(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert again.pad_token_id == tokenizer.pad_token_id
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        load_tokenizer(tmp_path / "nothing")
