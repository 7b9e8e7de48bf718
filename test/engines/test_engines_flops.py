"""FLOP counting from the model and the matmul peak."""

from __future__ import annotations

import pytest
import torch

from tinyvla_ros.vla.config import get_config
from tinyvla_ros.vla.flops import count_chunk_flops, count_policy_flops, flop_counter, matmul_peak


def test_fake_count_equals_real_model_count(franka_ckpt):
    from tinyvla_ros.vla.policy import TinyVLAPolicy

    policy = TinyVLAPolicy.from_pretrained(franka_ckpt).eval()
    ids, mask = policy.tokenize("pick up the red cube")
    c = policy.config
    fake = count_chunk_flops(c, steps=3, text_tokens=ids.shape[1] - 1)
    with flop_counter() as counter, torch.inference_mode():
        pixels = torch.zeros((1, c.num_cameras, 3, c.image_size, c.image_size))
        cond = policy.encode_observation(pixels, ids, mask, torch.zeros((1, c.state_dim)))
    assert counter.get_total_flops() == fake.encoder
    with flop_counter() as counter, torch.inference_mode():
        policy.denoise(torch.zeros((1, c.chunk_len, c.action_dim)), torch.zeros(1, dtype=torch.long), cond)
    assert counter.get_total_flops() == fake.denoiser
    assert fake.total == fake.encoder + 3 * fake.denoiser
    assert fake.tokens == ids.shape[1] - 1 + c.num_cameras * c.image_tokens_per_camera
    real = count_policy_flops(policy, steps=3, batch=2, text_tokens=ids.shape[1] - 1)
    assert real.total == 2 * fake.total  # batch scales every part


def test_paper_preset_count_equals_closed_form():
    s = count_chunk_flops(get_config("tinyvla-s"), steps=10)
    t = 2 * 576 + 16  # LLM tokens: two cameras' patches + the text
    # CLIP ViT-L/14-336, 23 of 24 layers used, 577 tokens, two cameras: linears + attention + patch conv,
    # then the mlp2x_gelu projector (1024 -> 512 -> 512) on the 576 patch tokens.
    vision = 2 * (4 * 1024**2 + 2 * 1024 * 4096) * 577 * 23 * 2 + 4 * 577**2 * 1024 * 23 * 2
    vision += 2 * (3 * 14 * 14 * 1024) * 576 * 2 + 2 * (1024 * 512 + 512 * 512) * 576 * 2
    # Pythia-70M: 6 layers of qkv/dense/MLP linears (18.9M weights) + attention over t tokens.
    llm = 2 * 6 * (512 * 1536 + 512 * 512 + 2 * 512 * 2048) * t + 4 * t * t * 512 * 6
    assert (s.tokens, s.vision, s.llm) == (t, vision, llm)


def test_matmul_peak_is_positive_and_rejects_bad_sizes():
    assert matmul_peak(size=64, min_seconds=0.01, repeats=1) > 1e6
    with pytest.raises(ValueError, match="size >= 16"):
        matmul_peak(size=4)
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        count_chunk_flops(get_config("nano"), steps=0)
