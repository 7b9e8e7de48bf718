"""Inpainting in the torch sampler: the committed steps come out exactly, the rest still follows the demo.

Synthetic task (a small version of the model tests' task, test/vla/test_vla_learning.py): one
grey camera, a 4-D state, three instructions; the 16-step demonstration chunk ramps from the
state to a goal that depends on the instruction: a_t = (1 - r_t) * state + r_t * G[instr],
r_t = (t + 1) / 16. A nano policy is trained on it for 400 steps (~45 s of one idle CPU core; 300 steps were too few).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinyvla_ros.core.chunking import prefix_weights
from tinyvla_ros.vla.config import get_config
from tinyvla_ros.vla.normalize import Normalizer
from tinyvla_ros.vla.policy import TinyVLAPolicy

DIM, CHUNK, SIZE, STEPS = 4, 16, 32, 400
INSTRUCTIONS = ("move to the left bin", "move to the right bin", "lift it up")
GOALS = np.random.default_rng(5).uniform(-0.8, 0.8, (3, DIM)).astype(np.float32)
RAMP = (np.arange(CHUNK, dtype=np.float32) + 1.0) / CHUNK
HARD, SOFT = 4, 3  # committed steps, decaying steps after them


def demos(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n demonstrations: state (n, DIM), instruction index (n,), chunk (n, CHUNK, DIM)."""
    state = rng.uniform(-0.5, 0.5, (n, DIM)).astype(np.float32)
    instr = rng.integers(0, 3, n)
    chunks = (1.0 - RAMP)[None, :, None] * state[:, None] + RAMP[None, :, None] * GOALS[instr][:, None]
    return state, instr, chunks.astype(np.float32)


def grey(n: int) -> list[list[np.ndarray]]:
    return [[np.full((SIZE, SIZE, 3), 128, np.uint8)] for _ in range(n)]


@pytest.fixture(scope="module")
def policy() -> TinyVLAPolicy:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    config = get_config("nano", camera_names=("front",), state_dim=DIM, action_dim=DIM, image_size=SIZE)
    state, _, chunks = demos(rng, 1000)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        pol = TinyVLAPolicy(config, normalizer=Normalizer.from_data(chunks.reshape(-1, DIM), state))
    opt = torch.optim.AdamW(pol.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min(1.0, (k + 1) / 20) * 0.5 * (1.0 + np.cos(np.pi * min(k, STEPS) / STEPS))
    )
    gen = torch.Generator().manual_seed(0)
    images = torch.full((32, 1, 3, SIZE, SIZE), 128, dtype=torch.uint8)
    pol.train()
    for _ in range(STEPS):
        s, i, a = demos(rng, 32)
        batch = {"images": images, "instruction": [INSTRUCTIONS[k] for k in i]}
        loss = pol({**batch, "state": torch.from_numpy(s), "actions": torch.from_numpy(a)}, generator=gen)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(pol.parameters(), 1.0)
        opt.step()
        schedule.step()
    return pol.eval()


@pytest.fixture(scope="module")
def episode(policy) -> dict:
    """Test observations, their demonstrations, a committed plan that deviates from them by 0.15
    (clipped into the action range, as every chunk the model makes is), and the chunks sampled freely and with that plan inpainted (same seed)."""
    state, instr, target = demos(np.random.default_rng(7), 24)
    offset = np.random.default_rng(8).choice([-0.15, 0.15], size=(24, 1, DIM)).astype(np.float32)
    norm = policy.normalizer  # an old plan comes from the model: within the action range
    committed = np.clip(target[:, : HARD + SOFT] + offset, norm.action_low, norm.action_high).astype(
        np.float32
    )
    weight = prefix_weights(CHUNK, HARD, HARD + SOFT, SOFT)  # (T,)
    texts = [INSTRUCTIONS[k] for k in instr]
    free = policy.predict_chunk_batch(grey(24), texts, state, seed=3)
    inpainted = policy.predict_chunk_batch(
        grey(24), texts, state, seed=3, prefix=committed, prefix_weight=np.tile(weight, (24, 1))
    )
    return {"target": target, "committed": committed, "free": free, "inpainted": inpainted}


