"""Inference engines: one small interface in front of the ways a checkpoint can be run.

``load_engine(checkpoint_dir, engine="torch", ...)`` returns an ``Engine``:
    .name            "torch" (this version; ONNX Runtime is added beside it)
    .config          the checkpoint's TinyVLAConfig (camera_names, state_dim, action_dim, chunk_len...)
    .predict_chunk(images, instruction, state, seed=None, prefix=None, prefix_weight=None)
        -> (T, A) float32 actions in robot units
        images: list of (H, W, 3) uint8 RGB, one per camera in config.camera_names order
        state:  (state_dim,) robot units
        prefix (k, A) robot units, prefix_weight (T,) in [0, 1]: inpaint the committed steps
        (tinyvla_ros.vla.inpaint); both None (default): free sampling, as before
    .warmup(runs)    run inference on blank inputs so the first real call is not the slow one

The policy node calls it from one worker thread; an engine is not required to be thread-safe.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

# "onnx" (alias "onnxruntime"): ONNX Runtime, CPU provider on device cpu, CUDA provider on cuda[:i];
# "onnx_tensorrt": ONNX Runtime with the TensorRT provider (engine_onnx.py); "torch_compile":
# torch.compile of the encoder and denoiser (engine_torch_compile.py).
ENGINES = ("torch", "torch_compile", "onnx", "onnxruntime", "onnx_tensorrt")
ONNX_ENGINES = ("onnx", "onnxruntime", "onnx_tensorrt")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")  # int8: ONNX Runtime on CPU only


@runtime_checkable
class Engine(Protocol):
    """What the ROS policy node needs from an inference backend."""

    name: str
    config: Any

    def predict_chunk(
        self,
        images: list[np.ndarray],
        instruction: str,
        state: np.ndarray,
        seed: int | None = None,
        prefix: np.ndarray | None = None,
        prefix_weight: np.ndarray | None = None,
    ) -> np.ndarray:
        """(T, A) float32 actions in robot units (prefix/prefix_weight: inpainting, see module docstring)."""
        ...

    def warmup(self, runs: int = 2) -> float:
        """Run ``runs`` blank inferences; returns the last one's duration in seconds."""
        ...


