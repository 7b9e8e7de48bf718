"""The action head: observation condition + conditional 1-D UNet denoiser.

Shapes (glossary): B batch, L tokens, H LLM hidden size, Ds state dim, T chunk length,
Da action dim, C = cond_dim = H.

``ObservationCondition``  hidden (B, L, H), token mask (B, L), state_norm (B, Ds)
    [, feature maps (B, N, C, h, w)] -> (B, H):
    mean-pool over valid tokens (or over all tokens: the official unmasked variant),
    LayerNorm, concatenate [the N x K spatial-softmax keypoints (B, 2NK) of the vision tower's
    feature maps, with K = spatial_keypoints > 0,] the normalised state, Linear(H [+ 2NK] + Ds -> H).
``ConditionalUnet1D``  noisy actions (B, T, Da), timesteps (B,), condition (B, C) -> eps (B, T, Da):
    Diffusion-Policy-style UNet over time with channels = action dims: sinusoidal step embedding
    -> MLP, concatenated with the condition, injected by FiLM (per-channel scale and bias) into
    every residual block; Conv1d + GroupNorm + Mish blocks; ``len(down_dims)`` levels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tinyvla_ros.vla.config import HeadConfig, TinyVLAConfig
from tinyvla_ros.vla.vision import SpatialKeypoints


class SinusoidalStepEmbedding(nn.Module):
    """Diffusion step t (B,) -> (B, dim) float32 [sin | cos] features over geometric frequencies.

    Always computed in float32 (angles reach ~100 rad: half precision would garble them).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.half = dim // 2
        self.scale = math.log(10000.0) / max(self.half - 1, 1)

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(self.half, device=timesteps.device, dtype=torch.float32)
        freqs = torch.exp(steps * -self.scale)  # (dim/2,)
        angles = timesteps.to(torch.float32)[:, None] * freqs[None, :]  # (B, dim/2)
        return torch.cat([angles.sin(), angles.cos()], dim=-1)  # (B, dim)


class ConvNormMish(nn.Module):
    """Conv1d (same length) -> GroupNorm -> Mish: (B, Cin, T) -> (B, Cout, T)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_ch, out_ch, kernel, padding=kernel // 2)
        self.norm = nn.GroupNorm(groups, out_ch)
        self.act = nn.Mish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class FiLMResidualBlock(nn.Module):
    """Two ConvNormMish blocks with FiLM between them and a residual path.

    x (B, Cin, T), cond (B, Cc) -> (B, Cout, T); FiLM: h = scale(cond) * h + bias(cond).
    """

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.block1 = ConvNormMish(in_ch, out_ch, kernel, groups)
        self.block2 = ConvNormMish(out_ch, out_ch, kernel, groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * out_ch))
        self.residual = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.out_ch = out_ch

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.block1(x)  # (B, Cout, T)
        scale, bias = self.film(cond).unsqueeze(-1).chunk(2, dim=1)  # 2 x (B, Cout, 1)
        h = scale * h + bias
        return self.block2(h) + self.residual(x)  # (B, Cout, T)


class _Level(nn.Module):
    """One UNet level: two FiLM residual blocks and an optional resampling conv."""

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, head: HeadConfig, resample: nn.Module) -> None:
        super().__init__()
        self.res1 = FiLMResidualBlock(in_ch, out_ch, cond_dim, head.kernel_size, head.n_groups)
        self.res2 = FiLMResidualBlock(out_ch, out_ch, cond_dim, head.kernel_size, head.n_groups)
        self.resample = resample

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (resampled output, pre-resampling features for the skip connection)."""
        h = self.res2(self.res1(x, cond), cond)
        return self.resample(h), h


class ConditionalUnet1D(nn.Module):
    """eps = UNet(noisy (B, T, Da), t (B,), condition (B, C)) -> (B, T, Da).

    Down path: levels with channels down_dims, each halving T except the last; mid: two blocks at
    down_dims[-1]; up path: len(down_dims) - 1 levels, each taking the matching skip features
    (concatenated on channels) and doubling T; final ConvNormMish + 1x1 conv back to Da.
    As in Diffusion Policy, the finest down level's skip is not consumed by the up path.
    """

    def __init__(self, action_dim: int, cond_dim: int, head: HeadConfig) -> None:
        super().__init__()
        dims = (action_dim, *head.down_dims)
        step_dim = head.step_embed_dim
        self.step_embedding = SinusoidalStepEmbedding(step_dim)
        self.step_mlp = nn.Sequential(
            nn.Linear(step_dim, 4 * step_dim),
            nn.Mish(),
            nn.Linear(4 * step_dim, step_dim),
        )
        film_dim = step_dim + cond_dim
        pairs = list(zip(dims[:-1], dims[1:], strict=True))
        self.down = nn.ModuleList()
        for i, (cin, cout) in enumerate(pairs):
            last = i == len(pairs) - 1
            down = nn.Identity() if last else nn.Conv1d(cout, cout, 3, stride=2, padding=1)
            self.down.append(_Level(cin, cout, film_dim, head, down))
        mid = dims[-1]
        self.mid = nn.ModuleList(
            [FiLMResidualBlock(mid, mid, film_dim, head.kernel_size, head.n_groups) for _ in range(2)]
        )
        self.up = nn.ModuleList()
        for cin, cout in reversed(pairs[1:]):
            up = nn.ConvTranspose1d(cin, cin, 4, stride=2, padding=1)
            self.up.append(_Level(2 * cout, cin, film_dim, head, up))
        first = head.down_dims[0]
        self.final = nn.Sequential(
            ConvNormMish(first, first, head.kernel_size, head.n_groups), nn.Conv1d(first, action_dim, 1)
        )

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        x = noisy.transpose(1, 2)  # (B, Da, T)
        steps = self.step_embedding(timesteps).to(self.step_mlp[0].weight.dtype)  # (B, step)
        cond = torch.cat([self.step_mlp(steps).to(condition.dtype), condition], dim=-1)  # (B, step + C)
        skips = []
        for level in self.down:
            x, skip = level(x, cond)  # x (B, Ci, T / 2^i)
            skips.append(skip)
        for block in self.mid:
            x = block(x, cond)
        for level in self.up:
            x, _ = level(torch.cat([x, skips.pop()], dim=1), cond)  # (B, C, 2 * T_level)
        return self.final(x).transpose(1, 2)  # (B, T, Da)


