"""ONNX Runtime engine: runs the graphs of ``tinyvla-export`` with the DDIM loop of diffusers.

``OnnxEngine(checkpoint_dir, OnnxEngineConfig(...))`` has the interface of ``base.Engine``
(``predict_chunk``, ``warmup``, ``name``, ``config``) plus ``predict_chunk_batch``, ``encode`` and
``sample``. Glossary: B batch, N cameras, S image side, L prompt tokens, Ds/Da state/action dims,
T chunk length, C condition size.

Execution providers ("cpu", "cuda", "tensorrt") and the DDIM loops ("numpy", "fused", "graph")
are ort.py's (``OnnxGraphs``). Inpainting (``predict_chunk(..., prefix=, prefix_weight=)``,
vla/inpaint.py): the fused and graph loops need their inpainting graphs, loaded at start with
``OnnxEngineConfig.inpaint``, else on the first inpainting call (exported first when missing).
Work avoided per call: the prompt's input_ids are cached per instruction, pixel/noise/sample
buffers are preallocated per batch size, every camera goes through the vision tower in one batch.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinyvla_ros.vla.engines.base import warm_up
from tinyvla_ros.vla.engines.chunk_io import ChunkIO
from tinyvla_ros.vla.engines.ddim import DDIMPlan
from tinyvla_ros.vla.engines.ort import (
    INPAINT_GRAPH,
    LOOP_GRAPH,
    PROVIDERS,
    OnnxGraphs,
    cpu_has_vnni,
    device_id,
    provider_chain,
)
from tinyvla_ros.vla.inpaint import InpaintInputs

LOOPS = ("auto", "numpy", "fused", "graph")
ONNX_PRECISIONS = ("fp32", "fp16", "int8")


EXPORT_LOCK = ".onnx_export.lock"


@contextlib.contextmanager
def _directory_lock(directory: Path):
    """An exclusive advisory lock (flock) on ``directory/.onnx_export.lock`` while held: other
    processes exporting into the same checkpoint wait; released when the process dies."""
    import fcntl

    with open(directory / EXPORT_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
        device_id(self.device)
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
        self.io = ChunkIO(self.config, self.normalizer, reuse_buffers=True)  # checks, inputs, actions
        self._text: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def _prompt_tokenizer(self) -> Any:
        from tinyvla_ros.vla.tokenizer import PromptTokenizer, load_tokenizer

        c = self.config
        return PromptTokenizer(load_tokenizer(self.directory), c.prompt_template, c.max_text_tokens)

    def _graph_files(self) -> dict[str, Path]:
        """Paths of the encoder and the loop's graph; exports them first when missing or stale."""
        loop = self.cfg.resolved_loop
        steps = len(self.plan) if loop == "graph" else None
        graphs = ["encoder", LOOP_GRAPH[loop]]
        if self.cfg.inpaint and loop in INPAINT_GRAPH:
            graphs.append(INPAINT_GRAPH[loop])
        return self._ensure_graphs(graphs, steps)

    def _ensure_graphs(self, graphs: list[str], steps: int | None) -> dict[str, Path]:
        """Paths of ``graphs`` (exported first when missing or stale and auto_export is on)."""
        from tinyvla_ros.vla import export

        precision = self.cfg.graph_precision
        wanted = {g: export.graph_file(g, precision, steps if g in export.UNROLLED else None) for g in graphs}
        files = list(wanted.values())
        problem = export.manifest_problem(self.directory, files)
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
            # one exporter per directory: two processes loading the same checkpoint (two evaluations,
            # a node restarted beside a benchmark) wrote the same files at once and one read a torn graph
            with _directory_lock(self.directory):
                problem = export.manifest_problem(self.directory, files)  # the other may have done it
                if problem is not None:
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
        t, d = self.config.chunk_len, self.config.action_dim
        with self._lock:  # the pixel and sample buffers are reused between calls
            x = self.io.prepare(
                images, instructions, states, seed, initial_noise, prefix, prefix_weight, len(self.plan)
            )
            if x.inpaint is not None:
                self._require_inpaint_graph()
            ids, mask = self._text_inputs(instructions)
            feeds = {
                "pixel_values": x.pixel_values,
                "input_ids": ids,
                "attention_mask": mask,
                "state_norm": x.state_norm,
            }
            condition = self.graphs.encode_value(feeds, self.graphs.buffers(len(images), t, d).condition)
            actions = self.graphs.sample(condition, x.noise, x.inpaint)  # (B, T, Da) in [-1, 1]
        return self.io.actions(actions)

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
        images, instructions, states, noise = self.io.single(
            images, instruction, state, initial_noise, prefix, prefix_weight
        )
        return self.predict_chunk_batch(images, instructions, states, seed, noise, prefix, prefix_weight)[0]

    def warmup(self, runs: int = 2) -> float:
        """Blank inferences at the configured image size (the mean state); returns the last duration (s)."""
        return warm_up(self, runs, state=self.normalizer.state_mean)
