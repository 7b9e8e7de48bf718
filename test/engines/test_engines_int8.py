"""precision int8 (ONNX Runtime, CPU): a dynamically quantised encoder beside the fp32 loop graphs."""

from __future__ import annotations

import platform

import numpy as np
import onnx
import pytest

from tinyvla_ros.vla import export
from tinyvla_ros.vla.engines import load_engine
from tinyvla_ros.vla.engines.base import EngineConfig
from tinyvla_ros.vla.engines.onnx import OnnxEngine, OnnxEngineConfig
from tinyvla_ros.vla.engines.ort import cpu_has_vnni

TEXT = "pick up the red cube"


@pytest.fixture
def int8_copy(franka_copy):
    """The exported Franka checkpoint copy with encoder.int8.onnx exported beside the fp32 graphs."""
    export.export_checkpoint(
        franka_copy, export.ExportConfig(precision="int8", graphs=("encoder", "denoiser"))
    )
    return franka_copy


def test_int8_export_quantises_the_encoder_weights_only(int8_copy):
    manifest = export.read_manifest(int8_copy)
    entry = manifest["graphs"]["encoder.int8.onnx"]
    assert entry["precision"] == "int8" and entry["int8_matmuls"] > 0
    assert manifest["graphs"]["denoiser.onnx"]["precision"] == "fp32"  # int8 leaves the loop graphs fp32
    assert not (int8_copy / "denoiser.int8.onnx").exists()
    model = onnx.load(str(int8_copy / "encoder.int8.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("MatMulInteger") == entry["int8_matmuls"]
    int8_weights = [
        t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 2
    ]
    assert len(int8_weights) == entry["int8_matmuls"]  # every quantised MatMul holds an int8 weight matrix
    assert "SkipLayerNormalization" in ops  # fused first, then quantised
    fp32_size = (int8_copy / "encoder.onnx").stat().st_size
    assert (int8_copy / "encoder.int8.onnx").stat().st_size < 0.6 * fp32_size
    parity = manifest["parity"]["encoder.int8.onnx"]
    assert parity["ok"] and 0.0 < parity["condition_rel"] <= export.INT8_CONDITION_TOLERANCE
    assert parity["max_abs_diff"]["eps"] <= 1e-4  # the fp32 denoiser is checked as usual
    assert parity["max_abs_diff"]["chunk_numpy"] <= 1e-4  # the loop on torch's condition
    assert parity["max_abs_diff"]["chunk_int8"] > 1e-4  # the int8 condition moves the chunk


def test_int8_engine_is_close_to_fp32_and_really_quantised(int8_copy, observation):
    fp32 = OnnxEngine(int8_copy, OnnxEngineConfig(loop="numpy", num_threads=1, auto_export=False))
    int8 = OnnxEngine(
        int8_copy, OnnxEngineConfig(loop="numpy", precision="int8", num_threads=1, auto_export=False)
    )
    assert int8.graphs is not fp32.graphs
    for seed in range(4):
        images, state = observation(2, 8, seed=seed)
        pixels = fp32.io.pixel_values([images]).copy()
        ids, mask = fp32._text_inputs([TEXT])
        state_norm = fp32.io.states(state[None], 1)
        c32 = fp32.encode(pixels, ids, mask, state_norm)
        c8 = int8.encode(pixels, ids, mask, state_norm)
        rel = np.linalg.norm(c8 - c32) / np.linalg.norm(c32)
        assert 1e-4 < rel <= export.INT8_CONDITION_TOLERANCE, rel
        a32 = fp32.normalizer.normalize_action(fp32.predict_chunk(images, TEXT, state, seed=seed))
        a8 = int8.normalizer.normalize_action(int8.predict_chunk(images, TEXT, state, seed=seed))
        assert a8.shape == (16, 8) and np.all(np.isfinite(a8))
        assert 0.0 < np.max(np.abs(a8 - a32)) <= 0.25  # normalised units: the action range is [-1, 1]


def test_int8_is_exported_on_demand_through_load_engine(franka_copy, observation):
    engine = load_engine(franka_copy, "onnx", "cpu", "int8", num_threads=1)
    images, state = observation(2, 8, seed=1)
    assert engine.predict_chunk(images, TEXT, state, seed=0).shape == (16, 8)
    assert (franka_copy / "encoder.int8.onnx").is_file()


def test_int8_is_offered_on_cpu_by_onnx_only(franka_ckpt):
    with pytest.raises(ValueError, match="precision 'int8' runs on provider 'cpu' only"):
        OnnxEngineConfig(provider="cuda", device="cuda", precision="int8")
    with pytest.raises(ValueError, match="precision 'int8' is offered by engine 'onnx' on device 'cpu'"):
        EngineConfig(engine="torch", precision="int8")
    with pytest.raises(ValueError, match="engine 'onnx' on device 'cpu'"):
        load_engine(franka_ckpt, "torch", "cpu", "int8")
    assert EngineConfig(engine="onnx", precision="int8").precision == "int8"


def test_int8_condition_bound_can_fail(franka_copy, monkeypatch, capsys):
    monkeypatch.setattr(export, "INT8_CONDITION_TOLERANCE", 1e-9)
    code = export.main([str(franka_copy), "--graphs", "encoder", "--precision", "int8"])
    assert code == 1
    assert "int8 condition: relative error 1e-09" in capsys.readouterr().err


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 CPU flags")
def test_vnni_is_read_from_the_cpu_flags(tmp_path):
    with_vnni = tmp_path / "vnni"
    with_vnni.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n")
    without = tmp_path / "avx2"
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert cpu_has_vnni(str(with_vnni)) and not cpu_has_vnni(str(without))
    assert cpu_has_vnni(str(tmp_path / "missing"))  # unreadable flags: no warning
