"""CAMixerSR: content-aware mixing for super-resolution (Wang et al., "Only Details Need More Attention", CVPR 2024).

Written for restorecli, state-dict compatible with the official release (icandle/CAMixerSR,
``codes/basicsr/archs/CAMixerSR_arch.py``): parameter names (including the official spelling
``conv_sptial``), shapes and the inference forward match, so an official checkpoint
(``params_ema`` of a BasicSR file) loads with ``strict=True``.

Each CAMixer splits the feature map into 16x16 windows. A predictor scores every window; the
highest-scoring ones (about ``ratio`` of them) get window self-attention over deformably warped
keys, the others only a spatially gated value projection; a depth-wise convolution branch then
runs everywhere. Consequences worth knowing:

- **FLOPs depend on the content.** How many windows take the attention path is decided per input
  (and per batch: the fraction is averaged over the whole batch, as in the official code), so a
  static count measures the windows chosen for the image it ran on, not a constant of the
  network. On the meta device (``restore profile``'s shape-only counts) there is no content, and
  the nominal count is used: ``ratio`` of the windows, the convention of the paper's FLOPs.
- **Routing is deterministic here by default.** The official inference draws the number of
  attention windows from a hard Gumbel-softmax sample, so two runs on the same image differ.
  ``sample_routing=False`` (default) uses that sample's expectation (the mean softmax probability
  of the attention class) instead; ``sample_routing=True`` reproduces the official draw.
- Inputs are reflect-padded to a multiple of the window size and the output cropped, as the
  official forward does; the attention windows and the global routing make tiles differ from a
  whole-image pass.

Only the inference path is implemented: the official training path (soft Gumbel masks and the
ratio loss returned beside the image) is not reproduced.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from restorecli.archs.nafnet import LayerNorm2d
from restorecli.errors import ConfigError

# Channels appended to the value map before routing: 2 from the global predictor, 2 window coordinates.
_CONDITION_CHANNELS = 4
# Offsets are ``tanh`` outputs scaled to at most this many pixels (official constant).
_MAX_OFFSET = 8.0


def to_windows(x: Tensor, size: int) -> Tensor:
    """``(B, C, H, W)`` -> ``(B, windows, size * size * C)``, each window flattened row, column, channel."""
    batch, channels, height, width = x.shape
    x = x.view(batch, channels, height // size, size, width // size, size)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(batch, -1, size * size * channels)


def from_windows(windows: Tensor, size: int, height: int, width: int) -> Tensor:
    """Inverse of :func:`to_windows` for a ``height`` x ``width`` map."""
    batch = windows.shape[0]
    windows = windows.view(batch, height // size, width // size, size, size, -1)
    return windows.permute(0, 5, 1, 3, 2, 4).reshape(batch, -1, height, width)


def warp(x: Tensor, offsets: Tensor) -> Tensor:
    """Sample ``x`` at each pixel plus ``offsets`` ``(B, 2, H, W)`` (x then y, in pixels).

    Bilinear, border-clamped, corner-aligned: BasicSR's ``flow_warp`` as the official mixer calls it.
    """
    height, width = x.shape[-2:]
    columns = torch.arange(width, dtype=x.dtype, device=x.device).view(1, 1, width) + offsets[:, 0]
    rows = torch.arange(height, dtype=x.dtype, device=x.device).view(1, height, 1) + offsets[:, 1]
    grid = torch.stack((2.0 * columns / max(width - 1, 1) - 1.0, 2.0 * rows / max(height - 1, 1) - 1.0), dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _gather_windows(windows: Tensor, index: Tensor) -> Tensor:
    """Windows ``index`` ``(B, k)`` of ``windows`` ``(B, n, D)`` -> ``(B, k, D)``."""
    return windows.gather(1, index.unsqueeze(-1).expand(-1, -1, windows.shape[-1]))


class PredictorLG(nn.Module):
    """Routing predictor (official key ``route``): offsets, channel and spatial gates, window ranking.

    Args:
        dim: feature channels; the input has ``dim + 4`` (value map and the four condition maps).
        window_size: side of the attention windows.
        ratio: target fraction of windows that get attention.
        sample_routing: draw the attention-window count as the official code does (Gumbel sample)
            instead of using its expectation.
    """

    def __init__(self, dim: int, window_size: int, ratio: float, sample_routing: bool = False) -> None:
        super().__init__()
        self.ratio = ratio
        self.window_size = window_size
        self.sample_routing = sample_routing
        cdim = dim + _CONDITION_CHANNELS
        self.in_conv = nn.Sequential(nn.Conv2d(cdim, cdim // 4, 1), LayerNorm2d(cdim // 4), nn.LeakyReLU(0.1))
        self.out_offsets = nn.Sequential(
            nn.Conv2d(cdim // 4, cdim // 8, 1), nn.LeakyReLU(0.1), nn.Conv2d(cdim // 8, 2, 1)
        )
        self.out_mask = nn.Sequential(
            nn.Linear(window_size**2, window_size),
            nn.LeakyReLU(0.1),
            nn.Linear(window_size, 2),
            nn.Softmax(dim=-1),
        )
        self.out_CA = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cdim // 4, dim, 1), nn.Sigmoid())
        self.out_SA = nn.Sequential(nn.Conv2d(cdim // 4, 1, 3, padding=1), nn.Sigmoid())

    def forward(self, condition: Tensor) -> tuple[Tensor, int, Tensor, Tensor, Tensor]:
        """Returns the windows ranked by attention score ``(B, n)``, how many of them get attention,
        offsets ``(B, 2, H, W)``, channel gate ``(B, dim, 1, 1)`` and spatial gate ``(B, 1, H, W)``."""
        x = self.in_conv(condition)
        offsets = self.out_offsets(x).tanh() * _MAX_OFFSET
        channel_gate = self.out_CA(x)
        spatial_gate = self.out_SA(x)
        scores = self.out_mask(to_windows(x.mean(dim=1, keepdim=True), self.window_size))
        windows = scores.shape[1]
        if scores.is_meta:  # shape-only profiling: no content, so the nominal count (the paper's FLOPs)
            fraction = torch.tensor(0.5)
        elif self.sample_routing:
            fraction = F.gumbel_softmax(scores, hard=True, dim=2)[:, :, 0].mean()
        else:  # the expectation of the sample above: gumbel_softmax treats ``scores`` as logits
            fraction = scores.softmax(dim=2)[:, :, 0].mean()
        keep = windows if self.ratio == 1 else min(int(windows * fraction * 2 * self.ratio), windows)
        ranking = torch.argsort(scores[:, :, 0], dim=1, descending=True)
        return ranking, keep, offsets, channel_gate, spatial_gate


class CAMixer(nn.Module):
    """Content-aware mixer: window attention for the top-ranked windows, gated values elsewhere, plus convolution."""

    def __init__(self, dim: int, window_size: int, ratio: float, sample_routing: bool = False) -> None:
        super().__init__()
        self.window_size = window_size
        self.project_v = nn.Conv2d(dim, dim, 1)
        self.project_q = nn.Linear(dim, dim)
        self.project_k = nn.Linear(dim, dim)
        # Depth-wise 3x3, then depth-wise 3x3 with dilation 2 (official spelling of the key).
        self.conv_sptial = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim), nn.Conv2d(dim, dim, 3, padding=2, groups=dim, dilation=2)
        )
        self.project_out = nn.Conv2d(dim, dim, 1)
        self.act = nn.GELU()
        self.route = PredictorLG(dim, window_size, ratio, sample_routing)

    def _window_grid(self, like: Tensor) -> Tensor:
        """Per-window coordinates in ``[-1, 1]``, tiled over the map: ``(B, 2, H, W)``."""
        size = self.window_size
        axis = torch.linspace(-1, 1, size)
        grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij")).to(like)
        batch, _, height, width = like.shape
        return grid.unsqueeze(0).repeat(batch, 1, height // size, width // size)

    def forward(self, x: Tensor, condition_global: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        size = self.window_size
        v = self.project_v(x)
        condition = torch.cat([v, condition_global, self._window_grid(x)], dim=1)
        ranking, keep, offsets, channel_gate, spatial_gate = self.route(condition)

        values = to_windows(v, size)
        mixed = torch.empty_like(values)
        rest = ranking[:, keep:]
        gated = _gather_windows(to_windows(v * spatial_gate, size), rest)
        mixed.scatter_(1, rest.unsqueeze(-1).expand_as(gated), gated)
        if keep:
            chosen = ranking[:, :keep]
            pairs = torch.cat([x, x + warp(x, offsets)], dim=1)  # queries from x, keys from the warped x
            pairs = _gather_windows(to_windows(pairs, size), chosen).view(batch, keep, size * size, 2 * channels)
            queries = self.project_q(pairs[..., :channels])
            keys = self.project_k(pairs[..., channels:])
            chosen_values = _gather_windows(values, chosen).view(batch, keep, size * size, channels)
            attended = (queries @ keys.transpose(-2, -1)).softmax(dim=-1) @ chosen_values
            attended = attended.reshape(batch, keep, -1)
            mixed.scatter_(1, chosen.unsqueeze(-1).expand_as(attended), attended)

        out = from_windows(mixed, size, height, width)
        out = self.act(self.conv_sptial(out)) * channel_gate + out
        return self.project_out(out)


class GatedFeedForward(nn.Module):
    """Depth-wise gated FFN without biases: ``project_out(gelu(a) * b)`` over the two halves."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.project_in = nn.Conv2d(dim, dim * 2, 1, bias=False)
        self.dwconv = nn.Conv2d(dim * 2, dim * 2, 3, padding=1, groups=dim * 2, bias=False)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, value = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(gate) * value)


