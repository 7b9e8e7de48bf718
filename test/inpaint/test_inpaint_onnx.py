"""ONNX engine with a committed prefix: every loop (numpy, fused, graph) matches torch for the same seed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tinyvla_ros.core.chunking import prefix_weights
from tinyvla_ros.vla.config import get_config
from tinyvla_ros.vla.engines import load_engine
from tinyvla_ros.vla.engines.onnx import OnnxEngine, OnnxEngineConfig
from tinyvla_ros.vla.normalize import Normalizer
from tinyvla_ros.vla.policy import TinyVLAPolicy

CAMS, STATE, ACTION, CHUNK = ("left", "right"), 5, 6, 16


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.set_num_threads(1)
    config = get_config(
        "nano", camera_names=CAMS, state_dim=STATE, action_dim=ACTION, chunk_len=CHUNK, num_inference_steps=4
    )
    rng = np.random.default_rng(0)
    norm = Normalizer(
        action_low=rng.uniform(-2, 0, ACTION),
        action_high=rng.uniform(0.5, 3, ACTION),
        state_mean=np.zeros(STATE),
        state_std=np.ones(STATE),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        policy = TinyVLAPolicy(config, normalizer=norm)
    return policy.save_pretrained(tmp_path_factory.mktemp("inpaint_onnx") / "ckpt")


@pytest.fixture(scope="module")
def inputs(checkpoint):
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in CAMS]
    state = rng.normal(size=STATE).astype(np.float32)
    norm = Normalizer.load(checkpoint / "stats.json")
    prefix = rng.uniform(norm.action_low, norm.action_high, (7, ACTION)).astype(np.float32)
    weight = prefix_weights(CHUNK, 4, 7, 3)
    torch_engine = load_engine(checkpoint, "torch", num_threads=1)
    reference = torch_engine.predict_chunk(
        images, "stack the cups", state, seed=5, prefix=prefix, prefix_weight=weight
    )
    return {"images": images, "state": state, "prefix": prefix, "weight": weight, "reference": reference}


def _inpainted(engine, inputs, seed: int):
    """The engine's chunk for the fixture's observation with its committed prefix."""
    return engine.predict_chunk(
        inputs["images"],
        "stack the cups",
        inputs["state"],
        seed=seed,
        prefix=inputs["prefix"],
        prefix_weight=inputs["weight"],
    )


@pytest.mark.parametrize("loop", ["numpy", "fused", "graph"])
def test_onnx_inpainting_matches_torch(checkpoint, inputs, loop):
    engine = OnnxEngine(checkpoint, OnnxEngineConfig(loop=loop, num_threads=1, inpaint=True))
    out = _inpainted(engine, inputs, seed=5)
    assert np.abs(out - inputs["reference"]).max() <= 1e-4
    np.testing.assert_allclose(out[:4], inputs["prefix"][:4], atol=1e-5)  # committed steps held
    # a different seed changes the free part, never the committed steps
    other = _inpainted(engine, inputs, seed=6)
    np.testing.assert_allclose(other[:4], inputs["prefix"][:4], atol=1e-5)
    assert np.abs(other[7:] - out[7:]).max() > 1e-3


def test_export_records_inpainting_parity_and_graph_inputs(checkpoint, inputs):
    import onnx

    OnnxEngine(checkpoint, OnnxEngineConfig(loop="fused", num_threads=1, inpaint=True))  # exported if missing
    manifest = json.loads((checkpoint / "onnx.json").read_text())
    parity = manifest["parity"]["denoise_step_inpaint.onnx"]
    assert parity["ok"] and parity["max_abs_diff"]["chunk_fused_inpaint"] <= 1e-4
    graph = onnx.load(str(checkpoint / "denoise_step_inpaint.onnx"), load_external_data=False).graph
    assert {"prefix", "prefix_weight", "prefix_noise"} <= {i.name for i in graph.input}


def test_fused_loop_loads_its_inpainting_graph_on_first_use(checkpoint, inputs):
    engine = OnnxEngine(checkpoint, OnnxEngineConfig(loop="fused", num_threads=1, inpaint=False))
    assert engine.graphs.inpaint_session is None
    free = engine.predict_chunk(inputs["images"], "stack the cups", inputs["state"], seed=5)
    out = _inpainted(engine, inputs, seed=5)
    assert engine.graphs.inpaint_session is not None
    assert np.abs(out - inputs["reference"]).max() <= 1e-4
    assert np.abs(free[:4] - inputs["prefix"][:4]).max() > 1e-2  # without the prefix: not held


def test_onnx_bad_prefix_is_a_clear_error(checkpoint, inputs):
    engine = OnnxEngine(checkpoint, OnnxEngineConfig(loop="numpy", num_threads=1))
    with pytest.raises(ValueError, match="must be 0 from step k=7 on"):
        engine.predict_chunk(
            inputs["images"], "go", inputs["state"], prefix=inputs["prefix"], prefix_weight=np.ones(CHUNK)
        )


@pytest.mark.parametrize("loop", ["numpy", "fused"])
def test_int8_encoder_inpaints_with_the_fp32_loop_graphs(checkpoint, inputs, loop):
    """precision int8 quantises the encoder only: the inpainting loop graphs are the fp32 files, the
    committed steps are held exactly and the free part stays near the fp32 chunk."""
    engine = OnnxEngine(
        checkpoint, OnnxEngineConfig(loop=loop, precision="int8", num_threads=1, inpaint=True)
    )
    out = _inpainted(engine, inputs, seed=5)
    assert (checkpoint / "encoder.int8.onnx").is_file()
    assert not list(checkpoint.glob("denoise*.int8.onnx"))
    np.testing.assert_allclose(out[:4], inputs["prefix"][:4], atol=1e-5)
    norm = Normalizer.load(checkpoint / "stats.json")
    shift = np.abs(norm.normalize_action(out) - norm.normalize_action(inputs["reference"])).max()
    assert 0.0 < shift <= 0.25  # normalised units: int8 moves the chunk a little, not wildly
