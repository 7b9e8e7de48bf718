"""ONNX Runtime engine against the torch policy: same condition, same chunk, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tinyvla_ros.vla.checkpoint import CheckpointMismatchError
from tinyvla_ros.vla.engines import load_engine
from tinyvla_ros.vla.engines.base import Engine
from tinyvla_ros.vla.engines.onnx import OnnxEngine, OnnxEngineConfig
from tinyvla_ros.vla.engines.ort import ExecutionProviderError, available_providers, provider_chain
from tinyvla_ros.vla.policy import TinyVLAPolicy

TOL = 1e-4
TEXT = "pick up the red cube"


@pytest.fixture(scope="module")
def policy(franka_ckpt):
    return TinyVLAPolicy.from_pretrained(franka_ckpt).eval()


@pytest.fixture(scope="module")
def engines(franka_ckpt):
    """One engine per DDIM loop mode (numpy: denoiser.onnx; fused: denoise_step.onnx)."""
    make = lambda loop: OnnxEngine(franka_ckpt, OnnxEngineConfig(loop=loop, num_threads=1, auto_export=False))  # noqa: E731
    return {loop: make(loop) for loop in ("numpy", "fused")}


def test_condition_matches_torch(policy, engines, observation):
    images, state = observation(2, 8, seed=1)
    pixels = policy.preprocess_images(images)[None]
    ids, mask = policy.tokenize(TEXT)
    state_norm = policy.normalizer.normalize_state(torch.from_numpy(state)[None])
    with torch.inference_mode():
        ref = policy.encode_observation(pixels, ids, mask, state_norm).numpy()  # (1, C)
    got = engines["numpy"].encode(pixels.numpy(), ids.numpy(), mask.numpy(), state_norm.numpy())
    assert got.shape == ref.shape == (1, policy.config.cond_dim)
    assert np.max(np.abs(got - ref)) <= TOL
    assert np.max(np.abs(ref)) > 0.1  # a real signal, not two zero vectors


@pytest.mark.parametrize("loop", ["numpy", "fused"])
def test_chunk_matches_torch_for_same_seed_and_noise(policy, engines, observation, loop):
    engine = engines[loop]
    images, state = observation(2, 8, seed=2)
    ref = policy.predict_chunk(images, TEXT, state, seed=7)
    got = engine.predict_chunk(images, TEXT, state, seed=7)
    assert got.shape == (16, 8) and got.dtype == np.float32
    assert np.max(np.abs(got - ref)) <= TOL
    noise = np.random.default_rng(3).normal(size=(16, 8)).astype(np.float32)
    ref_n = policy.predict_chunk(images, TEXT, state, initial_noise=noise)
    got_n = engine.predict_chunk(images, TEXT, state, initial_noise=noise)
    assert np.max(np.abs(got_n - ref_n)) <= TOL
    assert np.max(np.abs(got_n - got)) > 1e-3  # the noise matters: the comparison is not vacuous
    low, high = engine.normalizer.action_low, engine.normalizer.action_high
    assert np.all(got >= low - 1e-5) and np.all(got <= high + 1e-5)


def test_batch_with_different_prompts_matches_torch(policy, engines, observation):
    obs = [observation(2, 8, seed=s) for s in (4, 5)]
    texts = [TEXT, "put the small blue bowl into the top drawer and close it"]
    states = np.stack([s for _, s in obs])
    ref = policy.predict_chunk_batch([i for i, _ in obs], texts, states, seed=11)
    got = engines["fused"].predict_chunk_batch([i for i, _ in obs], texts, states, seed=11)
    assert got.shape == (2, 16, 8)
    assert np.max(np.abs(got - ref)) <= TOL


def test_whole_loop_graph_matches_torch(franka_copy, observation):
    engine = OnnxEngine(franka_copy, OnnxEngineConfig(loop="graph", num_inference_steps=2, num_threads=1))
    assert (franka_copy / "sampler_2.onnx").is_file()  # exported on demand, parity-checked
    base = TinyVLAPolicy.from_pretrained(franka_copy)
    policy = TinyVLAPolicy(base.config.replace(num_inference_steps=2), base.tokenizer, base.normalizer)
    policy.load_state_dict(base.state_dict())
    images, state = observation(2, 8, seed=6)
    ref = policy.predict_chunk(images, TEXT, state, seed=1)
    assert np.max(np.abs(engine.predict_chunk(images, TEXT, state, seed=1) - ref)) <= TOL


def test_bimanual_checkpoint_exports_on_demand_and_matches(ur5_ckpt, observation):
    engine = load_engine(ur5_ckpt, engine="onnx", num_threads=1)
    assert isinstance(engine, Engine) and engine.name == "onnx"
    assert (ur5_ckpt / "encoder.onnx").is_file() and (ur5_ckpt / "onnx.json").is_file()
    images, state = observation(3, 14, seed=8)
    ref = TinyVLAPolicy.from_pretrained(ur5_ckpt).predict_chunk(images, TEXT, state, seed=2)
    got = engine.predict_chunk(images, TEXT, state, seed=2)
    assert got.shape == (16, 14) and np.max(np.abs(got - ref)) <= TOL


def test_engine_names_and_interface(franka_ckpt):
    expected = {"action_dim": 8, "camera_names": ["zed_left", "zed_right"], "state_dim": 8}
    for name in ("onnx", "onnxruntime"):
        engine = load_engine(franka_ckpt, engine=name, expected=expected, num_threads=1)
        assert isinstance(engine, OnnxEngine) and engine.graphs.providers[0] == "CPUExecutionProvider"
    assert engine.warmup(1) > 0.0
    with pytest.raises(CheckpointMismatchError, match="action_dim is 8 in the checkpoint but 14 is expected"):
        load_engine(franka_ckpt, engine="onnx", expected={"action_dim": 14})


def test_work_is_reused_between_calls(engines, observation):
    engine = engines["fused"]
    images, state = observation(2, 8, seed=9)
    first = engine.predict_chunk(images, TEXT, state, seed=0)
    text, buffers = engine._text_inputs([TEXT]), engine.graphs.buffers(1, 16, 8)
    second = engine.predict_chunk(images, TEXT, state, seed=0)
    assert engine._text_inputs([TEXT]) is text  # no re-tokenising of an unchanged instruction
    assert engine.graphs.buffers(1, 16, 8) is buffers  # preallocated, not rebuilt
    np.testing.assert_array_equal(first, second)


def test_missing_execution_provider_is_named():
    assert "CUDAExecutionProvider" not in available_providers()  # this machine: onnxruntime (CPU)
    with pytest.raises(
        ExecutionProviderError, match=r"CUDAExecutionProvider .*available: \[.*CPUExecutionProvider"
    ):
        provider_chain("cuda", "cuda:0")
    with pytest.raises(ExecutionProviderError, match="TensorrtExecutionProvider"):
        provider_chain("tensorrt", "cuda")


def test_missing_provider_through_load_engine(franka_ckpt):
    with pytest.raises(ExecutionProviderError, match="CUDAExecutionProvider.*not available"):
        load_engine(franka_ckpt, engine="onnx", device="cuda")
    with pytest.raises(ExecutionProviderError, match="TensorrtExecutionProvider.*not available"):
        load_engine(franka_ckpt, engine="onnx_tensorrt", device="cuda:0", precision="fp16")


def test_config_errors_name_the_value():
    with pytest.raises(ValueError, match="precision.*'bf16'"):
        OnnxEngineConfig(precision="bf16")
    with pytest.raises(ValueError, match="fp16.*provider 'cpu'"):
        OnnxEngineConfig(precision="fp16")
    with pytest.raises(ValueError, match="provider 'cuda' cannot run on device 'cpu'"):
        OnnxEngineConfig(provider="cuda")
    with pytest.raises(ValueError, match="loop must be one of.*'gpu'"):
        OnnxEngineConfig(loop="gpu")
    with pytest.raises(ValueError, match="num_inference_steps.*0"):
        OnnxEngineConfig(num_inference_steps=0)
    with pytest.raises(ValueError, match="device.*'tpu:0'"):
        OnnxEngineConfig(provider="cuda", device="tpu:0")


def test_bad_inputs_are_clear_and_leave_engine_usable(engines, observation):
    engine = engines["numpy"]
    images, state = observation(2, 8, seed=10)
    with pytest.raises(ValueError, match="expected 2 images"):
        engine.predict_chunk(images[:1], TEXT, state)
    with pytest.raises(ValueError, match=r"state must have shape \(8,\)"):
        engine.predict_chunk(images, TEXT, state[:7])
    with pytest.raises(ValueError, match="NaN or inf"):
        engine.predict_chunk(images, TEXT, np.full(8, np.nan, np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        engine.predict_chunk([images[0], images[1].astype(np.float32)], TEXT, state)
    with pytest.raises(TypeError, match="instruction must be a str"):
        engine.predict_chunk(images, None, state)
    with pytest.raises(ValueError, match="max_text_tokens"):
        engine.predict_chunk(images, "pick " * 200, state)
    with pytest.raises(ValueError, match="initial_noise must have shape"):
        engine.predict_chunk(images, TEXT, state, initial_noise=np.zeros((8, 8)))
    assert np.all(np.isfinite(engine.predict_chunk(images, TEXT, state, seed=1)))


def test_centre_crop_of_the_checkpoint_is_applied_by_both_engines(franka_copy, observation):
    """config.json center_crop (preprocessing, not in the graphs: the export stays valid)."""
    import json

    cfg_path = franka_copy / "config.json"
    images, state = observation(2, 8, seed=6)
    whole = TinyVLAPolicy.from_pretrained(franka_copy).eval().predict_chunk(images, TEXT, state, seed=2)
    config = json.loads(cfg_path.read_text())
    config["center_crop"] = 0.8
    cfg_path.write_text(json.dumps(config))
    ref = TinyVLAPolicy.from_pretrained(franka_copy).eval().predict_chunk(images, TEXT, state, seed=2)
    engine = OnnxEngine(franka_copy, OnnxEngineConfig(loop="numpy", num_threads=1, auto_export=False))
    got = engine.predict_chunk(images, TEXT, state, seed=2)
    assert np.max(np.abs(got - ref)) <= TOL
    assert np.max(np.abs(ref - whole)) > 1e-3  # the crop changed what the model saw


_LOAD_AND_PREDICT = """
import sys, time, numpy as np, torch
torch.set_num_threads(1)
from tinyvla_ros.vla.engines.onnx import OnnxEngine, OnnxEngineConfig
while time.time() < float(sys.argv[3]):  # both processes look at the directory at the same moment
    time.sleep(0.005)
