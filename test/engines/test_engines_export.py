"""tinyvla-export: files, manifest, parity figures, staleness, external data, CLI errors."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from tinyvla_ros.vla import export
from tinyvla_ros.vla.engines.onnx import OnnxEngine, OnnxEngineConfig
from tinyvla_ros.vla.policy import TinyVLAPolicy
from tinyvla_ros.vla.testing import make_tiny_checkpoint


def test_export_writes_graphs_and_manifest_with_parity(franka_ckpt):
    manifest = json.loads((franka_ckpt / export.MANIFEST_FILE).read_text())
    assert {"encoder.onnx", "denoiser.onnx", "denoise_step.onnx"} <= set(manifest["graphs"])
    assert manifest["weights_sha256"] == export.weights_digest(franka_ckpt)
    parity = manifest["parity"]["encoder.onnx"]
    assert parity["ok"] and parity["checked"] and parity["provider"] == "CPUExecutionProvider"
    diffs = parity["max_abs_diff"]
    assert set(diffs) == {"condition", "eps", "chunk_numpy", "chunk_fused"}
    assert all(0.0 <= v <= 1e-4 for v in diffs.values())
    assert manifest["ddim"]["timesteps"] == [90, 80, 70, 60, 50, 40, 30, 20, 10, 0]
    model = onnx.load(str(franka_ckpt / "encoder.onnx"))
    dims = {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input
    }
    assert dims["input_ids"] == ["batch", "text"] and dims["pixel_values"][0] == "batch"  # dynamic batch/text
    assert export.manifest_problem(franka_ckpt, ["encoder.onnx", "denoiser.onnx"]) is None


def test_encoder_is_fused_by_default_and_not_with_no_fuse(franka_copy, observation):
    """Default export: LayerNorm/GELU patterns become ORT contrib ops; outputs stay within parity of
    torch for another batch size and prompt length; --no-fuse keeps the traced graph."""
    fused = export.read_manifest(franka_copy)["graphs"]["encoder.onnx"]["fused_ops"]
    assert fused.get("SkipLayerNormalization", 0) > 0 and fused.get("LayerNormalization", 0) > 0
    ops = {n.op_type for n in onnx.load(str(franka_copy / "encoder.onnx")).graph.node}
    assert "SkipLayerNormalization" in ops
    obs = [observation(2, 8, seed=s) for s in (3, 4)]
    texts = ["pick up the red cube", "put the green cube in the bowl and then close the drawer"]
    states = np.stack([st for _, st in obs])
    ref = (
        TinyVLAPolicy.from_pretrained(franka_copy)
        .eval()
        .predict_chunk_batch([i for i, _ in obs], texts, states, seed=5)
    )
    for fuse in (True, False):
        if not fuse:
            assert export.main([str(franka_copy), "--graphs", "encoder", "--no-fuse"]) == 0
        engine = OnnxEngine(franka_copy, OnnxEngineConfig(loop="numpy", num_threads=1, auto_export=False))
        got = engine.predict_chunk_batch([i for i, _ in obs], texts, states, seed=5)
        assert got.shape == (2, 16, 8) and np.max(np.abs(got - ref)) <= 1e-4, fuse
    assert "fused_ops" not in export.read_manifest(franka_copy)["graphs"]["encoder.onnx"]
    ops = {n.op_type for n in onnx.load(str(franka_copy / "encoder.onnx")).graph.node}
    assert not ops & {"SkipLayerNormalization", "BiasGelu", "QuickGelu"}


def test_cli_exports_and_reports(franka_copy, capsys):
    (franka_copy / "denoiser.onnx").unlink()
    assert export.main([str(franka_copy), "--graphs", "denoiser", "--opset", "18", "--check"]) == 0
    out = capsys.readouterr().out
    assert "parity (max abs diff vs torch)" in out and "denoiser.onnx" in out
    manifest = export.read_manifest(franka_copy)
    assert {"encoder.onnx", "denoiser.onnx"} <= set(manifest["graphs"])  # earlier graphs kept


def test_parity_failure_is_reported(franka_copy, capsys):
    # Diffs are ~1e-6: a tolerance far below them must fail the check (the check can fail).
    assert export.main([str(franka_copy), "--graphs", "denoiser", "--tolerance", "1e-12"]) == 1
    assert "differs from torch by more than 1e-12" in capsys.readouterr().err


def test_changed_weights_make_graphs_stale(franka_copy, observation):
    make_tiny_checkpoint(franka_copy, ("zed_left", "zed_right"), 8, 8, seed=99)  # same layout, new weights
    problem = export.manifest_problem(franka_copy, ["encoder.onnx", "denoiser.onnx"])
    assert problem is not None and "other weights" in problem
    with pytest.raises(FileNotFoundError, match="tinyvla-export"):
        OnnxEngine(franka_copy, OnnxEngineConfig(auto_export=False))
    engine = OnnxEngine(franka_copy, OnnxEngineConfig(num_threads=1))  # re-exports
    assert export.manifest_problem(franka_copy, ["encoder.onnx", "denoiser.onnx"]) is None
    from tinyvla_ros.vla.policy import TinyVLAPolicy

    images, state = observation(2, 8)
    ref = TinyVLAPolicy.from_pretrained(franka_copy).predict_chunk(images, "stack", state, seed=0)
    assert np.max(np.abs(engine.predict_chunk(images, "stack", state, seed=0) - ref)) <= 1e-4


def test_external_data_layout_runs(franka_copy, observation):
    cfg = export.ExportConfig(graphs=("denoiser",), external_data="always")
    export.export_checkpoint(franka_copy, cfg)
    data = (franka_copy / "denoiser.onnx.data").stat().st_size
    assert (
        data > 1_000_000 and (franka_copy / "denoiser.onnx").stat().st_size < data / 10
    )  # weights moved out
    engine = OnnxEngine(franka_copy, OnnxEngineConfig(num_threads=1, auto_export=False))
    images, state = observation(2, 8)
    assert np.all(np.isfinite(engine.predict_chunk(images, "stack", state, seed=0)))


def test_export_config_and_cli_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="opset.*12"):
        export.ExportConfig(opset=12)
    with pytest.raises(ValueError, match="graphs.*'vae'"):
        export.ExportConfig(graphs=("vae",))
    with pytest.raises(ValueError, match="exporter.*'jit'"):
        export.ExportConfig(exporter="jit")
    with pytest.raises(ValueError, match="sampler graph needs num_inference_steps"):
        export.graph_file("sampler")
    assert export.graph_file("sampler", "fp16", 5) == "sampler_5.fp16.onnx"
    assert export.main([str(tmp_path / "nowhere")]) == 2
    assert "checkpoint directory not found" in capsys.readouterr().err
