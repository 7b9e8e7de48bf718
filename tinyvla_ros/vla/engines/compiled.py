"""``torch_compile`` engine: the torch engine with the encoder and the denoiser under ``torch.compile``.

Same interface and numbers as ``eager.TorchEngine`` (fp32 on CPU; fp16/bf16 autocast on CUDA).
``TinyVLAPolicy.encode_observation`` (vision tower + projector + GPT-NeoX + condition) and
``TinyVLAPolicy.denoise`` (the UNet, called once per DDIM step) are compiled on this engine's
policy instance; compilation happens on the first call, so ``warmup`` pays it (the policy node
warms up in ``configure``). Inpainting (``predict_chunk(..., prefix=, prefix_weight=)``) runs the
same compiled denoiser; the blend between steps stays eager (vla/inpaint.py). Shapes are static per prompt length: a new instruction length or
batch size recompiles once.

Measured on the shared 2-core CPU machine: compiling the nano denoiser with inductor took ~300 s
and ran no faster than eager; the engine is meant for CUDA, where it fuses the small UNet ops.
"""

from __future__ import annotations

from typing import Any

from tinyvla_ros.vla.engines.base import EngineConfig
from tinyvla_ros.vla.engines.eager import TorchEngine

COMPILE_BACKENDS = ("inductor", "eager", "aot_eager", "cudagraphs")
COMPILE_MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class TorchCompileEngine(TorchEngine):
    """TorchEngine whose policy runs encode_observation and denoise through torch.compile.

    backend: a torch.compile backend ("inductor" generates kernels; "eager" only captures graphs,
    for checks); mode: torch.compile mode (None = default).
    """

    name = "torch_compile"

    def __init__(
        self, policy: Any, cfg: EngineConfig, backend: str = "inductor", mode: str | None = None
    ) -> None:
        if backend not in COMPILE_BACKENDS:
            raise ValueError(f"backend must be one of {list(COMPILE_BACKENDS)}, got {backend!r}")
        if mode not in COMPILE_MODES:
            raise ValueError(f"mode must be one of {list(COMPILE_MODES)}, got {mode!r}")
        super().__init__(policy, cfg)
        torch = self._torch
        self.backend = backend
        # Instance attributes shadow the class methods: predict_chunk calls the compiled versions.
        self.policy.encode_observation = torch.compile(
            self.policy.encode_observation, backend=backend, mode=mode, dynamic=False
        )
        self.policy.denoise = torch.compile(self.policy.denoise, backend=backend, mode=mode, dynamic=False)