class Block(nn.Module):
    """Post-norm block: ``norm1(x + mixer(x))`` then ``norm2(x + ffn(x))``."""

    def __init__(self, dim: int, window_size: int, ratio: float, sample_routing: bool = False) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(dim)
        self.mixer = CAMixer(dim, window_size, ratio, sample_routing)
        self.norm2 = LayerNorm2d(dim)
        self.ffn = GatedFeedForward(dim)

    def forward(self, x: Tensor, condition_global: Tensor) -> Tensor:
        x = self.norm1(x + self.mixer(x, condition_global))
        return self.norm2(x + self.ffn(x))


class Group(nn.Module):
    """Blocks followed by a 1x1 convolution, with a residual connection around the group."""

    def __init__(self, dim: int, blocks: int, window_size: int, ratio: float, sample_routing: bool = False) -> None:
        super().__init__()
        self.body = nn.ModuleList(Block(dim, window_size, ratio, sample_routing) for _ in range(blocks))
        self.body_tail = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor, condition_global: Tensor) -> Tensor:
        shortcut = x
        for block in self.body:
            x = block(x, condition_global)
        return self.body_tail(x) + shortcut


class CAMixerSR(nn.Module):
    """CAMixerSR network: ``(N, C, H, W)`` -> ``(N, C, H * scale, W * scale)`` in ``[0, 1]`` (not clamped).

    Args:
        n_block: blocks per group (official ``[4, 4, 6, 6]``); the first ``n_group`` are used.
        n_group: number of groups.
        n_colors: image channels.
        n_feats: feature channels (60 for the lightweight and large-image "Base" models).
        scale: output scale (2, 3 or 4).
        ratio: target fraction of attention windows (0.5 in the releases).
        window_size: attention window side (16 in every release).
        sample_routing: draw the attention-window count as the official code does (non-deterministic)
            instead of using its expectation; see the module docstring.
    """

    def __init__(
        self,
        n_block: Sequence[int] = (4, 4, 6, 6),
        n_group: int = 4,
        n_colors: int = 3,
        n_feats: int = 60,
        scale: int = 4,
        ratio: float = 0.5,
        window_size: int = 16,
        sample_routing: bool = False,
    ) -> None:
        super().__init__()
        if len(n_block) < n_group:
            raise ConfigError(f"Expected at least n_group={n_group} block counts, but got n_block={list(n_block)}")
        self.scale = scale
        self.window_size = window_size
        self.head = nn.Conv2d(n_colors, n_feats, 3, padding=1)
        self.global_predictor = nn.Sequential(
            nn.Conv2d(n_feats, 8, 1), nn.LeakyReLU(0.1), nn.Conv2d(8, 2, 3, padding=1), nn.LeakyReLU(0.1)
        )
        self.body = nn.ModuleList(
            Group(n_feats, n_block[index], window_size, ratio, sample_routing) for index in range(n_group)
        )
        self.body_tail = nn.Conv2d(n_feats, n_feats, 3, padding=1)
        self.tail = nn.Sequential(nn.Conv2d(n_feats, n_colors * scale**2, 3, padding=1), nn.PixelShuffle(scale))

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % self.window_size, -width % self.window_size
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        x = self.head(x)
        condition_global = self.global_predictor(x)
        shortcut = x
        for group in self.body:
            x = group(x, condition_global)
        x = self.tail(self.body_tail(x) + shortcut)
        return x[:, :, : height * self.scale, : width * self.scale]
