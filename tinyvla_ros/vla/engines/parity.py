"""Parity of exported ONNX graphs with the torch policy: one check per graph, and the report.

``parity_report`` (run by ``tinyvla-export --check``, vla/export.py) compares the ORT graphs of a
checkpoint directory with the torch policy they were exported from, on seeded example inputs
(``export.example_inputs``): a batch of 2 observations with prompts of different lengths
(padding), and a batch of 1 (``torch_cases``: the inputs with torch's reference values). One
check per graph, each returning {figure: max abs difference over the cases}:

    check_encoder       encoder(.fp16|.int8).onnx                        "condition"
    check_denoiser      denoiser.onnx                                    "eps"
    check_loop          denoiser / denoise_step / sampler_<n> as their DDIM loop   "chunk_<loop>"
    check_inpaint_loop  denoise_step_inpaint / sampler_inpaint_<n>       "chunk_<loop>_inpaint"

The torch references: ``policy.encode_observation``, ``policy.denoise`` and ``policy_sample``
(diffusers' DDIMScheduler stepping ``policy.denoise``). Glossary: B batch, T chunk length,
Da action dim, C condition size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinyvla_ros.vla.engines.ddim import DDIMPlan, build_scheduler
from tinyvla_ros.vla.engines.ort import (
    INPAINT_GRAPH,
    LOOP_GRAPH,
    OnnxGraphs,
    available_providers,
    make_session,
    provider_chain,
)
from tinyvla_ros.vla.inpaint import InpaintInputs, blend_torch, prefix_noise

ENCODER_INPUTS = ("pixel_values", "input_ids", "attention_mask", "state_norm")


def _graph_of(name: str) -> str:
    stem = name.split(".")[0]
    for graph in ("sampler_inpaint", "sampler"):  # unrolled graphs: <graph>_<n>
        if stem.startswith(graph + "_") and stem[len(graph) + 1 :].isdigit():
            return graph
    return stem


@dataclass(frozen=True)
class Case:
    """One batch of example inputs with torch's reference values (host arrays).

    feeds: the encoder's four inputs; noisy (B, T, Da) f32: the denoiser's sample and the loops'
    initial noise; timestep (B,) i64; condition (B, C) torch's (model dtype); eps (B, T, Da) f32;
    chunk (B, T, Da): torch's DDIM loop from ``noisy``; inpaint: a committed prefix, its weights and
    seeded per-step noise; chunk_inpaint: torch's inpainting loop (None when not computed).
    """

    feeds: dict[str, np.ndarray]
    noisy: np.ndarray
    timestep: np.ndarray
    condition: np.ndarray
    eps: np.ndarray
    chunk: np.ndarray
    inpaint: InpaintInputs
    chunk_inpaint: np.ndarray | None


def torch_cases(policy: Any, plan: DDIMPlan, examples: dict, inpaint: bool = True) -> list[Case]:
    """The batch of 2 ``examples`` (export.example_inputs) and its first observation alone, with
    torch's references (``inpaint``: also the inpainting loop's chunk)."""
    import torch

    cases = []
    for batch in (2, 1):
        ex = {k: v[:batch] for k, v in examples.items()}
        ex["input_ids"], ex["attention_mask"] = _trim_padding(ex["input_ids"], ex["attention_mask"])
        with torch.inference_mode():
            cond_t = policy.encode_observation(*(ex[k] for k in ENCODER_INPUTS))
            eps_t = policy.denoise(ex["noisy"], ex["timestep"], cond_t).float()
            chunk_t = policy_sample(policy, plan, cond_t, ex["noisy"]).numpy()
            known = _parity_inpaint(ex, len(plan))
            chunk_i = policy_sample(policy, plan, cond_t, ex["noisy"], known).numpy() if inpaint else None
        cases.append(
            Case(
                feeds={k: ex[k].numpy() for k in ENCODER_INPUTS},
                noisy=ex["noisy"].numpy(),
                timestep=ex["timestep"].numpy(),
                condition=cond_t.numpy(),
                eps=eps_t.numpy(),
                chunk=chunk_t,
                inpaint=known,
                chunk_inpaint=chunk_i,
            )
        )
    return cases


def check_encoder(encoder: OnnxGraphs, cases: list[Case]) -> tuple[dict[str, float], list[np.ndarray], float]:
    """The encoder graph against policy.encode_observation: ({"condition": max abs diff}, the graph's
    condition per case, the largest relative L2 error ||c_onnx - c_torch|| / ||c_torch||)."""
    diffs: dict[str, float] = {}
    encoded, rel = [], 0.0
    for case in cases:
        got = encoder.encode(case.feeds)
        reference = case.condition.astype(np.float32)
        _update(diffs, "condition", got, reference)
        rel = max(rel, float(np.linalg.norm(got - reference) / max(np.linalg.norm(reference), 1e-12)))
        encoded.append(got)
    return diffs, encoded, rel


def check_denoiser(denoiser: Any, cases: list[Case]) -> dict[str, float]:
    """The denoiser graph (an ORT session) against policy.denoise on torch's condition: {"eps": ...}."""
    diffs: dict[str, float] = {}
    for case in cases:
        feeds = {"noisy": case.noisy, "timestep": case.timestep, "condition": case.condition}
        _update(diffs, "eps", denoiser.run(None, feeds)[0], case.eps)
    return diffs