def test_committed_steps_equal_the_prefix(episode):
    err = np.abs(episode["inpainted"][:, :HARD] - episode["committed"][:, :HARD]).max()
    assert err < 1e-5  # float32 normalise / unnormalise round trip
    # the free chunk does not happen to match (the check above can fail)
    assert np.abs(episode["free"][:, :HARD] - episode["committed"][:, :HARD]).max() > 0.05


def test_soft_steps_are_pulled_towards_the_old_plan(episode):
    soft = slice(HARD, HARD + SOFT)
    towards = np.abs(episode["inpainted"][:, soft] - episode["committed"][:, soft]).mean()
    free = np.abs(episode["free"][:, soft] - episode["committed"][:, soft]).mean()
    assert towards < 0.8 * free


def test_the_rest_still_tracks_the_demonstration(episode):
    rest = slice(HARD + SOFT, CHUNK)
    target = episode["target"]
    blind = np.abs(target.mean(axis=0, keepdims=True) - target)[:, rest].mean()  # ignores the inputs
    err = np.abs(episode["inpainted"][:, rest] - target[:, rest]).mean()
    free_err = np.abs(episode["free"][:, rest] - target[:, rest]).mean()
    assert free_err < 0.75 * blind  # the model learned the task
    assert err < 0.75 * blind and err < 1.5 * free_err + 0.02


def test_no_prefix_is_bit_identical_to_free_sampling(policy):
    state, instr, _ = demos(np.random.default_rng(9), 2)
    texts = [INSTRUCTIONS[k] for k in instr]
    a = policy.predict_chunk_batch(grey(2), texts, state, seed=11)
    b = policy.predict_chunk_batch(grey(2), texts, state, seed=11, prefix=None, prefix_weight=None)
    c = policy.predict_chunk(grey(1)[0], texts[0], state[0], seed=11)
    assert np.array_equal(a, b)
    assert np.array_equal(c, policy.predict_chunk(grey(1)[0], texts[0], state[0], seed=11, prefix=None))
    # a zero weight everywhere changes nothing either (the blend keeps x exactly)
    d = policy.predict_chunk_batch(
        grey(2), texts, state, seed=11, prefix=np.ones((2, 3, DIM)), prefix_weight=np.zeros((2, CHUNK))
    )
    assert np.array_equal(a, d)


def test_same_seed_same_inpainted_chunk(policy):
    state, instr, target = demos(np.random.default_rng(10), 1)
    weight = prefix_weights(CHUNK, 2, 4, 2)
    run = [
        policy.predict_chunk(grey(1)[0], INSTRUCTIONS[instr[0]], state[0], 5, None, target[0, :4], weight)
        for _ in range(2)
    ]
    assert np.array_equal(run[0], run[1])


@pytest.mark.parametrize(
    "prefix, weight, match",
    [
        (np.zeros((3, DIM)), None, "prefix and prefix_weight go together"),
        (np.zeros((3, DIM + 1)), np.zeros(CHUNK), r"prefix must have shape \(k, 4\)"),
        (np.zeros((CHUNK + 1, DIM)), np.zeros(CHUNK), "1 <= k <= 16"),
        (np.zeros((3, DIM)), np.zeros(CHUNK - 1), r"prefix_weight must have shape \(16,\)"),
        (np.zeros((3, DIM)), np.full(CHUNK, 0.0) + np.eye(CHUNK)[0] * 1.5, r"must lie in \[0, 1\]"),
        (np.zeros((3, DIM)), np.eye(CHUNK)[5], "must be 0 from step k=3 on"),
        (np.full((3, DIM), np.nan), np.eye(CHUNK)[0], "prefix contains NaN"),
    ],
)
def test_bad_prefix_is_a_clear_error(policy, prefix, weight, match):
    with pytest.raises(ValueError, match=match):
        policy.predict_chunk(
            grey(1)[0], INSTRUCTIONS[0], np.zeros(DIM), seed=0, prefix=prefix, prefix_weight=weight
        )
