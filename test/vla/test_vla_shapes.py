"""Shapes for 1-3 cameras and action dims 8/10/14, the tensor-only pieces, pooling and loss masking."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import camera_images, train_batch

from tinyvla_ros.vla.policy import masked_mse
from tinyvla_ros.vla.tokenizer import IMAGE_TOKEN_INDEX


@pytest.mark.parametrize("n_cams", [1, 2, 3])
@pytest.mark.parametrize("action_dim", [8, 10, 14])
def test_shapes_for_cameras_and_action_dims(make_policy, n_cams, action_dim):
    cams = tuple(f"cam{i}" for i in range(n_cams))
    policy = make_policy(camera_names=cams, action_dim=action_dim, state_dim=action_dim - 1)
    c = policy.config
    batch = train_batch(policy, batch_size=2)
    loss = policy(batch, generator=torch.Generator().manual_seed(0))
    assert loss.shape == () and torch.isfinite(loss)
    chunk = policy.predict_chunk(camera_images(n_cams), "pick up the cube", np.zeros(c.state_dim), seed=0)
    assert chunk.shape == (16, action_dim) and chunk.dtype == np.float32
    # robot units: inside the normaliser's range (unnormalisation clips to [-1, 1] first)
    assert np.all(chunk >= policy.normalizer.action_low - 1e-5) and np.all(
        chunk <= policy.normalizer.action_high + 1e-5
    )


def test_tensor_pieces_shapes(make_policy):
    policy = make_policy(camera_names=("a", "b"))
    c = policy.config
    pixels = policy.preprocess_images(camera_images(2, shape=(30, 70)))
    assert pixels.shape == (2, 3, c.image_size, c.image_size) and pixels.dtype == torch.float32
    assert 0.0 <= float(pixels.min()) and float(pixels.max()) <= 1.0
    ids, mask = policy.tokenize("open the drawer")
    assert (
        ids.shape == mask.shape and ids.shape[0] == 1 and ids[0, policy.image_position] == IMAGE_TOKEN_INDEX
    )
    with torch.no_grad():
        cond = policy.encode_observation(pixels[None], ids, mask, torch.zeros(1, c.state_dim))
        assert cond.shape == (1, c.cond_dim)
        noisy = torch.randn(1, c.chunk_len, c.action_dim)
        eps = policy.denoise(noisy, torch.tensor([7]), cond)
        assert eps.shape == noisy.shape
        out = policy.sample(cond, noisy)
    assert out.shape == noisy.shape and float(out.abs().max()) <= 1.0  # clip_sample keeps [-1, 1]
    tokens = policy.backbone.encode_images(pixels[None])
    assert tokens.shape == (1, 2 * c.image_tokens_per_camera, c.llm.hidden_size)


def test_vision_features_equal_the_selected_hidden_state(make_policy):
    """Skipping the unused last CLIP layer gives exactly hidden_states[select_layer]."""
    policy = make_policy()
    pixels = torch.rand(
        2, 3, policy.config.image_size, policy.config.image_size, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        ours = policy.backbone.vision_features(pixels)
        full = policy.backbone.vision(pixel_values=pixels, output_hidden_states=True).hidden_states
    assert len(full) == policy.config.vision.num_layers + 1
    assert torch.equal(ours, full[policy.config.vision.select_layer])
    assert not torch.equal(ours, full[-1])


def test_cameras_are_encoded_separately_and_in_order(make_policy):
    policy = make_policy(camera_names=("a", "b", "c"))
    pixels = torch.rand(1, 3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        all_cams = policy.backbone.encode_images(pixels)
        second = policy.backbone.encode_images(pixels[:, 1:2])
    p = policy.config.image_tokens_per_camera
    torch.testing.assert_close(all_cams[:, p : 2 * p], second, rtol=0, atol=1e-5)


def test_batch_equals_single_and_padding_is_not_pooled(make_policy):
    policy = make_policy(camera_names=("a", "b"))
    rng = np.random.default_rng(0)
    images = [camera_images(2, seed=i) for i in range(3)]
    texts = ["go", "put the red cube into the blue bowl on the left", "open the drawer"]
    states = rng.normal(size=(3, policy.config.state_dim))
    noise = rng.normal(size=(3, 16, policy.config.action_dim)).astype(np.float32)
    batched = policy.predict_chunk_batch(images, texts, states, initial_noise=noise)
    for i in range(3):
        single = policy.predict_chunk(images[i], texts[i], states[i], initial_noise=noise[i])
        np.testing.assert_allclose(batched[i], single, atol=5e-5)


def test_official_unmasked_pooling_sees_padding(make_policy):
    masked = make_policy(pooling="masked")
    unmasked = make_policy(pooling="all")
    assert torch.equal(
        masked.state_dict()["head.condition.combine.weight"],
        unmasked.state_dict()["head.condition.combine.weight"],
    )
    pixels = torch.rand(1, 2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    ids, mask = masked.tokenize("go")
    pad = masked.prompt.pad_id
    ids_padded = torch.cat([ids, torch.full((1, 5), pad)], dim=1)
    mask_padded = torch.cat([mask, torch.zeros(1, 5, dtype=mask.dtype)], dim=1)
    state = torch.zeros(1, masked.config.state_dim)
    with torch.no_grad():
        for policy, same in ((masked, True), (unmasked, False)):
            a = policy.encode_observation(pixels, ids, mask, state)
            b = policy.encode_observation(pixels, ids_padded, mask_padded, state)
            assert torch.allclose(a, b, atol=1e-5) == same


def test_masked_mse_ignores_padded_steps():
    g = torch.Generator().manual_seed(3)
    target = torch.randn(2, 16, 4, generator=g)
    pad = torch.zeros(2, 16, dtype=torch.bool)
    pad[0, 10:] = True
    pred = target.clone()
    pred[0, 10:] += 5.0  # error only past the episode end
    assert float(masked_mse(pred, target, pad)) == 0.0
    pred[1, 3, 2] += 2.0  # one wrong valid entry among 26 valid steps x 4 dims
    assert float(masked_mse(pred, target, pad)) == pytest.approx(4.0 / (26 * 4))
    assert float(masked_mse(pred, target, None)) == pytest.approx((4.0 + 6 * 4 * 25.0) / (32 * 4))
    with pytest.raises(ValueError, match="every step of the batch is padding"):
        masked_mse(pred, target, torch.ones(2, 16, dtype=torch.bool))


def test_policy_loss_uses_the_pad_mask(make_policy):
    policy = make_policy()
    batch = train_batch(policy, batch_size=2)
    no_pad = {k: v for k, v in batch.items() if k != "action_pad"}
    l_none = policy(no_pad, generator=torch.Generator().manual_seed(3))
    assert torch.equal(
        l_none, policy(batch, generator=torch.Generator().manual_seed(3))
    )  # all False == no mask
    batch["action_pad"][:, 8:] = True
    assert not torch.equal(l_none, policy(batch, generator=torch.Generator().manual_seed(3)))
    batch["action_pad"][:] = True
    with pytest.raises(ValueError, match="every step of the batch is padding"):
        policy(batch)


def test_forward_accepts_token_ids_and_float_images(make_policy):
    policy = make_policy()
    batch = train_batch(policy, batch_size=2)
    ids, mask = policy.tokenize_batch(batch["instruction"][:2])
    as_ids = dict(batch, input_ids=ids, attention_mask=mask, images=batch["images"].float() / 255.0)
    del as_ids["instruction"]
    g = torch.Generator().manual_seed(4)
    assert torch.allclose(
        policy(batch, generator=g), policy(as_ids, generator=torch.Generator().manual_seed(4))
    )


def test_backward_reaches_every_part(make_policy):
    policy = make_policy().train()
    policy(train_batch(policy, batch_size=2)).backward()
    for part in (
        policy.backbone.vision.embeddings,
        policy.backbone.projector,
        policy.backbone.llm,
        policy.head,
    ):
        grads = [p.grad for p in part.parameters() if p.requires_grad]
        assert grads and all(g is not None for g in grads), type(part).__name__
        assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize(
    ("key", "value", "pattern"),
    [
        (
            "images",
            torch.zeros(2, 3, 3, 64, 64, dtype=torch.uint8),
            r"batch\['images'\] must have shape \(2, 2, 3, 64, 64\)",
        ),
        ("state", torch.zeros(2, 3), r"batch\['state'\] must have shape \(2, 7\)"),
        ("actions", torch.zeros(2, 8, 10), r"batch\['actions'\] must have shape \(2, 16, 10\)"),
        ("images", torch.zeros(2, 2, 3, 64, 64, dtype=torch.int32), "images must be uint8 or float"),
        ("images", torch.full((2, 2, 3, 64, 64), 255.0), r"float images must lie in \[0, 1\]"),
        ("state", torch.full((2, 7), float("nan")), r"batch\['state'\] contains NaN or inf"),
    ],
)
def test_bad_batches_raise_clear_errors(make_policy, key, value, pattern):
    policy = make_policy()
    batch = train_batch(policy, batch_size=2)
    batch[key] = value
    with pytest.raises((ValueError, TypeError), match=pattern):
        policy(batch)


def test_bad_inference_inputs_raise_clear_errors(make_policy):
    policy = make_policy(camera_names=("a", "b"))
    images, state = camera_images(2), np.zeros(7)
    with pytest.raises(ValueError, match=r"expected 2 images \(cameras \['a', 'b'\]\), got 1"):
        policy.predict_chunk(images[:1], "go", state)
    with pytest.raises(ValueError, match=r"state must have shape \(7,\), got \(6,\)"):
        policy.predict_chunk(images, "go", np.zeros(6))
    with pytest.raises(ValueError, match="state contains NaN"):
        policy.predict_chunk(images, "go", np.full(7, np.nan))
    with pytest.raises(ValueError, match="must be \\(H, W, 3\\) uint8 RGB"):
        policy.predict_chunk([images[0], images[1].astype(np.float32)], "go", state)
    with pytest.raises(ValueError, match="initial_noise must have shape"):
        policy.predict_chunk(images, "go", state, initial_noise=np.zeros((8, 10)))
    with pytest.raises(ValueError, match="max_text_tokens=48"):
        policy.predict_chunk(images, "go " * 60, state)
    with pytest.raises(TypeError, match="instruction must be a str"):
        policy.predict_chunk(images, None, state)
    policy.normalizer = None
    with pytest.raises(RuntimeError, match="no normalisation statistics"):
        policy.predict_chunk(images, "go", state)