def check_loop(
    loop: OnnxGraphs, cases: list[Case], conditions: list[np.ndarray], key: str | None = None
) -> dict[str, float]:
    """A DDIM loop's graph (numpy: denoiser, fused: denoise_step, graph: sampler_<n>) run from each
    case's noise on ``conditions`` against torch's chunk: {key or "chunk_<loop>": ...}."""
    diffs: dict[str, float] = {}
    for case, condition in zip(cases, conditions, strict=True):
        _update(diffs, key or f"chunk_{loop.loop}", loop.sample(condition, case.noisy), case.chunk)
    return diffs


def check_inpaint_loop(loop: OnnxGraphs, cases: list[Case], conditions: list[np.ndarray]) -> dict[str, float]:
    """An inpainting loop's graph (fused: denoise_step_inpaint, graph: sampler_inpaint_<n>) against
    torch's inpainting loop: {"chunk_<loop>_inpaint": ...}."""
    diffs: dict[str, float] = {}
    for case, condition in zip(cases, conditions, strict=True):
        got = loop.sample(condition, case.noisy, case.inpaint)
        _update(diffs, f"chunk_{loop.loop}_inpaint", got, case.chunk_inpaint)
    return diffs


def parity_report(
    directory: Path,
    policy: Any,
    names: list[str],
    plan: DDIMPlan,
    tolerance: float,
    examples: dict,
    int8_tolerance: float,
) -> dict:
    """Max abs differences between torch ``policy`` and the ORT graphs ``names`` in ``directory``.

    examples: export.example_inputs(policy, batch=2, seed=1) (see torch_cases). Figures:
    "condition" (encoder), "eps" (denoiser), "chunk_<loop>" (whole DDIM loop, for every loop
    whose graph is among ``names``), "chunk_<loop>_inpaint" (fused/graph loops with a committed
    prefix, when their inpainting graphs are among ``names``). fp16 graphs need the CUDA
    provider: without it they are reported unchecked. An int8 encoder is checked by the relative
    L2 error of its condition ("condition_rel", bound ``int8_tolerance``); the loop graphs then run
    on torch's condition (fp32 check as usual) and "chunk_int8" reports, unbounded, how far its
    condition moves the chunk.
    """
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
    files = {_graph_of(n): directory / n for n in names}
    loops = {
        loop: OnnxGraphs({g: files[g]}, plan, providers, loop, device)
        for loop, g in LOOP_GRAPH.items()
        if g in files
    }
    inpainters = {
        loop: OnnxGraphs({g: files[g]}, plan, providers, loop, device)
        for loop, g in INPAINT_GRAPH.items()
        if g in files
    }
    cases = torch_cases(policy, plan, examples, inpaint=bool(inpainters))
    conditions = [case.condition for case in cases]
    diffs: dict[str, float] = {}
    condition_rel = 0.0
    if "encoder" in files:
        encoder = OnnxGraphs({"encoder": files["encoder"]}, plan, providers, "numpy", device)
        found, encoded, condition_rel = check_encoder(encoder, cases)
        diffs.update(found)
        if not int8:
            conditions = encoded  # the loops run on the encoder graph's condition
        elif loops:  # int8: the loops are checked on torch's condition; how far int8 moves the chunk
            diffs.update(check_loop(next(iter(loops.values())), cases, encoded, key="chunk_int8"))
    for run in loops.values():
        diffs.update(check_loop(run, cases, conditions))
    for run in inpainters.values():
        diffs.update(check_inpaint_loop(run, cases, conditions))
    if "denoiser" in files:
        diffs.update(check_denoiser(make_session(files["denoiser"], providers), cases))
    unbounded = ("condition", "chunk_int8") if int8 else ()
    ok = all(v <= tol for k, v in diffs.items() if k not in unbounded)
    report = {"ok": ok, "checked": True, "tolerance": tol, "provider": providers[0][0], "max_abs_diff": diffs}
    if int8:
        report.update(
            ok=ok and condition_rel <= int8_tolerance,
            condition_rel=condition_rel,
            condition_rel_tolerance=int8_tolerance,
        )
    return report


def _parity_inpaint(ex: dict, steps: int) -> InpaintInputs:
    """Inpainting inputs of a parity check: the example prefix and weights, seeded per-step noise."""
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
