"""Inference engines: one small interface in front of the ways a checkpoint can be run.

``load_engine(checkpoint_dir, engine="torch", ...)`` (below) returns an ``Engine`` (base.py: the
interface, EngineConfig, the shared warm-up). Modules:

    base      Engine, EngineConfig, ENGINES, warm_up
    chunk_io  ChunkIO: the NumPy input/output step every engine shares (checks, inputs, actions)
    eager     TorchEngine: the TinyVLAPolicy run eagerly by PyTorch ("torch")
    compiled  TorchCompileEngine: the encoder and denoiser under torch.compile ("torch_compile")
    onnx      OnnxEngine, OnnxEngineConfig: the exported graphs run by ONNX Runtime ("onnx", ...)
    ort       ONNX Runtime sessions, execution providers and the DDIM loops around the graphs
    ddim      DDIMPlan: diffusers' DDIM schedule as precomputed numbers (NumPy loop, graph inputs)
    parity    the ONNX graphs checked against the torch policy, one check per graph
    faults    FaultEngine: a test-only wrapper that corrupts or stalls an engine's chunks
"""

from __future__ import annotations

from pathlib import Path

from tinyvla_ros.vla.engines.base import ONNX_ENGINES, Engine, EngineConfig

__all__ = ["load_engine"]


def load_engine(
    checkpoint_dir: str | Path,
    engine: str = "torch",
    device: str = "cpu",
    precision: str = "fp32",
    expected: dict | None = None,
    num_threads: int = 0,
    inpaint: bool = False,
) -> Engine:
    """Load a checkpoint directory into an inference engine.

    inpaint: the caller will pass committed prefixes: the ONNX engine's fused/graph loops then
    load (export if missing) their inpainting graphs now instead of on the first such call.

    expected: {"action_dim": int, "camera_names": [...], "state_dim": int} the robot needs; a
    checkpoint that does not fit raises tinyvla_ros.vla.policy.CheckpointMismatchError naming the
    field, the checkpoint's value and the expected one. A missing directory raises FileNotFoundError.
    engine "fault:..." (tests only, TINYVLA_ENABLE_FAULT_HOOKS=1): see tinyvla_ros.vla.engines.faults.
    """
    if str(engine).startswith("fault"):
        from tinyvla_ros.vla.engines.faults import FaultEngine, fault_config

        spec = fault_config(engine)  # RuntimeError unless the test-only hooks are enabled
        inner = load_engine(checkpoint_dir, spec.inner, device, precision, expected, num_threads, inpaint)
        return FaultEngine(inner, spec)
    cfg = EngineConfig(engine=engine, device=device, precision=precision, num_threads=num_threads)
    path = Path(checkpoint_dir).expanduser()
    if not str(checkpoint_dir) or not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory not found: {str(checkpoint_dir)!r}")
    if cfg.engine in ONNX_ENGINES:
        from tinyvla_ros.vla.engines.onnx import OnnxEngine, OnnxEngineConfig

        cuda_provider = "tensorrt" if cfg.engine == "onnx_tensorrt" else "cuda"
        provider = "cpu" if cfg.device == "cpu" else cuda_provider
        ort_cfg = OnnxEngineConfig(
            provider, cfg.device, cfg.precision, num_threads=cfg.num_threads, inpaint=inpaint
        )
        return OnnxEngine(path, ort_cfg, expected=expected)
    from tinyvla_ros.vla.policy import TinyVLAPolicy

    policy = TinyVLAPolicy.from_pretrained(path, map_location="cpu", expected=expected)
    if cfg.engine == "torch_compile":
        from tinyvla_ros.vla.engines.compiled import TorchCompileEngine

        return TorchCompileEngine(policy, cfg)
    from tinyvla_ros.vla.engines.eager import TorchEngine

    return TorchEngine(policy, cfg)
