"""Every engine runs the spatial condition (cpu-lite0: frozen EfficientNet-Lite0 + keypoints), with
and without the object slots (the readout of object positions appended to the condition), and
with the slot bottleneck (the head reads the instruction, the state and the readout only), whose
readout may give the instructed object through a hidden layer, or every object with the instructed
one selected out of it by the words (object_targets=selected)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinyvla_ros.vla.engines import load_engine
from tinyvla_ros.vla.export import MANIFEST_FILE, ExportConfig, export_checkpoint

FRANKA_CAMERAS = ("zed_left", "zed_right")


SLOTS = {"aux_dim": 10, "aux_weight": 1.0, "object_slots": True}
BOTTLENECK = {**SLOTS, "slot_bottleneck": True}
# the readout gives the instructed object and its destination through a hidden layer
INSTRUCTED = {**BOTTLENECK, "aux_dim": 4, "object_targets": "instructed", "readout_hidden": 16}
# the readout gives every object; a softmax over them, from the pooled embedding, picks 4 numbers
SELECTED = {**BOTTLENECK, "object_targets": "selected"}


@pytest.fixture(
    scope="module",
    params=[{}, SLOTS, BOTTLENECK, INSTRUCTED, SELECTED],
    ids=["keypoints", "object_slots", "slot_bottleneck", "instructed_readout", "selected_slots"],
)
def lite0_ckpt(tmp_path_factory, request):
    from tinyvla_ros.vla.testing import make_tiny_checkpoint

    directory = make_tiny_checkpoint(
        tmp_path_factory.mktemp("lite0") / "ckpt",
        FRANKA_CAMERAS,
        8,
        8,
        seed=4,
        preset="cpu-lite0",
        **request.param,
    )
    config = json.loads((directory / "config.json").read_text())
    assert config.get("object_slots", False) == bool(request.param)
    assert config.get("slot_bottleneck", False) == ("slot_bottleneck" in request.param)
    export_checkpoint(directory, ExportConfig(graphs=("encoder", "denoiser", "denoise_step")))
    return directory


def test_export_parity_and_trailing_schedule(lite0_ckpt):
    manifest = json.loads((lite0_ckpt / MANIFEST_FILE).read_text())
    assert manifest["ddim"]["timesteps"] == [99, 89, 79, 69, 59, 49, 39, 29, 19, 9]
    for graph, parity in manifest["parity"].items():
        assert parity["ok"] and parity["checked"], graph
        assert all(0.0 <= v <= 1e-4 for v in parity["max_abs_diff"].values()), (graph, parity)


@pytest.mark.parametrize("loop", ["numpy", "fused"])
def test_onnx_engine_matches_torch_with_and_without_inpainting(lite0_ckpt, observation, loop):
    from tinyvla_ros.vla.engines.onnx import OnnxEngine, OnnxEngineConfig

    images, state = observation(2, 8, seed=1)
    torch_engine = load_engine(lite0_ckpt, num_threads=1)
    onnx_engine = OnnxEngine(lite0_ckpt, OnnxEngineConfig(loop=loop, num_threads=1))
    want = torch_engine.predict_chunk(images, "pick up the red cube", state, seed=5)
    got = onnx_engine.predict_chunk(images, "pick up the red cube", state, seed=5)
    np.testing.assert_allclose(got, want, atol=1e-4)
    stats = json.loads((lite0_ckpt / "stats.json").read_text())
    middle = (np.asarray(stats["action_low"]) + np.asarray(stats["action_high"])) / 2
    # 0.01 off the chunk, towards the middle of the action range (a step at a limit stays inside)
    prefix = (want[:4] + 0.01 * np.sign(middle - want[:4])).astype(np.float32)
    weight = np.r_[np.ones(4), np.zeros(12)].astype(np.float32)
    held_t = torch_engine.predict_chunk(
        images, "pick up the red cube", state, seed=6, prefix=prefix, prefix_weight=weight
    )
    held_o = onnx_engine.predict_chunk(
        images, "pick up the red cube", state, seed=6, prefix=prefix, prefix_weight=weight
    )
    np.testing.assert_allclose(held_o, held_t, atol=1e-4)
    np.testing.assert_allclose(held_o[:4], prefix, atol=1e-4)  # the committed steps are held


def test_int8_encoder_keeps_the_condition_close(lite0_ckpt, tmp_path):
    import shutil

    directory = shutil.copytree(lite0_ckpt, tmp_path / "ckpt")
    export_checkpoint(directory, ExportConfig(graphs=("encoder", "denoiser"), precision="int8"))
    manifest = json.loads((directory / MANIFEST_FILE).read_text())
    assert "encoder.int8.onnx" in manifest["graphs"]
    entry = next(v for k, v in manifest["parity"].items() if "int8" in k)
    assert entry["ok"], entry