engine = OnnxEngine(sys.argv[1], OnnxEngineConfig(num_threads=1), log=lambda m: print(m, flush=True))
rng = np.random.default_rng(0)
images = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in engine.config.camera_names]
chunk = engine.predict_chunk(images, "pick up the red cube", np.zeros(engine.config.state_dim), seed=3)
np.save(sys.argv[2], chunk)
"""


def test_two_processes_loading_one_fresh_checkpoint_export_it_once_and_agree(ur5_ckpt, tmp_path):
    """Two processes that find the same checkpoint without ONNX graphs: one exports (under a lock on
    the directory), the other waits and uses its graphs. Without the lock both wrote the same files
    at once and one failed on a torn graph (seen: 'The model does not have an ir_version set')."""
    import shutil
    import subprocess
    import sys
    import time

    ckpt = shutil.copytree(ur5_ckpt, tmp_path / "fresh")
    for f in list(ckpt.glob("*.onnx*")) + list(ckpt.glob("onnx.json")):
        f.unlink()
    start = time.time() + 15.0  # after both have imported torch and the engine
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _LOAD_AND_PREDICT, str(ckpt), str(tmp_path / f"chunk{i}.npy"), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    exports = sum(out.count("exporting ONNX graphs") for out in outputs)
    assert exports == 1, outputs  # the second found the first one's graphs
    np.testing.assert_array_equal(np.load(tmp_path / "chunk0.npy"), np.load(tmp_path / "chunk1.npy"))
