"""ONNX Runtime sessions of exported graphs and the DDIM loops around them (no checkpoint logic).

Execution providers: "cpu" (CPUExecutionProvider), "cuda" (CUDAExecutionProvider) and "tensorrt"
(TensorrtExecutionProvider, CUDA as its fallback for unsupported nodes). A provider that the
installed onnxruntime lacks, or that fails to start (ORT would silently fall back to the CPU),
raises ``ExecutionProviderError`` naming it and the available ones.

DDIM loops (``OnnxGraphs(..., loop=)``), all running ``DDIMPlan``'s numbers (bit-identical to
diffusers' step):
    numpy  denoiser.onnx once per step, the update in NumPy (host memory; CPU default)
    fused  denoise_step.onnx once per step: denoiser + update in the graph; sample, condition,
           timesteps and coefficients are preallocated OrtValues on the device, bound with
           IOBinding and ping-ponged: no host-device copy inside the loop (CUDA/TensorRT default)
    graph  sampler_<n>.onnx: the whole loop in one run
Inpainting (vla/inpaint.py): the numpy loop blends the committed prefix in NumPy after every
update; the fused and graph loops run denoise_step_inpaint.onnx / sampler_inpaint_<n>.onnx, whose
inputs are the normalised prefix, the per-step weights and the known part's noise.
Glossary: B batch, T chunk length, Da action dim, C condition size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinyvla_ros.vla.engines.ddim import DDIMPlan
from tinyvla_ros.vla.inpaint import InpaintInputs, blend_numpy

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
LOOP_GRAPH = {"numpy": "denoiser", "fused": "denoise_step", "graph": "sampler"}
INPAINT_GRAPH = {"fused": "denoise_step_inpaint", "graph": "sampler_inpaint"}  # numpy: no extra graph
_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class ExecutionProviderError(RuntimeError):
    """A requested ONNX Runtime execution provider is missing or failed to start."""


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError(
            "the onnx engine needs ONNX Runtime: pip install onnxruntime==1.31.1 (CPU) or onnxruntime-gpu "
            "(CUDA/TensorRT; never both in one environment)"
        ) from exc
    return onnxruntime


def available_providers() -> list[str]:
    """Execution providers the installed onnxruntime offers."""
    return list(_ort().get_available_providers())


def device_id(device: str) -> int:
    if device in ("cpu", "cuda"):
        return 0
    head, _, index = device.partition(":")
    if head != "cuda" or not index.isdigit():
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:<i>', got {device!r}")
    return int(index)


def provider_chain(provider: str, device: str = "cpu", precision: str = "fp32", cache_dir: str = "") -> list:
    """ORT ``providers`` argument for ``provider``; raises ExecutionProviderError when one is missing."""
    if provider not in PROVIDERS:
        raise ValueError(f"provider must be one of {list(PROVIDERS)}, got {provider!r}")
    have = available_providers()
    dev = {"device_id": device_id(device)}
    chain: list = []
    if provider == "tensorrt":
        trt = {**dev, "trt_fp16_enable": precision == "fp16", "trt_engine_cache_enable": bool(cache_dir)}
        if cache_dir:
            trt["trt_engine_cache_path"] = cache_dir
        chain.append(("TensorrtExecutionProvider", trt))
    if provider in ("cuda", "tensorrt"):
        chain.append(("CUDAExecutionProvider", dev))
    chain.append(("CPUExecutionProvider", {}))
    for name, _ in chain:
        if name not in have:
            raise ExecutionProviderError(
                f"execution provider {name} (needed for provider={provider!r}) is not available in this "
                f"onnxruntime; available: {have}. Install onnxruntime-gpu with matching CUDA/cuDNN"
                f"{'/TensorRT' if provider == 'tensorrt' else ''} libraries, or use provider='cpu'"
            )
    return chain


def cpu_has_vnni(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this x86 CPU has VNNI (int8 dot products without 16-bit saturation); True elsewhere
    (ARM's int8 kernels do not saturate), and True when the flags cannot be read."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return True
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return True
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def make_session(path: str | Path, providers: list, num_threads: int = 0) -> Any:
    """InferenceSession of ``path``; raises ExecutionProviderError when ORT fell back to another provider."""
    ort = _ort()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = int(num_threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    wanted = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
    if session.get_providers()[0] != wanted:
        raise ExecutionProviderError(
            f"execution provider {wanted} failed to start for {Path(path).name} (ONNX Runtime fell back to "
            f"{session.get_providers()}): check the CUDA/cuDNN/TensorRT libraries it needs"
        )
    return session


def _ort_dtype(arg: Any) -> Any:
    if arg.type not in _ORT_DTYPES:
        raise ValueError(f"graph tensor {arg.name!r} has unsupported type {arg.type}")
    return _ORT_DTYPES[arg.type]


@dataclass
class _Buffers:
    """Preallocated OrtValues (and their host arrays on CPU) for one batch size."""

    noise: Any  # OrtValue (B, T, Da) f32: initial noise, uploaded once per chunk
    x: Any  # OrtValue (B, T, Da) f32 (numpy loop: wraps x_host)
    x_alt: Any  # OrtValue (B, T, Da) f32: ping-pong partner (fused loop)
    eps: Any  # OrtValue (B, T, Da) f32 (numpy loop: wraps eps_host)
    condition: Any  # OrtValue (B, C) in the graphs' dtype
    timesteps: list  # one OrtValue (B,) i64 per DDIM step
    x_host: np.ndarray
    eps_host: np.ndarray


class OnnxGraphs:
    """ORT sessions of exported graph files and the DDIM loops around them (no checkpoint logic).

    files: {"encoder": path, "denoiser" | "denoise_step" | "sampler": path} (the loop's graph,
    optionally "denoise_step_inpaint" | "sampler_inpaint" for inpainting in the fused/graph loop);
    loop: "numpy" | "fused" | "graph"; device: where OrtValues live ("cpu" or "cuda[:i]").
    """

    def __init__(
        self,
        files: dict[str, Path],
        plan: DDIMPlan,
        providers: list,
        loop: str,
        device: str = "cpu",
        num_threads: int = 0,
    ) -> None:
        if loop not in LOOP_GRAPH:
            raise ValueError(f"loop must be one of {list(LOOP_GRAPH)}, got {loop!r}")
        self.plan = plan
        self.loop = loop
        self._ort = _ort()
        self._device = ("cpu", 0) if device == "cpu" else ("cuda", device_id(device))
        if not any(files.get(g) for g in ("encoder", LOOP_GRAPH[loop], INPAINT_GRAPH.get(loop, ""))):
            raise ValueError(f"files must name the encoder and/or the {LOOP_GRAPH[loop]} graph, got {files}")
        self.encoder = (
            make_session(files["encoder"], providers, num_threads) if files.get("encoder") else None
        )
        graph = files.get(LOOP_GRAPH[loop])
        self.denoiser = make_session(graph, providers, num_threads) if graph else None
        self._providers, self._num_threads = providers, num_threads
        self.inpaint_session = None
        if files.get(INPAINT_GRAPH.get(loop, "")):
            self.add_inpaint_graph(files[INPAINT_GRAPH[loop]])
        session = self.encoder or self.denoiser or self.inpaint_session
        self.providers = session.get_providers()
        cond = next(a for a in (session.get_outputs() + session.get_inputs()) if a.name == "condition")
        self._cond_dtype = _ort_dtype(cond)
        self._cond_dim = int(cond.shape[1])
        self._coefficients = [self._value(row) for row in plan.coefficients]  # (4,) f32 per step
        self._buffers: dict[tuple[int, int, int], _Buffers] = {}

    @property
    def inpaint_graph(self) -> str | None:
        """Name of the extra graph this loop needs for inpainting (None: the numpy loop needs none)."""
        return INPAINT_GRAPH.get(self.loop)

    def add_inpaint_graph(self, path: str | Path) -> None:
        """Load the loop's inpainting graph (denoise_step_inpaint or sampler_inpaint)."""
        if self.inpaint_graph is None:
            raise ValueError(f"the {self.loop} loop inpaints in NumPy: it has no inpainting graph")
        self.inpaint_session = make_session(path, self._providers, self._num_threads)

    def _value(self, array: np.ndarray) -> Any:
        """A device OrtValue holding a copy of ``array`` (on CPU: sharing its memory)."""
        kind, index = self._device
        return self._ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), kind, index)

    def _empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        kind, index = self._device
        return self._ort.OrtValue.ortvalue_from_shape_and_type(list(shape), dtype, kind, index)

    def buffers(self, batch: int, chunk: int, action_dim: int) -> _Buffers:
        """Preallocated buffers for a (batch, chunk, action_dim) sample (created on first use)."""
        key = (batch, chunk, action_dim)
        if key not in self._buffers:
            x_host = np.zeros(key, np.float32)
            eps_host = np.zeros(key, np.float32)
            on_cpu = self._device[0] == "cpu"
            self._buffers[key] = _Buffers(
                noise=self._empty(key, np.float32),
                x=self._value(x_host) if on_cpu else self._empty(key, np.float32),
                x_alt=self._empty(key, np.float32),
                eps=self._value(eps_host) if on_cpu else self._empty(key, np.float32),
                condition=self._empty((batch, self._cond_dim), self._cond_dtype),
                timesteps=[self._value(np.full(batch, t, np.int64)) for t in self.plan.timesteps],
                x_host=x_host,
                eps_host=eps_host,
            )
        return self._buffers[key]

    def encode_value(self, feeds: dict[str, np.ndarray], out: Any) -> Any:
        """Run the encoder into the OrtValue ``out`` (B, C); feeds: the encoder's four inputs."""
        io = self.encoder.io_binding()
        for name, array in feeds.items():
            io.bind_cpu_input(name, array)
        io.bind_ortvalue_output("condition", out)
        self.encoder.run_with_iobinding(io)
        return out

    def encode(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Encoder inputs (B, ...) -> condition (B, C) as a host array (graph dtype)."""
        batch = int(feeds["state_norm"].shape[0])
        return self.encode_value(feeds, self._empty((batch, self._cond_dim), self._cond_dtype)).numpy()

    def sample(self, condition: Any, noise: np.ndarray, inpaint: InpaintInputs | None = None) -> np.ndarray:
        """condition (B, C) OrtValue or array, noise (B, T, Da) -> normalised actions (B, T, Da) f32.

        inpaint: committed prefix, weights and per-step noise (vla/inpaint.py); None: free sampling.
        """
        noise = np.ascontiguousarray(noise, dtype=np.float32)
        buf = self.buffers(*noise.shape)
        if isinstance(condition, np.ndarray):
            condition = self._value(condition.astype(self._cond_dtype, copy=False))
        if inpaint is not None:
            return self._sample_inpaint(condition, noise, buf, inpaint)
        if self.loop == "numpy":
            return self._numpy_loop(condition, noise, buf).copy()
        buf.noise.update_inplace(noise)  # the one host -> device copy of the loop
        if self.loop == "fused":
            return self._fused_loop(condition, buf).numpy()
        io = self.denoiser.io_binding()
        io.bind_ortvalue_input("condition", condition)
        io.bind_ortvalue_input("noise", buf.noise)
        io.bind_ortvalue_output("actions", buf.x)
        self.denoiser.run_with_iobinding(io)
        return buf.x.numpy()

    def _sample_inpaint(
        self, condition: Any, noise: np.ndarray, buf: _Buffers, inpaint: InpaintInputs
    ) -> np.ndarray:
        """The DDIM loop with the committed prefix blended in after every update (vla/inpaint.py)."""
        if inpaint.prefix.shape != noise.shape or inpaint.noise.shape[0] != len(self.plan):
            raise ValueError(
                f"inpaint inputs are for {inpaint.noise.shape[0]} steps and shape {inpaint.prefix.shape}; the "
                f"plan has {len(self.plan)} steps, the noise shape {noise.shape}"
            )
        if self.loop == "numpy":
            return self._numpy_loop(condition, noise, buf, inpaint).copy()
        if self.inpaint_session is None:
            raise RuntimeError(f"the {self.loop} loop needs the {self.inpaint_graph} graph for inpainting")
        prefix, weight = self._value(inpaint.prefix), self._value(inpaint.weight)
        io = self.inpaint_session.io_binding()
        io.bind_ortvalue_input("condition", condition)
        io.bind_ortvalue_input("prefix", prefix)
        io.bind_ortvalue_input("prefix_weight", weight)
        if self.loop == "graph":
            buf.noise.update_inplace(noise)
            io.bind_ortvalue_input("noise", buf.noise)
            io.bind_ortvalue_input("prefix_noises", self._value(inpaint.noise))
            io.bind_ortvalue_output("actions", buf.x)
            self.inpaint_session.run_with_iobinding(io)
            return buf.x.numpy()
        sa, s1a = self.plan.coefficients[0, :2]
        start = blend_numpy(noise.copy(), inpaint.prefix, inpaint.weight, noise, sa, s1a)  # x_T
        buf.noise.update_inplace(start)
        noises = [self._value(z) for z in inpaint.noise]  # one (B, T, Da) per step, uploaded up front
        src, dst = buf.noise, buf.x
        for i in range(len(self.plan)):
            io.bind_ortvalue_input("sample", src)
            io.bind_ortvalue_input("timestep", buf.timesteps[i])
            io.bind_ortvalue_input("coefficients", self._coefficients[i])
            io.bind_ortvalue_input("prefix_noise", noises[i])
            io.bind_ortvalue_output("prev_sample", dst)
            self.inpaint_session.run_with_iobinding(io)
            src, dst = dst, (buf.x_alt if dst is buf.x else buf.x)
        return src.numpy()

    def _numpy_loop(
        self, condition: Any, noise: np.ndarray, buf: _Buffers, inpaint: InpaintInputs | None = None
    ) -> np.ndarray:
        io = self.denoiser.io_binding()
        io.bind_ortvalue_input("condition", condition)
        on_cpu = self._device[0] == "cpu"
        if on_cpu:  # x and eps wrap the host arrays: ORT reads/writes them in place
            io.bind_ortvalue_input("noisy", buf.x)
            io.bind_ortvalue_output("eps", buf.eps)
        np.copyto(buf.x_host, noise)
        coef = self.plan.coefficients  # (n, 4)
        if inpaint is not None:
            blend_numpy(buf.x_host, inpaint.prefix, inpaint.weight, noise, coef[0, 0], coef[0, 1])
        for i in range(len(self.plan)):
            io.bind_ortvalue_input("timestep", buf.timesteps[i])
            if not on_cpu:  # the copies per step this loop mode costs on a GPU
                buf.x.update_inplace(buf.x_host)
                io.bind_ortvalue_input("noisy", buf.x)
                io.bind_ortvalue_output("eps", buf.eps)
            self.denoiser.run_with_iobinding(io)
            eps = buf.eps_host if on_cpu else buf.eps.numpy()
            self.plan.step_numpy(i, buf.x_host, eps, out=buf.x_host)
            if inpaint is not None:
                blend_numpy(
                    buf.x_host, inpaint.prefix, inpaint.weight, inpaint.noise[i], coef[i, 2], coef[i, 3]
                )
        return buf.x_host

    def _fused_loop(self, condition: Any, buf: _Buffers) -> Any:
        io = self.denoiser.io_binding()
        io.bind_ortvalue_input("condition", condition)
        src, dst = buf.noise, buf.x
        for i in range(len(self.plan)):
            io.bind_ortvalue_input("sample", src)
            io.bind_ortvalue_input("timestep", buf.timesteps[i])
            io.bind_ortvalue_input("coefficients", self._coefficients[i])
            io.bind_ortvalue_output("prev_sample", dst)
            self.denoiser.run_with_iobinding(io)
            src, dst = dst, (buf.x_alt if dst is buf.x else buf.x)
        return src
