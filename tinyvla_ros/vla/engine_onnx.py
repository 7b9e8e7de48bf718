"""ONNX Runtime engine: runs the graphs of ``tinyvla-export`` with the DDIM loop of diffusers.

``OnnxEngine(checkpoint_dir, OnnxEngineConfig(...))`` has the interface of ``engines.Engine``
(``predict_chunk``, ``warmup``, ``name``, ``config``) plus ``predict_chunk_batch``, ``encode`` and
``sample``. Glossary: B batch, N cameras, S image side, L prompt tokens, Ds/Da state/action dims,
T chunk length, C condition size.

Execution providers: "cpu" (CPUExecutionProvider), "cuda" (CUDAExecutionProvider) and "tensorrt"
(TensorrtExecutionProvider, CUDA as its fallback for unsupported nodes). A provider that the
installed onnxruntime lacks, or that fails to start (ORT would silently fall back to the CPU),
raises ``ExecutionProviderError`` naming it and the available ones.

DDIM loops (``loop``), all running ``DDIMPlan``'s numbers (bit-identical to diffusers' step):
    numpy  denoiser.onnx once per step, the update in NumPy (host memory; CPU default)
    fused  denoise_step.onnx once per step: denoiser + update in the graph; sample, condition,
           timesteps and coefficients are preallocated OrtValues on the device, bound with
           IOBinding and ping-ponged: no host-device copy inside the loop (CUDA/TensorRT default)
    graph  sampler_<n>.onnx: the whole loop in one run
Inpainting (``predict_chunk(..., prefix=, prefix_weight=)``, vla/inpaint.py): the numpy loop blends
the committed prefix in NumPy after every update; the fused and graph loops run
denoise_step_inpaint.onnx / sampler_inpaint_<n>.onnx, whose inputs are the normalised prefix, the
per-step weights and the known part's noise (loaded at start with ``OnnxEngineConfig.inpaint``,
else on the first inpainting call, exported first when missing).
Work avoided per call: the prompt's input_ids are cached per instruction, pixel/noise/sample
buffers are preallocated per batch size, every camera goes through the vision tower in one batch.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinyvla_ros.vla.engine_ddim import DDIMPlan
from tinyvla_ros.vla.inpaint import InpaintInputs, blend_numpy, check_prefix, prepare_inpaint

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
LOOPS = ("auto", "numpy", "fused", "graph")
ONNX_PRECISIONS = ("fp32", "fp16", "int8")
_LOOP_GRAPH = {"numpy": "denoiser", "fused": "denoise_step", "graph": "sampler"}
_INPAINT_GRAPH = {"fused": "denoise_step_inpaint", "graph": "sampler_inpaint"}  # numpy: no extra graph
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


def _device_id(device: str) -> int:
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
    dev = {"device_id": _device_id(device)}
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
        if loop not in _LOOP_GRAPH:
            raise ValueError(f"loop must be one of {list(_LOOP_GRAPH)}, got {loop!r}")
        self.plan = plan
        self.loop = loop
        self._ort = _ort()
        self._device = ("cpu", 0) if device == "cpu" else ("cuda", _device_id(device))
        if not any(files.get(g) for g in ("encoder", _LOOP_GRAPH[loop], _INPAINT_GRAPH.get(loop, ""))):
            raise ValueError(f"files must name the encoder and/or the {_LOOP_GRAPH[loop]} graph, got {files}")
        self.encoder = (
            make_session(files["encoder"], providers, num_threads) if files.get("encoder") else None
        )
        graph = files.get(_LOOP_GRAPH[loop])
        self.denoiser = make_session(graph, providers, num_threads) if graph else None
        self._providers, self._num_threads = providers, num_threads
        self.inpaint_session = None
        if files.get(_INPAINT_GRAPH.get(loop, "")):
            self.add_inpaint_graph(files[_INPAINT_GRAPH[loop]])
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
        return _INPAINT_GRAPH.get(self.loop)

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


@dataclass(frozen=True)
class OnnxEngineConfig:
    """How to run a checkpoint with ONNX Runtime.

    provider: "cpu" | "cuda" | "tensorrt"; device: "cpu" | "cuda" | "cuda:<i>" (cpu provider needs
    "cpu", the others a CUDA device); precision: "fp32" | "fp16" | "int8" (fp16: CUDA runs the fp16
    graphs, TensorRT builds fp16 engines from the fp32 graphs; int8: CPU provider, the encoder with
    dynamically quantised int8 MatMul weights, the DDIM loop in fp32: chunks differ from
    torch's, see the README; bf16 is not offered by ORT's providers);
    num_threads: ORT intra-op threads, 0 = ORT's default (one per physical core);
    loop: "auto" (numpy on CPU, fused on GPUs) | "numpy" | "fused" | "graph";
    num_inference_steps: DDIM steps (None = the checkpoint's); auto_export: export missing or stale
    graphs into the checkpoint directory (with the parity check) instead of raising;
    inpaint: load the loop's inpainting graph at start (fused/graph loops; else on first use).
    """

    provider: str = "cpu"
    device: str = "cpu"
    precision: str = "fp32"
    num_threads: int = 0
    loop: str = "auto"
    num_inference_steps: int | None = None
    auto_export: bool = True
    inpaint: bool = False

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise ValueError(f"provider must be one of {list(PROVIDERS)}, got {self.provider!r}")
        _device_id(self.device)
        if (self.provider == "cpu") != (self.device == "cpu"):
            raise ValueError(
                f"provider {self.provider!r} cannot run on device {self.device!r}: cpu needs device 'cpu', "
                "cuda/tensorrt need device 'cuda[:i]'"
            )
        if self.precision not in ONNX_PRECISIONS:
            raise ValueError(
                f"precision must be one of {list(ONNX_PRECISIONS)} for the onnx engine, got {self.precision!r}"
            )
        if self.precision == "fp16" and self.provider == "cpu":
            raise ValueError("precision 'fp16' needs provider 'cuda' or 'tensorrt', got provider 'cpu'")
        if self.precision == "int8" and self.provider != "cpu":
            raise ValueError(
                f"precision 'int8' runs on provider 'cpu' only (ONNX Runtime's dynamic int8 MatMul kernels "
                f"are CPU kernels), got provider {self.provider!r}: use fp16 on a GPU"
            )
        if (
            isinstance(self.num_threads, bool)
            or not isinstance(self.num_threads, int)
            or self.num_threads < 0
        ):
            raise ValueError(f"num_threads must be an integer >= 0, got {self.num_threads!r}")
        if self.loop not in LOOPS:
            raise ValueError(f"loop must be one of {list(LOOPS)}, got {self.loop!r}")
        steps = self.num_inference_steps
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise ValueError(f"num_inference_steps must be None or an integer >= 1, got {steps!r}")

    @property
    def resolved_loop(self) -> str:
        """The loop mode actually used ("auto" resolved)."""
        if self.loop != "auto":
            return self.loop
        return "numpy" if self.provider == "cpu" else "fused"

    @property
    def graph_precision(self) -> str:
        """Precision of the graph files: TensorRT converts fp32 graphs itself; int8 names the int8
        encoder and the fp32 loop graphs (export.file_precision)."""
        if self.precision == "int8":
            return "int8"
        return "fp16" if self.precision == "fp16" and self.provider == "cuda" else "fp32"


class OnnxEngine:
    """A checkpoint run by ONNX Runtime (see the module docstring)."""

    name = "onnx"

    def __init__(
        self,
        checkpoint_dir: str | Path,
        cfg: OnnxEngineConfig | None = None,
        expected: dict | None = None,
        log: Any = None,
    ) -> None:
        from tinyvla_ros.vla.checkpoint import STATS_FILE, check_expected, read_checkpoint_config
        from tinyvla_ros.vla.normalize import Normalizer

        self.cfg = cfg or OnnxEngineConfig()
        self.directory = Path(checkpoint_dir).expanduser()
        if not str(checkpoint_dir) or not self.directory.is_dir():
            raise FileNotFoundError(f"checkpoint directory not found: {str(checkpoint_dir)!r}")
        config, _ = read_checkpoint_config(self.directory)
        check_expected(config, expected, where=str(self.directory))
        steps = self.cfg.num_inference_steps or config.num_inference_steps
        self.config = config.replace(num_inference_steps=steps)
        self.normalizer = Normalizer.load(self.directory / STATS_FILE)
        self.prompt = self._prompt_tokenizer()
        self.plan = DDIMPlan.from_config(self.config)
        self._log = log or (lambda _msg: None)
        providers = provider_chain(
            self.cfg.provider, self.cfg.device, self.cfg.precision, str(self.directory / "tensorrt_cache")
        )
        if self.cfg.precision == "int8" and not cpu_has_vnni():
            self._log(
                "WARNING: precision int8 on a CPU without VNNI (AVX512-VNNI / AVX-VNNI): ONNX Runtime's "
                "u8 x s8 kernels may saturate here; use precision fp32 unless the chunks were checked"
            )
        files = self._graph_files()
        self.graphs = OnnxGraphs(
            files, self.plan, providers, self.cfg.resolved_loop, self.cfg.device, self.cfg.num_threads
        )
        self._text: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._pixels: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def _prompt_tokenizer(self) -> Any:
        from tinyvla_ros.vla.tokenizer import PromptTokenizer, load_tokenizer

        c = self.config
        return PromptTokenizer(load_tokenizer(self.directory), c.prompt_template, c.max_text_tokens)

    def _graph_files(self) -> dict[str, Path]:
        """Paths of the encoder and the loop's graph; exports them first when missing or stale."""
        loop = self.cfg.resolved_loop
        steps = len(self.plan) if loop == "graph" else None
        graphs = ["encoder", _LOOP_GRAPH[loop]]
        if self.cfg.inpaint and loop in _INPAINT_GRAPH:
            graphs.append(_INPAINT_GRAPH[loop])
        return self._ensure_graphs(graphs, steps)

    def _ensure_graphs(self, graphs: list[str], steps: int | None) -> dict[str, Path]:
        """Paths of ``graphs`` (exported first when missing or stale and auto_export is on)."""
        from tinyvla_ros.vla import export

        precision = self.cfg.graph_precision
        wanted = {g: export.graph_file(g, precision, steps if g in export.UNROLLED else None) for g in graphs}
        problem = export.manifest_problem(self.directory, list(wanted.values()))
        if problem is not None:
            if not self.cfg.auto_export:
                raise FileNotFoundError(
                    f"ONNX graphs unusable: {problem}. Run: tinyvla-export {self.directory} --graphs "
                    f"{' '.join(wanted)} --precision {precision}" + (f" --steps {steps}" if steps else "")
                )
            if not os.access(self.directory, os.W_OK):
                raise PermissionError(
                    f"ONNX graphs unusable ({problem}) and {self.directory} is not writable: run tinyvla-export "
                    f"{self.directory} --graphs {' '.join(wanted)} as a user who can write there"
                )
            self._log(f"exporting ONNX graphs ({problem})")
            cfg = export.ExportConfig(precision=precision, graphs=tuple(wanted), sampler_steps=steps)
            export.export_checkpoint(self.directory, cfg, log=self._log)
        return {g: self.directory / name for g, name in wanted.items()}

    # ------------------------------------------------------------------ inputs
    def _text_inputs(self, instructions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """B instructions -> right-padded input_ids (B, L) i64, attention_mask (B, L) i64 (cached)."""
        key = "\x00".join(instructions)
        cached = self._text.get(key)
        if cached is None:
            ids, mask = self.prompt.batch(list(instructions))
            cached = (ids.numpy(), mask.numpy())
            self._text[key] = cached
            while len(self._text) > 64:
                self._text.popitem(last=False)
        return cached

    def _pixel_values(self, images: Sequence[Sequence[np.ndarray]]) -> np.ndarray:
        """B lists of N (H, W, 3) uint8 -> preallocated (B, N, 3, S, S) f32 in [0, 1]."""
        from tinyvla_ros.vla.preprocess import prepare_image

        c = self.config
        batch = len(images)
        out = self._pixels.get(batch)
        if out is None:
            out = self._pixels[batch] = np.empty(
                (batch, c.num_cameras, 3, c.image_size, c.image_size), np.float32
            )
        scale = np.float32(1.0 / 255.0)
        for b, obs in enumerate(images):
            if isinstance(obs, np.ndarray) and obs.ndim == 3:
                raise ValueError(
                    "images must be a sequence with one (H, W, 3) array per camera, got a single image"
                )
            if len(obs) != c.num_cameras:
                raise ValueError(
                    f"expected {c.num_cameras} images (cameras {list(c.camera_names)}), got {len(obs)}"
                )
            for n, (image, cam) in enumerate(zip(obs, c.camera_names, strict=True)):
                name = f"image of camera {cam!r}"
                square = prepare_image(image, c.image_size, name=name, crop=c.center_crop)  # (S, S, 3) u8
                np.multiply(square.transpose(2, 0, 1), scale, out=out[b, n])
        return out

    def _states(self, states: Any, batch: int) -> np.ndarray:
        arr = np.asarray(states, dtype=np.float32)
        if arr.shape != (batch, self.config.state_dim):
            raise ValueError(
                f"state must have shape ({self.config.state_dim},) per observation, got {arr.shape[1:] or arr.shape}"
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"state contains NaN or inf: {arr.tolist()}")
        return np.ascontiguousarray(self.normalizer.normalize_state(arr), dtype=np.float32)

    def _noise(self, batch: int, seed: int | None, initial_noise: Any) -> np.ndarray:
        """(B, T, Da) f32: ``initial_noise`` or torch's CPU generator (same numbers as the torch engine)."""
        shape = (batch, self.config.chunk_len, self.config.action_dim)
        if initial_noise is not None:
            noise = np.asarray(initial_noise, dtype=np.float32)
            if noise.shape != shape:
                raise ValueError(f"initial_noise must have shape {shape}, got {noise.shape}")
            if not np.all(np.isfinite(noise)):
                raise ValueError("initial_noise contains NaN or inf")
            return noise
        import torch

        gen = torch.Generator(device="cpu")
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(int(seed))
        return torch.randn(shape, generator=gen).numpy()

    # ------------------------------------------------------------------ inference
    def encode(
        self,
        pixel_values: np.ndarray,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        state_norm: np.ndarray,
    ) -> np.ndarray:
        """(B, N, 3, S, S) f32, (B, L) i64, (B, L) i64, (B, Ds) f32 -> condition (B, C) (graph dtype)."""
        feeds = {
            "pixel_values": pixel_values,
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "state_norm": state_norm,
        }
        return self.graphs.encode({k: np.ascontiguousarray(v) for k, v in feeds.items()})

    def sample(
        self, condition: np.ndarray, noise: np.ndarray, inpaint: InpaintInputs | None = None
    ) -> np.ndarray:
        """condition (B, C), noise (B, T, Da) -> normalised actions (B, T, Da) f32 (the DDIM loop)."""
        if inpaint is not None:
            self._require_inpaint_graph()
        return self.graphs.sample(condition, noise, inpaint)

    def _require_inpaint_graph(self) -> None:
        """Load (export first if needed) the loop's inpainting graph on first use."""
        graph = self.graphs.inpaint_graph
        if graph is None or self.graphs.inpaint_session is not None:
            return
        self._log(
            f"loading the {graph} graph for inpainting (set OnnxEngineConfig.inpaint to do it at start)"
        )
        steps = len(self.plan) if self.cfg.resolved_loop == "graph" else None
        self.graphs.add_inpaint_graph(self._ensure_graphs([graph], steps)[graph])

    def predict_chunk_batch(
        self,
        images: Sequence[Sequence[np.ndarray]],
        instructions: Sequence[str],
        states: Any,
        seed: int | None = None,
        initial_noise: Any = None,
        prefix: Any = None,
        prefix_weight: Any = None,
    ) -> np.ndarray:
        """B observations -> (B, T, Da) f32 actions in robot units (same seed -> same noise as torch).

        prefix (k, Da) or (B, k, Da) robot units + prefix_weight (T,) or (B, T): inpaint the
        committed steps (vla/inpaint.py, same numbers as the torch engine for the same seed).
        """
        batch = len(images)
        if batch == 0 or isinstance(instructions, str) or len(instructions) != batch:
            raise ValueError(
                f"need one instruction per observation: {batch} image sets, {len(instructions)} instructions"
            )
        t, d = self.config.chunk_len, self.config.action_dim
        checked = check_prefix(prefix, prefix_weight, batch, t, d)
        with self._lock:
            state_norm = self._states(states, batch)
            noise = self._noise(batch, seed, initial_noise)
            inpaint = None
            if checked is not None:
                self._require_inpaint_graph()
                inpaint = prepare_inpaint(*checked, self.normalizer, t, len(self.plan), seed)
            ids, mask = self._text_inputs(instructions)
            feeds = {
                "pixel_values": self._pixel_values(images),
                "input_ids": ids,
                "attention_mask": mask,
                "state_norm": state_norm,
            }
            condition = self.graphs.encode_value(feeds, self.graphs.buffers(batch, t, d).condition)
            actions = self.graphs.sample(condition, noise, inpaint)  # (B, T, Da) in [-1, 1]
        return self.normalizer.unnormalize_action(actions).astype(np.float32)

    def predict_chunk(
        self,
        images: Sequence[np.ndarray],
        instruction: str,
        state: Any,
        seed: int | None = None,
        initial_noise: Any = None,
        prefix: Any = None,
        prefix_weight: Any = None,
    ) -> np.ndarray:
        """N images (H, W, 3) uint8 RGB, instruction, state (Ds,) -> (T, Da) f32 robot units.

        prefix (k, Da) robot units + prefix_weight (T,): inpaint the committed steps.
        """
        if not isinstance(instruction, str):
            raise TypeError(f"instruction must be a str, got {type(instruction).__name__}")
        state = np.asarray(state, dtype=np.float32)
        if state.shape != (self.config.state_dim,):
            raise ValueError(f"state must have shape ({self.config.state_dim},), got {state.shape}")
        noise = None if initial_noise is None else np.asarray(initial_noise, dtype=np.float32)[None]
        if (prefix is not None and np.ndim(prefix) != 2) or (
            prefix_weight is not None and np.ndim(prefix_weight) != 1
        ):
            raise ValueError(
                f"prefix must be (k, Da) and prefix_weight (T,) for one observation, got shapes "
                f"{np.shape(prefix)} and {np.shape(prefix_weight)}"
            )
        return self.predict_chunk_batch(
            [images], [instruction], state[None], seed, noise, prefix, prefix_weight
        )[0]

    def warmup(self, runs: int = 2) -> float:
        """Blank inferences at the configured image size; returns the last duration (s)."""
        size = int(self.config.image_size)
        images = [np.zeros((size, size, 3), np.uint8) for _ in self.config.camera_names]
        state = np.asarray(self.normalizer.state_mean, dtype=np.float32)
        elapsed = 0.0
        for i in range(runs):
            start = time.perf_counter()
            self.predict_chunk(images, "warm up", state, seed=i)
            elapsed = time.perf_counter() - start
        return elapsed


# ---------------------------------------------------------------------------------- export parity
def _graph_of(name: str) -> str:
    stem = name.split(".")[0]
    for graph in ("sampler_inpaint", "sampler"):  # unrolled graphs: <graph>_<n>
        if stem.startswith(graph + "_") and stem[len(graph) + 1 :].isdigit():
            return graph
    return stem


def parity_report(directory: Path, policy: Any, names: list[str], plan: DDIMPlan, tolerance: float) -> dict:
    """Max abs differences between torch ``policy`` and the ORT graphs ``names`` in ``directory``.

    Inputs: a seeded batch of 2 observations with prompts of different lengths (padding), and a
    batch of 1. Figures: "condition" (encoder), "eps" (denoiser), "chunk_<loop>" (whole DDIM loop,
    for every loop whose graph is among ``names``), "chunk_<loop>_inpaint" (fused/graph loops
    with a committed prefix, when their inpainting graphs are among ``names``). fp16
    graphs need the CUDA provider: without it they are reported unchecked. An int8 encoder is
    checked by the relative L2 error of its condition ("condition_rel", bound
    export.INT8_CONDITION_TOLERANCE); the loop graphs then run on torch's condition (fp32 check as
    usual) and "chunk_int8" reports, unbounded, how far its condition moves the chunk.
    """
    import torch

    from tinyvla_ros.vla.export import INT8_CONDITION_TOLERANCE, example_inputs

    fp16 = any(".fp16." in n for n in names)
    if fp16 and "CUDAExecutionProvider" not in available_providers():
        return {
            "ok": True,
            "checked": False,
            "max_abs_diff": {},
            "reason": "fp16 graphs need the CUDA provider",
        }
    providers = provider_chain("cuda" if fp16 else "cpu", "cuda" if fp16 else "cpu")
    device = "cuda" if fp16 else "cpu"
    tol = max(tolerance, 2e-2) if fp16 else tolerance
    int8 = any(".int8." in n for n in names)
    condition_rel = 0.0
    files = {_graph_of(n): directory / n for n in names}
    encoder = (
        OnnxGraphs({"encoder": files["encoder"]}, plan, providers, "numpy", device)
        if "encoder" in files
        else None
    )
    loops = {
        loop: OnnxGraphs({g: files[g]}, plan, providers, loop, device)
        for loop, g in _LOOP_GRAPH.items()
        if g in files
    }
    inpainters = {
        loop: OnnxGraphs({g: files[g]}, plan, providers, loop, device)
        for loop, g in _INPAINT_GRAPH.items()
        if g in files
    }
    denoiser = make_session(files["denoiser"], providers) if "denoiser" in files else None
    diffs: dict[str, float] = {}
    for batch in (2, 1):
        ex = {k: v[:batch] for k, v in example_inputs(policy, batch=2, seed=1).items()}
        ex["input_ids"], ex["attention_mask"] = _trim_padding(ex["input_ids"], ex["attention_mask"])
        feeds = {k: ex[k].numpy() for k in ("pixel_values", "input_ids", "attention_mask", "state_norm")}
        with torch.inference_mode():
            cond_t = policy.encode_observation(*(ex[k] for k in feeds))
            eps_t = policy.denoise(ex["noisy"], ex["timestep"], cond_t).float()
            chunk_t = policy_sample(policy, plan, cond_t, ex["noisy"]).numpy()
            inpaint = _parity_inpaint(ex, len(plan))
            chunk_i = (
                policy_sample(policy, plan, cond_t, ex["noisy"], inpaint).numpy() if inpainters else None
            )
        condition = cond_t.numpy()
        if encoder is not None:
            encoded = encoder.encode(feeds)
            reference = cond_t.float().numpy()
            _update(diffs, "condition", encoded, reference)
            if int8:
                rel = float(np.linalg.norm(encoded - reference) / max(np.linalg.norm(reference), 1e-12))
                condition_rel = max(condition_rel, rel)
                first_loop = next(iter(loops.values()), None)
                if first_loop is not None:
                    _update(diffs, "chunk_int8", first_loop.sample(encoded, ex["noisy"].numpy()), chunk_t)
            else:
                condition = encoded
        for loop, run in loops.items():
            _update(diffs, f"chunk_{loop}", run.sample(condition, ex["noisy"].numpy()), chunk_t)
        for loop, run in inpainters.items():
            _update(
                diffs, f"chunk_{loop}_inpaint", run.sample(condition, ex["noisy"].numpy(), inpaint), chunk_i
            )
        if denoiser is not None:
            feeds = {
                "noisy": ex["noisy"].numpy(),
                "timestep": ex["timestep"].numpy(),
                "condition": cond_t.numpy(),
            }
            _update(diffs, "eps", denoiser.run(None, feeds)[0], eps_t.numpy())
    unbounded = ("condition", "chunk_int8") if int8 else ()
    ok = all(v <= tol for k, v in diffs.items() if k not in unbounded)
    report = {"ok": ok, "checked": True, "tolerance": tol, "provider": providers[0][0], "max_abs_diff": diffs}
    if int8:
        report.update(
            ok=ok and condition_rel <= INT8_CONDITION_TOLERANCE,
            condition_rel=condition_rel,
            condition_rel_tolerance=INT8_CONDITION_TOLERANCE,
        )
    return report


def _parity_inpaint(ex: dict, steps: int) -> InpaintInputs:
    """Inpainting inputs of a parity check: the example prefix and weights, seeded per-step noise."""
    from tinyvla_ros.vla.inpaint import prefix_noise

    prefix = np.ascontiguousarray(ex["prefix"].numpy(), dtype=np.float32)  # (B, T, Da)
    weight = np.ascontiguousarray(ex["prefix_weight"].numpy(), dtype=np.float32)  # (B, T)
    return InpaintInputs(prefix, weight, prefix_noise(prefix.shape, steps, seed=3))


def _trim_padding(ids: Any, mask: Any) -> tuple[Any, Any]:
    """Drop trailing columns that are padding in every row (as tokenising the batch alone would)."""
    length = int(mask.sum(dim=1).max())
    return ids[:, :length], mask[:, :length]


def _update(diffs: dict[str, float], key: str, a: np.ndarray, b: np.ndarray) -> None:
    diffs[key] = max(diffs.get(key, 0.0), float(np.max(np.abs(np.asarray(a, np.float32) - b))))


def policy_sample(
    policy: Any, plan: DDIMPlan, condition: Any, noise: Any, inpaint: InpaintInputs | None = None
) -> Any:
    """The torch reference chunk: diffusers' DDIMScheduler stepping policy.denoise (plan's steps),
    with ``inpaint`` the committed prefix blended in after every step (vla/inpaint.blend_torch)."""
    import torch

    from tinyvla_ros.vla.engine_ddim import build_scheduler
    from tinyvla_ros.vla.inpaint import blend_torch

    scheduler = build_scheduler(policy.config, len(plan))
    x = noise.float()
    if inpaint is not None:
        prefix, weight = torch.from_numpy(inpaint.prefix), torch.from_numpy(inpaint.weight)
        known_noise, coef = torch.from_numpy(inpaint.noise), torch.from_numpy(plan.coefficients)
        x = blend_torch(x, prefix, weight, x, coef[0, 0], coef[0, 1])
    for i, t in enumerate(scheduler.timesteps):
        steps = torch.full((x.shape[0],), int(t), dtype=torch.long)
        eps = policy.denoise(x, steps, condition).float()
        x = scheduler.step(eps, int(t), x).prev_sample
        if inpaint is not None:
            x = blend_torch(x, prefix, weight, known_noise[i], coef[i, 2], coef[i, 3])
    return x
