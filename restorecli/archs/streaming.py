"""Exact low-memory inference for Restormer and NAFNet: every block streamed over horizontal strips.

Tiling changes the output of a network with global operators; streaming does not. Every operator of
these networks is either local (per-pixel norms, 1x1 and 3x3 convolutions, gates, resampling) or a
sum over all pixels:

- Restormer's MDTA needs each head's Gram matrix ``q^T k`` and the squared norms of ``q`` and ``k``
  over the pixels. A first pass accumulates them strip by strip; the tiny ``C x C`` attention is
  then formed once (:meth:`~restorecli.archs.restormer.Attention.mixing`), and a second pass applies
  it and the block's feed-forward network strip by strip.
- NAFNet's simplified channel attention pools the gated map globally: a first pass sums it over the
  strips, a second recomputes the gated strip and finishes the block. TLC's local pooling needs a
  window of rows far larger than a strip, so there the gated map is kept whole and pooled by the
  module's own pooling: exact, at the cost of a few maps of one level's width (see
  :func:`streamed_peak_bytes`).

A strip of a block reads its input rows plus a halo of one row per 3x3 convolution on the way (two
for a Restormer block), so every output row is computed from exactly the values the whole-image
forward uses; only the order of floating-point sums differs (``tests/test_streaming.py`` bounds the
difference on ``[0, 1]`` outputs).

Memory. The maps between blocks stay whole, in ``store_dtype``; everything else lives for one strip.
Blocks overwrite their input map in place (a strip is written only once the next one has read its
halo), the concatenations of the U-Net skips are written straight into their final buffer (Restormer's
level-1 ``[up(dec2), enc1]`` map is allocated once and the encoder runs in its second half), and the
``reduce_chan`` convolutions write over the skip they read. The floor is the encoder's skips: for
Restormer ``2.875 * dim`` channels per pixel of the image (12 MP, dim 48, fp32: 6.6 GB).

Inference only: the maps are overwritten in place, so no autograd graph can exist (everything runs
under :func:`torch.inference_mode`). Autocast and channels-last inputs work as in the modules' forwards.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from restorecli.archs.nafnet import LocalAvgPool2d, NAFBlock, NAFNet, NAFNetLocal
from restorecli.archs.ops import Sides, aligned_channels, is_channels_last
from restorecli.archs.restormer import FeedForward, Restormer, TransformerBlock, head_grams, pixel_squares, pixels
from restorecli.errors import ConfigError

# Rows a strip reads above and below its own: one per 3x3 convolution on the way from its input.
_RESTORMER_BLOCK_HALO = 2  # qkv_dwconv, then the feed-forward network's dwconv
_NAFNET_BLOCK_HALO = 1  # conv2
# The smallest strip: a strip is written back only after the next one read its halo (at most 2 rows),
# and 2x up-sampled strips must start on even rows.
MINIMUM_STRIP_HEIGHT = 2
# Narrowest piece of a strip (see streamed_forward's ``pieces``): its two halo columns on each side
# stay a small part of it.
MINIMUM_PIECE_WIDTH = 64
# Live strip-sized maps at the peak of a block, in units of its widest map (GDFN's hidden half, NAFNet's 2c):
# counted from the block's code, rounded up (see streamed_peak_bytes).
_STRIP_MAPS = {Restormer: 6, NAFNet: 4}
# Whole maps of one level's width the module's own TLC pooling holds at its peak (gated map, two
# cumulative sums, window sums, the means and their padded copy, the attention).
_TLC_WHOLE_MAPS = 7


def supports_streaming(module: nn.Module) -> bool:
    """Whether :func:`streamed_forward` reproduces ``module(x)`` (our Restormer and NAFNet, not subclasses)."""
    if type(module) is Restormer:
        return True
    if type(module) in (NAFNet, NAFNetLocal):
        return all(isinstance(block.sca[0], nn.AdaptiveAvgPool2d | LocalAvgPool2d) for block in _nafnet_blocks(module))
    return False


def streams_faster_on_cpu(module: nn.Module) -> bool:
    """Whether streaming ``module`` on a CPU beats its whole-image forward even when the image fits.

    Restormer's blocks in cache-sized pieces do from a few hundred pixels up; NAFNet's blocks compute
    their gated map twice (once for the pooled sum, once to finish) and do not
    (``bench/results/epyc-streamed.txt`` against ``epyc-nafnet.txt``).
    """
    return supports_streaming(module) and isinstance(module, Restormer)


def minimum_strip_height(module: nn.Module) -> int:
    """The smallest strip height :func:`streamed_forward` takes for ``module``.

    Raises:
        ConfigError: ``module`` does not support streaming.
    """
    _check_supported(module)
    return MINIMUM_STRIP_HEIGHT


def streamed_forward(
    module: nn.Module,
    x: Tensor,
    strip_height: int,
    *,
    store_dtype: torch.dtype | None = None,
    pieces: int = 1,
    channels_last: bool | None = None,
    between_stages: Callable[[], object] | None = None,
) -> Tensor:
    """``module(x)`` computed block by block over horizontal strips of ``strip_height`` rows (inference only).

    Args:
        module: a Restormer or NAFNet (plain or TLC) in eval mode.
        x: ``(N, C, H, W)`` images; Restormer needs ``H, W`` multiples of 8 (pad as its forward
            requires), NAFNet pads inside like its forward.
        strip_height: rows per strip at every level (a row costs the same memory at every level:
            half the width, twice the channels); even, at least :func:`minimum_strip_height`.
        store_dtype: dtype of the maps kept whole between blocks; None keeps what the forward keeps
            (the autocast dtype under autocast, else ``x.dtype``). ``torch.bfloat16`` halves the
            memory floor at the cost of rounding those maps.
        pieces: Restormer's blocks compute each strip in this many pieces across the width, each
            with its own two-pixel halo: on a wide image a strip of few rows spends its time on
            halo rows, one of many rows outgrows the CPU caches; pieces keep the rows and fit the
            cache (``bench/bench_streaming.py --modes strip-64,strip-48x8``). A piece is at least
            :data:`MINIMUM_PIECE_WIDTH` columns, so narrow levels take fewer.
        channels_last: the layout of every map and window (None: ``x``'s). ``x`` is only read a
            window at a time, so it needs no channels-last copy of its own.
        between_stages: called after each stage of blocks and each down- or up-sampling (the engine
            hands freed heap pages back to the kernel there when memory is the constraint:
            :func:`~restorecli.engine.allocator.release_freed_memory`).

    Returns:
        The output of ``module(x)`` up to the order of floating-point sums, as an inference tensor.

    Raises:
        ConfigError: an unsupported module or an invalid strip height.
    """
    _check_supported(module)
    if strip_height < MINIMUM_STRIP_HEIGHT or strip_height % 2:
        raise ConfigError(
            f"Expected an even strip height of at least {MINIMUM_STRIP_HEIGHT} rows, but got {strip_height}"
        )
    if pieces < 1:
        raise ConfigError(f"Expected at least one piece per strip, but got {pieces}")
    with torch.inference_mode():
        plan = _Plan.for_input(x, strip_height, store_dtype, pieces, channels_last, between_stages)
        if isinstance(module, Restormer):
            if x.shape[-2] % 8 or x.shape[-1] % 8:
                raise ConfigError(f"Expected H and W multiples of 8 for Restormer, but got {tuple(x.shape[-2:])}")
            return _restormer(module, x, plan)
        return _nafnet(module, x, plan)


def streamed_peak_bytes(
    module: nn.Module,
    shape: tuple[int, ...],
    strip_height: int,
    dtype: torch.dtype = torch.float32,
    *,
    store_dtype: torch.dtype | None = None,
    pieces: int = 1,
) -> int:
    """Estimated peak bytes :func:`streamed_forward` allocates for an input of ``shape`` (its output included).

    The whole maps between blocks (a fixed floor) plus what lives for one strip, which grows
    linearly with ``strip_height``: the temporaries of one piece of a block (with ``pieces`` across,
    as in :func:`streamed_forward`, only a piece's worth at a time) and the finished strip held for
    write-back. Temporaries are counted at 4 bytes a value even under autocast (norms and residual
    sums stay fp32). Activations only: weights and the caller's input are not counted.

    Args:
        shape: ``(N, C, H, W)`` of the (padded) input.
        dtype: the compute precision (the autocast dtype, or float32).
        store_dtype: as in :func:`streamed_forward` (None: ``dtype``).
        pieces: as in :func:`streamed_forward`.
    """
    _check_supported(module)
    batch, _, height, width = shape
    stored = torch.empty((), dtype=store_dtype or dtype).element_size()
    pixel_count = batch * height * width
    floor_channels = _floor_channels(module)
    strips = _STRIP_MAPS[Restormer if isinstance(module, Restormer) else NAFNet]
    window = min(strip_height, height) + 2 * _RESTORMER_BLOCK_HALO  # a strip and its halo
    temporaries = strips * _widest_piece(module, width, pieces) * window * batch * 4
    # A finished strip waits (in pieces) until the next one is computed: two strips of the widest map.
    held = 2 * _map_channels_per_row(module) * min(strip_height, height) * width * batch * stored
    output = pixel_count * _out_channels(module) * 4
    return int(floor_channels * pixel_count * stored + temporaries + held + output)


def largest_strip_height(
    module: nn.Module, shape: tuple[int, ...], budget: int, dtype: torch.dtype = torch.float32, *, pieces: int = 1
) -> int | None:
    """The largest even strip height (at most the padded height) whose :func:`streamed_peak_bytes` fits ``budget``.

    Returns None when even :func:`minimum_strip_height` does not fit.
    """
    height = shape[-2]
    fixed = streamed_peak_bytes(module, shape, 0, dtype, pieces=pieces)
    per_row = streamed_peak_bytes(module, shape, 1, dtype, pieces=pieces) - fixed
    rows = (budget - fixed) // per_row if per_row > 0 else height
    strip = min(int(rows), height + height % 2) // 2 * 2
    return strip if strip >= minimum_strip_height(module) else None


# ------------------------------------------------------------------------------------------------
# Strips


@dataclass(frozen=True)
class _Plan:
    """How one streamed forward runs: strip height, the dtype windows are read in and maps stored in, layout."""

    strip: int
    compute_dtype: torch.dtype
    store_dtype: torch.dtype
    channels_last: bool
    pieces: int = 1
    between_stages: Callable[[], object] | None = None

    @classmethod
    def for_input(
        cls,
        x: Tensor,
        strip: int,
        store_dtype: torch.dtype | None,
        pieces: int,
        channels_last: bool | None,
        between_stages: Callable[[], object] | None,
    ) -> _Plan:
        device = x.device.type
        # What the forward keeps between blocks: convolution outputs, in the autocast dtype under autocast.
        kept = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        layout = is_channels_last(x) if channels_last is None else channels_last
        return cls(strip, x.dtype, store_dtype or kept, layout, pieces, between_stages)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def columns(self, width: int) -> list[tuple[int, int]]:
        """``(left, right)`` columns of each piece of a strip ``width`` columns wide (equal widths)."""
        return _piece_columns(width, self.pieces)

    def window(
        self, source: Tensor, rows: tuple[int, int], columns: tuple[int, int], halo: int
    ) -> tuple[Tensor, int, int]:
        """Rows and columns of ``source`` widened by ``halo`` (clipped to the map), in the compute dtype and
        this plan's layout, with the image row and column of its first element.
        """
        top, left = max(rows[0] - halo, 0), max(columns[0] - halo, 0)
        bottom, right = min(rows[1] + halo, source.shape[-2]), min(columns[1] + halo, source.shape[-1])
        piece = source[..., top:bottom, left:right].to(self.compute_dtype).contiguous(memory_format=self.memory_format)
        return piece, top, left

    def empty(self, like: Tensor, channels: int, height: int, width: int, dtype: torch.dtype | None = None) -> Tensor:
        """A whole map on ``like``'s device in the store dtype (or ``dtype``) and this plan's layout."""
        shape = (like.shape[0], channels, height, width)
        return torch.empty(shape, dtype=dtype or self.store_dtype, device=like.device, memory_format=self.memory_format)

    def stage_done(self) -> None:
        """The end of a step over whole maps: a stage of blocks, a down- or up-sampling."""
        if self.between_stages is not None:
            self.between_stages()

    def strips(self, height: int) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` rows of each strip of a map ``height`` rows tall."""
        for start in range(0, height, self.strip):
            yield start, min(start + self.strip, height)

    def read(self, source: Tensor, start: int, stop: int, halo: int) -> tuple[Tensor, int]:
        """Rows ``start - halo`` to ``stop + halo`` of ``source`` (a :meth:`window` as wide as the map), and
        where row ``start`` lies in them. Convolutions zero-pad the clipped edges as the whole map's do.
        """
        rows, top, _ = self.window(source, (start, stop), (0, source.shape[-1]), halo)
        return rows, start - top

    def through(
        self,
        fn: Callable[[Tensor], Tensor],
        source: Tensor,
        start: int,
        stop: int,
        halo: int,
        up: int = 1,
        down: int = 1,
    ) -> Tensor:
        """Rows ``start:stop`` of ``fn(source)``, where ``fn`` maps ``down`` rows of ``source`` to ``up`` rows.

        ``halo`` is the rows ``fn``'s convolutions reach beyond a row (in ``source`` rows); it is
        rounded up to a multiple of ``down`` so pixel-unshuffled row pairs stay aligned.
        """
        halo = -(-halo // down) * down
        window, offset = self.read(source, start * down // up, stop * down // up, halo)
        offset = offset * up // down
        return fn(window)[..., offset : offset + stop - start, :]

    def fill(self, out: Tensor, compute: Callable[[int, int], Tensor | Sequence[Tensor]]) -> Tensor:
        """``out[..., a:b, :] = compute(a, b)`` over the strips of ``out``; ``compute`` may return the strip
        as pieces side by side (written in place, never concatenated).

        ``compute`` may read ``out`` itself with a halo up to the strip height: each strip is written
        only after the next one has been computed, so a halo never sees an already updated row.
        """
        pending: tuple[int, int, list[Tensor]] | None = None
        for start, stop in self.strips(out.shape[-2]):
            strip = compute(start, stop)
            # Held until the next strip is computed: in the map's dtype (bf16 maps hold half the bytes).
            pieces = [piece.to(out.dtype) for piece in ([strip] if isinstance(strip, Tensor) else strip)]
            if pending is not None:
                _write(out, *pending)
            pending = (start, stop, pieces)
        if pending is not None:
            _write(out, *pending)
        return out


def _piece_columns(width: int, pieces: int) -> list[tuple[int, int]]:
    """``(left, right)`` columns of at most ``pieces`` equal pieces of a ``width``-column strip, none
    narrower than :data:`MINIMUM_PIECE_WIDTH` (a narrower strip is one piece)."""
    count = max(min(pieces, width // MINIMUM_PIECE_WIDTH), 1)
    bounds = [width * index // count for index in range(count + 1)]
    return list(itertools.pairwise(bounds))


def _write(out: Tensor, start: int, stop: int, pieces: list[Tensor]) -> None:
    """Rows ``start:stop`` of ``out`` from a strip's pieces, left to right."""
    left = 0
    for piece in pieces:
        out[..., start:stop, left : left + piece.shape[-1]] = piece
        left += piece.shape[-1]


def _check_supported(module: nn.Module) -> None:
    if not supports_streaming(module):
        raise ConfigError(f"Expected a Restormer or NAFNet module to stream, but got {type(module).__name__}")


def _floor_channels(module: nn.Module) -> float:
    """The whole maps kept between blocks at their peak, in channels per pixel of the full-size input."""
    if isinstance(module, Restormer):
        dim = module.patch_embed.proj.out_channels
        return 2 * dim + dim / 2 + dim / 4 + dim / 8  # [up(dec2), enc1] and the other encoder levels
    width = module.intro.out_channels
    levels = len(module.encoders)
    # Encoder outputs kept for the skips (level l: width * 2**l channels on 1/4**l of the pixels), the
    # map being processed, and with TLC the whole maps of the module's local pooling at full width.
    floor = sum(width * 2.0**-level for level in range(levels + 1)) + width
    if any(isinstance(block.sca[0], LocalAvgPool2d) for block in _nafnet_blocks(module)):
        floor += _TLC_WHOLE_MAPS * width
    return floor


def _widest_piece(module: nn.Module, width: int, pieces: int) -> int:
    """Values per row of the widest strip-sized map of any block: its channels times its piece's width.

    A level-l Restormer map is ``width / 2**l`` wide, cut into at most ``pieces`` pieces no narrower
    than :data:`MINIMUM_PIECE_WIDTH` (so narrow deep levels take fewer, wider pieces), each widened by
    its halo; the widest map is a GDFN hidden half (rounded up as :func:`aligned_channels` does).
    NAFNet's blocks run on whole strips; their widest map has twice the level's channels.
    """
    if isinstance(module, Restormer):
        widest = 0
        for name, block in _restormer_blocks(module):
            level_width = max(width >> _RESTORMER_LEVELS[name], 1)
            piece = max(right - left for left, right in _piece_columns(level_width, pieces)) + 2 * _RESTORMER_BLOCK_HALO
            hidden = block.ffn.project_out.in_channels
            widest = max(widest, (hidden + aligned_channels(hidden)) * piece)
        return widest
    return 2 * module.intro.out_channels * width


def _map_channels_per_row(module: nn.Module) -> int:
    """Channels of the widest whole map per row of the full-width image (a level-l map: ``2**l`` times
    the channels on ``1/2**l`` of the width)."""
    if isinstance(module, Restormer):
        return 2 * module.patch_embed.proj.out_channels  # level 1's [up(dec2), enc1], widest per row
    return module.intro.out_channels


def _out_channels(module: nn.Module) -> int:
    return module.output.out_channels if isinstance(module, Restormer) else module.ending.out_channels


# ------------------------------------------------------------------------------------------------
# Restormer

_RESTORMER_LEVELS = {
    "encoder_level1": 0,
    "encoder_level2": 1,
    "encoder_level3": 2,
    "latent": 3,
    "decoder_level3": 2,
    "decoder_level2": 1,
    "decoder_level1": 0,
    "refinement": 0,
}


def _restormer_blocks(model: Restormer) -> Iterator[tuple[str, TransformerBlock]]:
    for name in _RESTORMER_LEVELS:
        for block in getattr(model, name):
            yield name, block


def _restormer(model: Restormer, inp: Tensor, plan: _Plan) -> Tensor:
    """Restormer's forward with every map built strip by strip (see the module docstring)."""
    height, width = inp.shape[-2:]
    dim = model.patch_embed.proj.out_channels
    # Level 1 holds [up2_1(dec2), enc1] from the start: the decoder's concatenation costs nothing.
    level1 = plan.empty(inp, 2 * dim, height, width)
    enc1 = plan.fill(level1[:, dim:], lambda a, b: plan.through(model.patch_embed.proj, inp, a, b, 1))
    _restormer_stage(model.encoder_level1, enc1, plan)
    enc2 = _down(model.down1_2, enc1, plan)
    _restormer_stage(model.encoder_level2, enc2, plan)
    enc3 = _down(model.down2_3, enc2, plan)
    _restormer_stage(model.encoder_level3, enc3, plan)
    latent = _down(model.down3_4, enc3, plan)
    _restormer_stage(model.latent, latent, plan)
    _up_and_reduce(model.up4_3, model.reduce_chan_level3, latent, enc3, plan)
    del latent
    _restormer_stage(model.decoder_level3, enc3, plan)
    _up_and_reduce(model.up3_2, model.reduce_chan_level2, enc3, enc2, plan)
    del enc3
    _restormer_stage(model.decoder_level2, enc2, plan)
    _up(model.up2_1, enc2, level1[:, :dim], plan)
    del enc2
    _restormer_stage(model.decoder_level1, level1, plan)
    _restormer_stage(model.refinement, level1, plan)
    out = plan.empty(inp, model.output.out_channels, height, width, dtype=plan.compute_dtype)

    def output(start: int, stop: int) -> Tensor:
        if not model.dual_pixel_task:
            return plan.through(model.output, level1, start, stop, 1) + inp[..., start:stop, :]
        window, offset = plan.read(level1, start, stop, 1)
        first = start - offset  # the window's first row
        # The level-1 embedding was overwritten by the encoder: recompute its rows from the input.
        embedded = plan.through(model.patch_embed.proj, inp, first, first + window.shape[-2], 1)
        full = model.output(window + model.skip_conv(embedded))
        return full[..., offset : offset + stop - start, :]

    return plan.fill(out, output)


def _down(down: nn.Module, source: Tensor, plan: _Plan) -> Tensor:
    """``down(source)`` (3x3 convolution, pixel-unshuffle) as a new map, strip by strip."""
    conv = down.body[0]
    out = plan.empty(source, conv.out_channels * 4, source.shape[-2] // 2, source.shape[-1] // 2)
    plan.fill(out, lambda a, b: plan.through(down, source, a, b, 1, down=2))
    plan.stage_done()
    return out


def _up(up: nn.Module, low: Tensor, out: Tensor, plan: _Plan) -> None:
    """``out = up(low)`` (3x3 convolution, pixel-shuffle), strip by strip."""
    plan.fill(out, lambda a, b: plan.through(up, low, a, b, 1, up=2))
    plan.stage_done()


def _up_and_reduce(up: nn.Module, reduce: nn.Conv2d, low: Tensor, skip: Tensor, plan: _Plan) -> None:
    """``skip = reduce(cat([up(low), skip]))``, written over ``skip`` (the 1x1 ``reduce`` reads only its own rows)."""

    def rows(start: int, stop: int) -> Tensor:
        upsampled = plan.through(up, low, start, stop, 1, up=2)
        return reduce(torch.cat([upsampled, plan.read(skip, start, stop, 0)[0]], 1))

    plan.fill(skip, rows)
    plan.stage_done()


def _restormer_stage(stage: nn.Sequential, x: Tensor, plan: _Plan) -> None:
    for block in stage:
        _restormer_block(block, x, plan)
    plan.stage_done()


def _restormer_block(block: TransformerBlock, x: Tensor, plan: _Plan) -> None:
    """``x + MDTA(LN(x))`` then ``+ GDFN(LN(.))``, written over ``x``: two passes over the strips."""
    attn = block.attn
    batch, channels, height, width = x.shape
    per_head = channels // attn.num_heads
    pieces = plan.columns(width)
    ffn = _aligned_feed_forward(block.ffn)  # once per block, not per piece
    # Pass 1: the sums over pixels the attention needs, accumulated in fp32 (also under autocast).
    grams = x.new_zeros((batch, attn.num_heads, per_head, per_head), dtype=torch.float32)
    query_squares = x.new_zeros((batch, channels), dtype=torch.float32)
    key_squares = torch.zeros_like(query_squares)
    for start, stop in plan.strips(height):
        for left, right in pieces:
            normed = block.norm1(plan.window(x, (start, stop), (left, right), 1)[0])
            # q and k of the piece's own pixels: contiguous maps unless the piece meets the image's edge.
            edges = _edges((start, stop), (left, right), 1, height, width)
            query, key = (pixels(attn.qkv_part(normed, index, edges)) for index in range(2))
            grams += head_grams(query, key, attn.num_heads)
            query_squares += pixel_squares(query)
            key_squares += pixel_squares(key)
    mixing = attn.mixing(grams, query_squares, key_squares)

    # Pass 2: attention output, residual, feed-forward network and residual, piece by piece. Each 3x3
    # convolution spoils the edge rows and columns of a window inside the image, so each stage after
    # one runs on one pixel fewer at each such edge: the halo is paid by the cheap stages, not by all.
    def piece(rows: tuple[int, int], columns: tuple[int, int]) -> Tensor:
        window, top, first = plan.window(x, rows, columns, _RESTORMER_BLOCK_HALO)
        # Rows and columns the GDFN's dwconv reads: one beyond the piece, inside the image.
        low, high = max(rows[0] - 1, 0) - top, min(rows[1] + 1, height) - top
        near, far = max(columns[0] - 1, 0) - first, min(columns[1] + 1, width) - first
        edges = _edges(rows, columns, _RESTORMER_BLOCK_HALO, height, width)
        value = attn.qkv_part(block.norm1(window), 2, edges)
        mid = window[..., low:high, near:far] + attn.project(pixels(value), mixing, high - low)
        own = (
            ...,
            slice(rows[0] - top - low, rows[1] - top - low),
            slice(columns[0] - first - near, columns[1] - first - near),
        )
        gated = ffn.gated(block.norm2(mid), _edges(rows, columns, 1, height, width))
        return mid[own] + ffn.project_out(gated)

    plan.fill(x, lambda start, stop: [piece((start, stop), columns) for columns in pieces])


def _aligned_feed_forward(ffn: FeedForward) -> FeedForward:
    """``ffn`` with its hidden width rounded up to whole vector registers (:func:`aligned_channels`).

    A copy: each half of ``project_in`` and ``dwconv`` gets zero filters appended and ``project_out``
    zero columns, so the extra channels are exactly zero and add exactly nothing (Restormer's 255
    channels for dim 48 run as 256). The module itself keeps the official widths (what the whole
    forward, ``restore profile`` and ONNX exports see).
    """
    hidden = ffn.project_out.in_channels
    zeros = aligned_channels(hidden)
    if not zeros:
        return ffn
    width = hidden + zeros

    def after_each_half(tensor: Tensor) -> nn.Parameter:
        halves = [torch.cat([half, half.new_zeros((zeros, *half.shape[1:]))]) for half in tensor.chunk(2)]
        return nn.Parameter(torch.cat(halves), requires_grad=False)

    aligned = copy.deepcopy(ffn)
    for conv in (aligned.project_in, aligned.dwconv):
        conv.weight = after_each_half(conv.weight)
        if conv.bias is not None:
            conv.bias = after_each_half(conv.bias)
        conv.out_channels = 2 * width
    aligned.dwconv.in_channels = aligned.dwconv.groups = 2 * width
    weight = aligned.project_out.weight
    zero_columns = weight.new_zeros((weight.shape[0], zeros, *weight.shape[2:]))
    aligned.project_out.weight = nn.Parameter(torch.cat([weight, zero_columns], 1), requires_grad=False)
    aligned.project_out.in_channels = width
    return aligned


def _edges(rows: tuple[int, int], columns: tuple[int, int], halo: int, height: int, width: int) -> Sides:
    """The sides at which the map's edge clipped a window reaching ``halo`` beyond ``rows`` x ``columns``
    of a ``height`` x ``width`` map (see :func:`~restorecli.archs.ops.conv_part`).
    """
    return (
        int(columns[0] < halo),
        int(columns[1] + halo > width),
        int(rows[0] < halo),
        int(rows[1] + halo > height),
    )


# ------------------------------------------------------------------------------------------------
# NAFNet


def _nafnet_blocks(model: NAFNet) -> Iterator[NAFBlock]:
    for stage in (*model.encoders, model.middle_blks, *model.decoders):
        yield from (module for module in stage.modules() if isinstance(module, NAFBlock))


def _nafnet(model: NAFNet, inp: Tensor, plan: _Plan) -> Tensor:
    """NAFNet's forward (zero-pad, U-Net with additive skips, crop) with every map built strip by strip."""
    height, width = inp.shape[-2:]
    inp = model.pad_input(inp)
    x = plan.empty(inp, model.intro.out_channels, *inp.shape[-2:])
    plan.fill(x, lambda a, b: plan.through(model.intro, inp, a, b, 1))
    skips = []
    for encoder, down in zip(model.encoders, model.downs, strict=True):
        _nafnet_stage(encoder, x, plan)
        skips.append(x)
        x = _nafnet_down(down, x, plan)
    _nafnet_stage(model.middle_blks, x, plan)
    for decoder, up in zip(model.decoders, model.ups, strict=True):
        skip = skips.pop()
        _nafnet_up(up, x, skip, plan)
        x = skip
        _nafnet_stage(decoder, x, plan)
    out = plan.empty(inp, model.ending.out_channels, *inp.shape[-2:], dtype=plan.compute_dtype)
    plan.fill(out, lambda a, b: plan.through(model.ending, x, a, b, 1) + inp[..., a:b, :])
    return out[:, :, :height, :width]


def _nafnet_down(down: nn.Conv2d, source: Tensor, plan: _Plan) -> Tensor:
    """The 2x2 stride-2 convolution as a new map (no halo: windows do not overlap)."""
    out = plan.empty(source, down.out_channels, source.shape[-2] // 2, source.shape[-1] // 2)
    plan.fill(out, lambda a, b: plan.through(down, source, a, b, 0, down=2))
    plan.stage_done()
    return out


def _nafnet_up(up: nn.Module, low: Tensor, skip: Tensor, plan: _Plan) -> None:
    """``skip = up(low) + skip`` (1x1 convolution, pixel-shuffle) written over ``skip``."""
    plan.fill(skip, lambda a, b: plan.through(up, low, a, b, 0, up=2) + plan.read(skip, a, b, 0)[0])
    plan.stage_done()


def _nafnet_stage(stage: nn.Sequential, x: Tensor, plan: _Plan) -> None:
    for block in stage:
        _nafnet_block(block, x, plan)
    plan.stage_done()


def _nafnet_block(block: NAFBlock, x: Tensor, plan: _Plan) -> None:
    """One NAFBlock written over ``x``: the channel attention from a first pass, the rest in a second."""
    pool = block.sca[0]
    height, width = x.shape[-2:]
    if _pools_globally(pool, height, width):
        total = x.new_zeros((x.shape[0], block.conv3.in_channels), dtype=torch.float32)
        for start, stop in plan.strips(height):
            total += plan.through(block.gated, x, start, stop, _NAFNET_BLOCK_HALO).sum((2, 3), dtype=torch.float32)
        attention = block.sca[1]((total / (height * width))[..., None, None].to(plan.compute_dtype))

        def rows(start: int, stop: int) -> Tensor:
            gated = plan.through(block.gated, x, start, stop, _NAFNET_BLOCK_HALO)
            return block.finish(plan.read(x, start, stop, 0)[0], gated, attention)

        plan.fill(x, rows)
        return
    # TLC with windows smaller than the map: the module's own pooling over the whole gated map.
    gated_map = plan.empty(x, block.conv3.in_channels, height, width)
    plan.fill(gated_map, lambda a, b: plan.through(block.gated, x, a, b, _NAFNET_BLOCK_HALO))
    attention_map = block.sca(gated_map.to(plan.compute_dtype))
    plan.fill(
        x,
        lambda a, b: block.finish(
            plan.read(x, a, b, 0)[0], plan.read(gated_map, a, b, 0)[0], attention_map[..., a:b, :]
        ),
    )


def _pools_globally(pool: nn.Module, height: int, width: int) -> bool:
    """Whether ``pool`` averages the whole map (TLC does once its window covers the map)."""
    if isinstance(pool, LocalAvgPool2d):
        return pool.kernel_size[0] >= height and pool.kernel_size[1] >= width
    return True