class ObservationCondition(nn.Module):
    """(hidden (B, L, H), token_mask (B, L), state_norm (B, Ds)[, maps (B, N, C, h, w)]) -> condition (B, H).

    pooling "masked": mean over tokens with token_mask 1 (padding excluded);
    pooling "all": mean over every position, padding included (official behaviour, for parity).
    keypoints K > 0: one SpatialKeypoints per camera (``spatial``) turns that camera's feature
    map into K (x, y) keypoints, concatenated (camera order) between the pooled embedding and
    the state; K = 0 is the paper's condition exactly (same modules and parameter names).
    bottleneck (config.slot_bottleneck): the output is (pooled, state, mixed) (B, 2H + Ds); the
    policy turns the mixed part into the object readout, and the head sees no keypoint directly.
    """

    def __init__(
        self,
        hidden: int,
        state_dim: int,
        pooling: str,
        keypoints: int = 0,
        cameras: int = 0,
        feature_channels: int = 0,
        bottleneck: bool = False,
        detach_pooled: bool = False,
    ) -> None:
        super().__init__()
        self.pooling = pooling
        self.bottleneck = bottleneck
        self.detach_pooled = detach_pooled
        self.keypoints = keypoints
        self.norm = nn.LayerNorm(hidden)
        if keypoints:
            self.spatial = nn.ModuleList(
                SpatialKeypoints(feature_channels, keypoints) for _ in range(cameras)
            )
        self.combine = nn.Linear(hidden + 2 * keypoints * cameras + state_dim, hidden)

    def spatial_features(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, N, C, h, w) -> keypoints (B, N * K * 2) in [-1, 1], cameras in order."""
        points = [net(maps[:, i]) for i, net in enumerate(self.spatial)]  # N x (B, K, 2)
        return torch.cat(points, dim=1).flatten(1)  # (B, N*K*2)

    def pool(self, hidden: torch.Tensor, token_mask: torch.Tensor) -> torch.Tensor:
        """(B, L, H), (B, L) -> (B, H)."""
        if self.pooling == "all":
            return hidden.mean(dim=1)
        weights = token_mask.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)

    def forward(
        self,
        hidden: torch.Tensor,
        token_mask: torch.Tensor,
        state_norm: torch.Tensor,
        maps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        pooled = self.norm(self.pool(hidden, token_mask))  # (B, H)
        parts = [pooled]
        if self.keypoints:
            if maps is None:
                raise ValueError("this condition has spatial keypoints: it needs the feature maps")
            parts.append(self.spatial_features(maps).to(pooled.dtype))  # (B, 2NK)
        state = state_norm.to(pooled.dtype)
        parts.append(state)
        mixed = self.combine(torch.cat(parts, dim=-1))  # (B, H)
        if self.bottleneck:
            head_pooled = pooled.detach() if self.detach_pooled else pooled
            return torch.cat([head_pooled, state, mixed], dim=-1)  # (B, 2H + Ds)
        return mixed


class ActionHead(nn.Module):
    """The head as one module (for parameter accounting): condition (keypoints included) + UNet denoiser."""

    def __init__(self, config: TinyVLAConfig) -> None:
        super().__init__()
        c = config
        self.condition = ObservationCondition(
            c.llm.hidden_size,
            c.state_dim,
            c.pooling,
            c.spatial_keypoints,
            c.num_cameras,
            c.vision.feature_channels,
            c.slot_bottleneck,
            c.pooled_detach,
        )
        self.unet = ConditionalUnet1D(c.action_dim, c.cond_dim, c.head)  # object slots included
        if c.aux_dim:  # sim-only auxiliary readout (training): condition -> object coordinates
            h = c.llm.hidden_size
            if c.readout_hidden:  # can select an object by the instruction
                self.aux = nn.Sequential(
                    nn.Linear(h, c.readout_hidden), nn.Mish(), nn.Linear(c.readout_hidden, c.aux_dim)
                )
            else:
                self.aux = nn.Linear(h, c.aux_dim)
        if c.object_targets == "selected":  # the mixed condition -> logits over the objects, twice
            self.select = nn.Linear(c.llm.hidden_size, 2 * (c.aux_dim // 2))
