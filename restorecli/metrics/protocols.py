"""The papers' evaluation protocols: channel, border crop and metrics, by name (``restore eval --protocol``).

A score means little without the code that produced it: the same Restormer output reads 0.97 with a
3-D SSIM and 0.84 with BasicSR's per-channel SSIM. Each preset below names the script it reproduces;
the zoo (``restorecli.zoo.pretrained``) names the preset behind every paper score it lists.

How the MATLAB evaluation of Restormer's GoPro/HIDE results (``Motion_Deblurring/evaluate_gopro_hide.m``)
differs from BasicSR's SSIM: the script calls MATLAB's built-in ``ssim(input, gt)`` on the uint8 RGB
arrays, and MATLAB treats an ``H x W x 3`` array as a *volume*: one 11x11x11 Gaussian (sigma 1.5) filters
height, width and channel together, the borders (and the channel axis, ``RRRRRGBBBBB``) are padded by
replication, and the SSIM map is averaged over the whole ``H x W x 3`` volume, in single precision with
the range of the class (255). BasicSR filters each channel with an 11x11 Gaussian, keeps only the
valid region (5 pixels dropped at each edge, no padding) and averages the three per-channel SSIMs.
NAFNet's ``ssim3d`` reproduces the MATLAB formula, so both map to the ``ssim3d`` metric here.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from restorecli.errors import ConfigError


@dataclass(frozen=True)
class Protocol:
    """One paper's way of scoring restored images.

    Attributes:
        name: what ``--protocol`` takes.
        metrics: metric names (:data:`restorecli.metrics.metric.METRICS`), in print order.
        y_channel / round_y: score the BT.601 luma, rounded to integers as MATLAB's ``rgb2ycbcr`` on
            uint8 does; RGB (every stored channel) otherwise.
        crop_border: pixels dropped at each edge first.
        source: the script or configuration it reproduces, and what remains different.
    """

    name: str
    metrics: tuple[str, ...]
    source: str
    y_channel: bool = False
    round_y: bool = False
    crop_border: int = 0


def _super_resolution(scale: int) -> Protocol:
    return Protocol(
        name=f"sr-x{scale}",
        metrics=("psnr", "ssim"),
        y_channel=True,
        crop_border=scale,
        source=(
            f"x{scale} super-resolution as BasicSR and SwinIR test it: Y channel (not rounded), {scale} pixels "
            "cropped at each edge; the older MATLAB scripts (EDSR, RCAN) round Y: for those use "
            f"--y-channel --round-y --crop-border {scale} instead of --protocol"
        ),
    )


_NAFNET_3D = "NAFNet basicsr calculate_psnr / calculate_ssim(ssim3d=True), crop 0, RGB"
PROTOCOLS: dict[str, Protocol] = {
    protocol.name: protocol
    for protocol in (
        Protocol(
            name="restormer-derain",
            metrics=("psnr", "ssim"),
            y_channel=True,
            round_y=True,
            source=(
                "Restormer Deraining/evaluate_PSNR_SSIM.m: MATLAB rgb2ycbcr on uint8 (Y rounded), "
                "PSNR at 255, Wang's SSIM_index (11x11 Gaussian, valid region)"
            ),
        ),
        Protocol(
            name="restormer-gopro",
            metrics=("psnr", "ssim3d"),
            source=(
                "Restormer Motion_Deblurring/evaluate_gopro_hide.m: MATLAB psnr and ssim on uint8 RGB; "
                "ssim filters the H x W x 3 array as a volume (3-D Gaussian, replicate padding)"
            ),
        ),
        Protocol(
            name="restormer-sidd",
            metrics=("psnr", "ssim3d"),
            source=(
                "Restormer Denoising/evaluate_sidd.m: MATLAB psnr and ssim on the RGB blocks, scored as "
                "restormer-gopro is; the reference scores the float output (Idenoised.mat, before 8-bit "
                "rounding), so 8-bit files score slightly lower"
            ),
        ),
        Protocol(
            name="restormer-dpdd",
            metrics=("psnr", "ssim-skimage"),
            source=(
                "Restormer Defocus_Deblurring/test_*_defocus_deblur.py: PSNR and scikit-image "
                "structural_similarity(data_range=1, multichannel=True) with its defaults, on the float "
                "output (before 8-bit rounding) against the 8-bit targets"
            ),
        ),
        Protocol(
            name="nafnet-sidd",
            metrics=("psnr", "ssim3d"),
            source=f"{_NAFNET_3D} (options/test/SIDD: scored on the float output, i.e. before 8-bit rounding)",
        ),
        Protocol(name="nafnet-gopro", metrics=("psnr", "ssim3d"), source=f"{_NAFNET_3D} (options/test/GoPro)"),
        Protocol(name="nafnet-reds", metrics=("psnr", "ssim3d"), source=f"{_NAFNET_3D} (options/test/REDS)"),
        Protocol(
            name="denoise-rgb",
            metrics=("psnr", "ssim"),
            source="Gaussian colour denoising (Restormer, BasicSR): every channel, no crop, BasicSR PSNR/SSIM",
        ),
        Protocol(
            name="denoise-gray",
            metrics=("psnr", "ssim"),
            source="Gaussian grey denoising (Restormer, BasicSR): the grey plane, no crop, BasicSR PSNR/SSIM",
        ),
        Protocol(
            name="restorecli-val",
            metrics=("psnr", "ssim"),
            source="restorecli's training validation (model cards): RGB, no crop, BasicSR PSNR/SSIM",
        ),
        *(_super_resolution(scale) for scale in (2, 3, 4)),
    )
}
"""Every preset by name. Presets set channel, crop and metrics; the data range stays the bit depth's."""


def get_protocol(name: str) -> Protocol:
    """The preset called ``name``; ConfigError naming close matches otherwise."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(PROTOCOLS), n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"Expected a protocol among {', '.join(PROTOCOLS)}, but got {name!r}{hint}") from None