@dataclass(frozen=True)
class EngineConfig:
    """How to run a checkpoint.

    engine: "torch"; device: "cpu" | "cuda" | "cuda:<i>"; precision: "fp32" | "bf16" | "fp16" |
    "int8" (fp16 needs CUDA; int8 the onnx engine on CPU; bf16 is not an ONNX precision);
    num_threads: torch intra-op threads, 0 leaves the library default.
    """

    engine: str = "torch"
    device: str = "cpu"
    precision: str = "fp32"
    num_threads: int = 0

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {list(ENGINES)}, got {self.engine!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'cpu' or 'cuda[:i]', got {self.device!r}")
        if self.precision == "fp16" and self.device == "cpu":
            raise ValueError("precision 'fp16' needs a CUDA device, got device 'cpu' (use fp32 or bf16)")
        if self.precision == "int8" and (self.engine not in ("onnx", "onnxruntime") or self.device != "cpu"):
            raise ValueError(
                f"precision 'int8' is offered by engine 'onnx' on device 'cpu' (int8 encoder MatMuls), got "
                f"engine {self.engine!r} on device {self.device!r}"
            )
        if self.num_threads < 0:
            raise ValueError(f"num_threads must be >= 0, got {self.num_threads!r}")


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a hard dependency of vla/
        raise ImportError("the torch engine needs PyTorch: pip install -r requirements/ml.txt") from exc
    return torch


class TorchEngine:
    """Runs a TinyVLAPolicy with PyTorch (eager), optionally under bf16/fp16 autocast."""

    name = "torch"

    def __init__(self, policy: Any, cfg: EngineConfig) -> None:
        torch = _torch()
        self._torch = torch
        self.cfg = cfg
        if cfg.num_threads > 0:
            torch.set_num_threads(cfg.num_threads)
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"device {cfg.device!r} requested but torch sees no CUDA device")
        self.policy = policy.to(cfg.device).eval()
        self.config = policy.config
        self._dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)

    def predict_chunk(
        self,
        images: list[np.ndarray],
        instruction: str,
        state: np.ndarray,
        seed: int | None = None,
        prefix: np.ndarray | None = None,
        prefix_weight: np.ndarray | None = None,
    ) -> np.ndarray:
        """images: n_cams x (H, W, 3) uint8 RGB; state (state_dim,) -> (T, A) float32 robot units.

        prefix (k, A) robot units + prefix_weight (T,): inpaint the committed steps (vla/inpaint.py).
        """
        n_cams = len(self.config.camera_names)
        if len(images) != n_cams:
            raise ValueError(
                f"expected {n_cams} images ({list(self.config.camera_names)}), got {len(images)}"
            )
        state = np.asarray(state, dtype=np.float32)
        if state.shape != (self.config.state_dim,):
            raise ValueError(f"state must have shape ({self.config.state_dim},), got {state.shape}")
        torch = self._torch
        kwargs = {"seed": seed}
        if prefix is not None or prefix_weight is not None:
            kwargs.update(prefix=prefix, prefix_weight=prefix_weight)
        with torch.inference_mode():
            if self._dtype is None:
                out = self.policy.predict_chunk(images, instruction, state, **kwargs)
            else:
                device_type = "cuda" if self.cfg.device.startswith("cuda") else "cpu"
                with torch.autocast(device_type=device_type, dtype=self._dtype):
                    out = self.policy.predict_chunk(images, instruction, state, **kwargs)
        return np.asarray(out, dtype=np.float32)

    def warmup(self, runs: int = 2) -> float:
        """Blank inferences at the configured image size; returns the last duration (s)."""
        size = int(self.config.image_size)
        images = [np.zeros((size, size, 3), np.uint8) for _ in self.config.camera_names]
        state = np.zeros(self.config.state_dim, np.float32)
        elapsed = 0.0
        for i in range(runs):
            start = time.perf_counter()
            self.predict_chunk(images, "warm up", state, seed=i)
            elapsed = time.perf_counter() - start
        return elapsed


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
    engine "fault:..." (tests only, TINYVLA_ENABLE_FAULT_HOOKS=1): see tinyvla_ros.vla.engine_faults.
    """
    if str(engine).startswith("fault"):
        from tinyvla_ros.vla.engine_faults import load_fault_engine

        return load_fault_engine(checkpoint_dir, engine, device, precision, expected, num_threads, inpaint)
    cfg = EngineConfig(engine=engine, device=device, precision=precision, num_threads=num_threads)
    path = Path(checkpoint_dir).expanduser()
    if not str(checkpoint_dir) or not path.is_dir():
        raise FileNotFoundError(f"checkpoint directory not found: {str(checkpoint_dir)!r}")
    if cfg.engine in ONNX_ENGINES:
        from tinyvla_ros.vla.engine_onnx import OnnxEngine, OnnxEngineConfig

        cuda_provider = "tensorrt" if cfg.engine == "onnx_tensorrt" else "cuda"
        provider = "cpu" if cfg.device == "cpu" else cuda_provider
        ort_cfg = OnnxEngineConfig(
            provider, cfg.device, cfg.precision, num_threads=cfg.num_threads, inpaint=inpaint
        )
        return OnnxEngine(path, ort_cfg, expected=expected)
    from tinyvla_ros.vla.policy import TinyVLAPolicy

    policy = TinyVLAPolicy.from_pretrained(path, map_location="cpu", expected=expected)
    if cfg.engine == "torch_compile":
        from tinyvla_ros.vla.engine_torch_compile import TorchCompileEngine

        return TorchCompileEngine(policy, cfg)
    return TorchEngine(policy, cfg)
