"""FLOPs of one TinyVLA action chunk, counted from the model, and a matmul peak to compare with.

``count_chunk_flops(config)`` runs the model's own modules under
``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions, attention, with a formula
added for the CPU flash-attention kernel that torch's table lacks; elementwise ops are not
counted, as is usual) on a model built from fake tensors (torch's FakeTensorMode: shapes only,
no memory, no weights), so any preset can be counted on any machine. One chunk = one
observation encoding (vision tower on every camera + projector + GPT-NeoX over image and text
tokens + condition) + ``steps`` denoiser calls. ``count_policy_flops(policy, steps)`` counts an
existing model the same way.

``matmul_peak(device, dtype)`` times square matmuls on the device: the FLOP/s the hardware
reaches on the friendliest kernel there is, measured in the same run as the latency, so that
achieved / peak (the efficiency ratio) compares like with like.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

# Prompt tokens of "USER: <image>\n{instruction} ASSISTANT:" for a short instruction (the image
# placeholder excluded); the figure barely matters next to 576 image tokens per camera.
DEFAULT_TEXT_TOKENS = 16


@dataclass(frozen=True)
class ChunkFlops:
    """FLOPs (multiply-add = 2) of one chunk for ``batch`` observations.

    vision: vision tower + projector; llm: GPT-NeoX; condition: pooling + LayerNorm + Linear;
    denoiser: one UNet call; steps: DDIM steps; tokens: LLM sequence length.
    """

    vision: int
    llm: int
    condition: int
    denoiser: int
    steps: int
    tokens: int
    batch: int

    @property
    def encoder(self) -> int:
        """One observation encoding."""
        return self.vision + self.llm + self.condition

    @property
    def total(self) -> int:
        """Encoder + steps denoiser calls."""
        return self.encoder + self.steps * self.denoiser

    def to_dict(self) -> dict[str, int]:
        out = {
            k: getattr(self, k)
            for k in ("vision", "llm", "condition", "denoiser", "steps", "tokens", "batch")
        }
        return {**out, "encoder": self.encoder, "total": self.total}


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args: Any, **kwargs: Any) -> int:
    """FLOPs of aten._scaled_dot_product_flash_attention_for_cpu (torch's counter lacks this op)."""
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def flop_counter() -> Any:
    """A torch FlopCounterMode (no display) that also counts the CPU flash-attention kernel."""
    from torch.utils.flop_counter import FlopCounterMode

    extra = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}
    return FlopCounterMode(display=False, custom_mapping=extra)


def _counted(fn: Any) -> tuple[Any, int]:
    with flop_counter() as counter:
        out = fn()
    return out, int(counter.get_total_flops())


def count_chunk_flops(
    config: Any,
    steps: int | None = None,
    batch: int = 1,
    text_tokens: int = DEFAULT_TEXT_TOKENS,
    device: str = "fake",
) -> ChunkFlops:
    """FLOPs of one chunk of a TinyVLAConfig (steps: DDIM steps, default the config's).

    device "fake" (default) builds the model from fake tensors (no memory, any preset); "cpu" /
    "cuda" build a real random-init model (same count, used to check the fake one).
    """
    from tinyvla_ros.vla.policy import TinyVLAPolicy

    steps = config.num_inference_steps if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    if isinstance(text_tokens, bool) or not isinstance(text_tokens, int) or text_tokens < 1:
        raise ValueError(f"text_tokens must be an integer >= 1, got {text_tokens!r}")
    if device != "fake":
        with torch.device(device):
            policy = TinyVLAPolicy(config.replace(tokenizer="external"), tokenizer=None).eval()
        return count_policy_flops(policy, steps, batch, text_tokens)
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():  # shapes only: transformers treats fake tensors as tracing (no data checks)
        policy = TinyVLAPolicy(config.replace(tokenizer="external"), tokenizer=None).eval()
        return count_policy_flops(policy, steps, batch, text_tokens)


def count_policy_flops(
    policy: Any, steps: int, batch: int = 1, text_tokens: int = DEFAULT_TEXT_TOKENS
) -> ChunkFlops:
    """FLOPs of one chunk of an existing TinyVLAPolicy (its weights' device; nothing is changed)."""
    c = policy.config
    param = next(policy.parameters())
    zeros = dict(device=param.device)
    with torch.inference_mode():
        pixels = torch.zeros((batch, c.num_cameras, 3, c.image_size, c.image_size), **zeros)
        image_tokens, vision = _counted(lambda: policy.backbone.encode_images(pixels))  # (B, N*P, H)
        text = torch.zeros((batch, text_tokens, c.llm.hidden_size), **zeros)
        embeds = torch.cat([text, image_tokens], dim=1)  # (B, L', H): the splice moves no FLOPs
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, **zeros)
        llm_out = lambda: policy.backbone.llm(inputs_embeds=embeds, attention_mask=mask, use_cache=False)  # noqa: E731
        hidden, llm = _counted(lambda: llm_out().last_hidden_state)
        state = torch.zeros((batch, c.state_dim), **zeros)
        cond, condition = _counted(lambda: policy.head.condition(hidden, mask, state))
        noisy = torch.zeros((batch, c.chunk_len, c.action_dim), **zeros)
        timestep = torch.zeros((batch,), dtype=torch.long, **zeros)
        _, denoiser = _counted(lambda: policy.head.unet(noisy, timestep, cond))
    return ChunkFlops(vision, llm, condition, denoiser, steps, int(embeds.shape[1]), batch)


def matmul_peak(
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    size: int = 1024,
    min_seconds: float = 0.3,
    repeats: int = 5,
) -> float:
    """Best FLOP/s of (size x size) @ (size x size) matmuls on ``device`` over ``repeats`` timed runs.

    Each run multiplies for at least ``min_seconds``; the best run is the peak (other load on a
    shared machine only ever slows a run down). Uses torch's current thread count.
    """
    if size < 16 or repeats < 1 or min_seconds <= 0:
        raise ValueError(
            f"need size >= 16, repeats >= 1, min_seconds > 0; got {size}, {repeats}, {min_seconds}"
        )
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn((size, size), generator=gen).to(device=device, dtype=dtype)
    b = torch.randn((size, size), generator=gen).to(device=device, dtype=dtype)
    out = torch.empty((size, size), device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    torch.mm(a, b, out=out)  # warm-up
    best = 0.0
    for _ in range(repeats):
        sync()
        start, n = time.perf_counter(), 0
        while True:
            torch.mm(a, b, out=out)
            n += 1
            if n % 4 == 0:
                sync()
                elapsed = time.perf_counter() - start
                if elapsed >= min_seconds:
                    break
        best = max(best, 2.0 * size**3 * n / elapsed)
    return best
