"""The engine interface: ``Engine`` (what the policy node calls), ``EngineConfig`` and the shared warm-up.

An ``Engine`` (returned by ``tinyvla_ros.vla.engines.load_engine``):
    .name            "torch", "torch_compile", "onnx", ... (see ENGINES)
    .config          the checkpoint's TinyVLAConfig (camera_names, state_dim, action_dim, chunk_len...)
    .predict_chunk(images, instruction, state, seed=None, prefix=None, prefix_weight=None)
        -> (T, A) float32 actions in robot units
        images: list of (H, W, 3) uint8 RGB, one per camera in config.camera_names order
        state:  (state_dim,) robot units
        prefix (k, A) robot units, prefix_weight (T,) in [0, 1]: inpaint the committed steps
        (tinyvla_ros.vla.inpaint); both None (default): free sampling, as before
    .warmup(runs)    run inference on blank inputs so the first real call is not the slow one
                     (``warm_up`` below, shared by the engines)

The policy node calls it from one worker thread; an engine is not required to be thread-safe.
Every engine turns observations into model inputs, and normalised actions back into robot
units, with the same NumPy step (chunk_io.ChunkIO).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

# "torch": eager PyTorch (eager.py); "torch_compile": torch.compile of the encoder and denoiser
# (compiled.py); "onnx" (alias "onnxruntime"): ONNX Runtime, CPU provider on device cpu, CUDA
# provider on cuda[:i]; "onnx_tensorrt": ONNX Runtime with the TensorRT provider (onnx.py).
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


def warm_up(engine: Engine, runs: int = 2, state: np.ndarray | None = None) -> float:
    """``runs`` blank inferences of ``engine`` at its configured image size (black images, the
    instruction "warm up", ``state`` or zeros, seeds 0, 1, ...); returns the last duration (s)."""
    config = engine.config
    size = int(config.image_size)
    images = [np.zeros((size, size, 3), np.uint8) for _ in config.camera_names]
    state = np.zeros(config.state_dim, np.float32) if state is None else np.asarray(state, np.float32)
    elapsed = 0.0
    for i in range(runs):
        start = time.perf_counter()
        engine.predict_chunk(images, "warm up", state, seed=i)
        elapsed = time.perf_counter() - start
    return elapsed
