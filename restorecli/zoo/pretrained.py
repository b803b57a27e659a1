"""Named pretrained entries (timm's PretrainedCfg idea): an explicit list, validated by tests.

Each entry says which architecture and config to build, which task it serves, where its weights come
from, and what its paper reports, so ``restore models`` and the loader read one source of truth.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from restorecli.errors import ConfigError, UnknownModelError
from restorecli.zoo import architectures

logger = logging.getLogger("restorecli.zoo")

Task = str  # "derain", "deblur", "defocus-deblur", "denoise", "denoise-gray", "real-denoise"
COMMAND_TASKS: dict[str, tuple[Task, ...]] = {
    "derain": ("derain",),
    "deblur": ("deblur", "defocus-deblur"),
    "denoise": ("denoise", "denoise-gray", "real-denoise"),
    "upscale": ("upscale",),
}

_RESTORMER_RELEASE = "https://github.com/swz30/Restormer/releases/download/v1.0/"
# NAFNet is released on Google Drive only; this form skips Drive's "cannot scan for viruses" page.
_GOOGLE_DRIVE = "https://drive.usercontent.google.com/download?id={id}&export=download&confirm=t"
_RESTORMER_LICENSE = "Academic Public License (non-commercial)"
_NAFNET_LICENSE = "MIT"
_RESTORMER_ORIGIN = "Zamir et al., Restormer, CVPR 2022 (github.com/swz30/Restormer)"
_NAFNET_ORIGIN = "Chen et al., Simple Baselines for Image Restoration, ECCV 2022 (github.com/megvii-research/NAFNet)"
# SAFMN's bicubic (BI) models are on Google Drive and the authors' Hugging Face mirror; the
# real-world models are GitHub release assets. CAMixerSR publishes its weights in the repository.
_SAFMN_MIRROR = "https://huggingface.co/Meloo/SAFMN/resolve/main/"
_SAFMN_RELEASE = "https://github.com/sunny2109/SAFMN/releases/download/v0.1.0/"
_CAMIXERSR_FILES = "https://github.com/icandle/CAMixerSR/raw/main/pretrained_models/LightSR/"
_SR_LICENSE = "Apache-2.0"
_SAFMN_ORIGIN = (
    "Sun et al., Spatially-Adaptive Feature Modulation for Efficient Image SR, ICCV 2023 (github.com/sunny2109/SAFMN)"
)
_CAMIXERSR_ORIGIN = "Wang et al., CAMixerSR: Only Details Need More Attention, CVPR 2024 (github.com/icandle/CAMixerSR)"
_SR_DATASETS = ("Set5", "Set14", "B100", "Urban100", "Manga109")
_BUNDLED_ORIGIN = (
    "trained by restorecli: rebuild it with `restore train` and the `recipes/{task}*.toml` stages the README lists"
)


@dataclass(frozen=True)
class PretrainedEntry:
    """One named set of weights and how to build the network that takes them.

    Attributes:
        name: registry name used on the command line (``--model``).
        arch / config: architecture registry name and named config (or explicit kwargs).
        task: what the weights restore.
        filename: weight file name in ``weights/``, the cache, or the download target.
        url: official download address, or None for weights shipped in ``weights/``.
        sha256: expected digest of the file when published/known, else None.
        license / origin: terms and provenance, shown by ``restore models``.
        paper_score: what the authors report, as "dataset PSNR/SSIM".
        protocol: the ``restore eval --protocol`` preset that reproduces how that score (or, for
            restorecli's own weights, the model card's) was measured; None when no score is given.
        variant: the architecture variant the weights run in (:func:`~restorecli.zoo.architectures.arch_variant`;
            ``tlc`` for the NAFNet releases the authors evaluated with the test-time local converter).
        default_for: the command whose default model this is, if any.
    """

    name: str
    arch: str
    config: str | Mapping[str, Any]
    task: Task
    filename: str
    url: str | None
    license: str
    origin: str
    paper_score: str = ""
    protocol: str | None = None
    sha256: str | None = None
    variant: str | None = None
    default_for: str | None = None
    notes: str = field(default="", compare=False)

    def display_facts(self) -> dict[str, Any]:
        """The facts worth showing next to a loaded model."""
        return {
            "license": self.license,
            "origin": self.origin,
            "paper_score": self.paper_score,
            "protocol": self.protocol,
        }


# The script behind each Restormer score, by task (restorecli.metrics.protocols names what each computes).
_RESTORMER_PROTOCOLS = {
    "derain": "restormer-derain",
    "deblur": "restormer-gopro",
    "defocus-deblur": "restormer-dpdd",
    "denoise": "denoise-rgb",
    "denoise-gray": "denoise-gray",
    "real-denoise": "restormer-sidd",
}


def _restormer(name: str, config: str, task: Task, file: str, score: str) -> PretrainedEntry:
    return PretrainedEntry(
        name=f"restormer-{name}",
        arch="restormer",
        config=config,
        task=task,
        filename=f"{file}.pth",
        url=_RESTORMER_RELEASE + f"{file}.pth",
        license=_RESTORMER_LICENSE,
        origin=_RESTORMER_ORIGIN,
        paper_score=score,
        protocol=_RESTORMER_PROTOCOLS[task],
    )


def _nafnet(name: str, file: str, task: Task, drive_id: str, score: str, tlc: bool) -> PretrainedEntry:
    return PretrainedEntry(
        name=f"nafnet-{name}",
        arch="nafnet",
        config=name,
        task=task,
        filename=f"{file}.pth",
        url=_GOOGLE_DRIVE.format(id=drive_id),
        license=_NAFNET_LICENSE,
        origin=_NAFNET_ORIGIN,
        paper_score=score,
        protocol=f"nafnet-{name.split('-')[0]}",  # sidd, gopro or reds: NAFNet's options/test/<set>
        variant="tlc" if tlc else None,
    )


def _bundled(task: str, config: str, arch: str = "nafnet", protocol: str = "restorecli-val") -> PretrainedEntry:
    return PretrainedEntry(
        name=f"restorecli-{task}",
        arch=arch,
        config=config,
        task=task,
        filename=f"restorecli-{task}.safetensors",
        url=None,
        license="MIT; trained on BSDS (non-commercial)",
        origin=_BUNDLED_ORIGIN.format(task=task),
        paper_score="see the model card beside the weights",
        protocol=protocol,
        default_for=task,
    )


def _sr_scores(scale: int, scores: str) -> str:
    """``"a/b c/d ..."`` PSNR/SSIM of the five SR benchmarks -> the paper-score line (protocol stated)."""
    pairs = scores.split()
    if len(pairs) != len(_SR_DATASETS):
        raise ValueError(f"Expected {len(_SR_DATASETS)} PSNR/SSIM pairs, but got {scores!r}")
    listed = ", ".join(f"{name} {pair}" for name, pair in zip(_SR_DATASETS, pairs))
    return f"x{scale} Y-channel PSNR/SSIM, border crop {scale}: {listed}"


def _safmn(scale: int, scores: str) -> PretrainedEntry:
    return PretrainedEntry(
        name=f"safmn-x{scale}",
        arch="safmn",
        config=f"x{scale}",
        task="upscale",
        filename=f"SAFMN_DF2K_x{scale}.pth",
        url=f"{_SAFMN_MIRROR}SAFMN_DF2K_x{scale}.pth",
        license=_SR_LICENSE,
        origin=_SAFMN_ORIGIN,
        paper_score=_sr_scores(scale, scores),
        protocol=f"sr-x{scale}",
        notes="efficient SAFMN trained on DF2K with bicubic (MATLAB imresize) inputs",
    )


def _safmn_real(scale: int, file: str) -> PretrainedEntry:
    return PretrainedEntry(
        name=f"safmn-large-real-x{scale}",
        arch="safmn",
        config=f"large-x{scale}",
        task="upscale",
        filename=f"{file}.pth",
        url=f"{_SAFMN_RELEASE}{file}.pth",
        license=_SR_LICENSE,
        origin=_SAFMN_ORIGIN,
        paper_score="real-world model (Real-ESRGAN degradations, GAN loss, LSDIR): no PSNR reported",
        notes="for real photos; not comparable on bicubic benchmarks",
    )


ENTRIES: tuple[PretrainedEntry, ...] = (
    _bundled("derain", "lite-w16-full"),
    _bundled("deblur", "lite-w16-deeper"),
    _bundled("denoise", "lite-w16-full"),
    _restormer(
        "derain", "deraining", "derain", "deraining", "Y-channel mean of 5 sets 33.96/0.935; Rain100L 38.99/0.978"
    ),
    _restormer("deblur-motion", "motion-deblurring", "deblur", "motion_deblurring", "GoPro 32.92/0.961"),
    _restormer(
        "deblur-defocus-single",
        "defocus-deblurring-single",
        "defocus-deblur",
        "single_image_defocus_deblurring",
        "DPDD combined 25.98/0.811",
    ),
    _restormer(
        "deblur-defocus-dual",
        "defocus-deblurring-dual",
        "defocus-deblur",
        "dual_pixel_defocus_deblurring",
        "DPDD combined 26.66/0.833",
    ),
    *(
        _restormer(f"denoise-color-{level}", "denoise-color", "denoise", f"gaussian_color_denoising_{level}", score)
        for level, score in (
            ("blind", "CBSD68 sigma15/25/50 34.39/31.78/28.59"),
            ("sigma15", "CBSD68 34.40"),
            ("sigma25", "CBSD68 31.79"),
            ("sigma50", "CBSD68 28.60"),
        )
    ),
    *(
        _restormer(f"denoise-gray-{level}", "denoise-gray", "denoise-gray", f"gaussian_gray_denoising_{level}", score)
        for level, score in (
            ("blind", "BSD68 sigma15/25/50 32.50/30.15/27.35 (MMagic re-run)"),
            ("sigma15", "BSD68 32.50 (MMagic re-run)"),
            ("sigma25", "BSD68 30.16 (MMagic re-run)"),
            ("sigma50", "BSD68 27.33 (MMagic re-run)"),
        )
    ),
    _restormer("denoise-real", "real-denoising", "real-denoise", "real_denoising", "SIDD 40.02/0.960"),
    _nafnet(
        "sidd-width32",
        "NAFNet-SIDD-width32",
        "real-denoise",
        "1lsByk21Xw-6aW7epCwOQxvm6HYCQZPHZ",
        "SIDD 39.97/0.960",
        tlc=False,
    ),
    _nafnet(
        "sidd-width64",
        "NAFNet-SIDD-width64",
        "real-denoise",
        "14Fht1QQJ2gMlk4N1ERCRuElg8JfjrWWR",
        "SIDD 40.30/0.961",
        tlc=False,
    ),
    _nafnet(
        "gopro-width32",
        "NAFNet-GoPro-width32",
        "deblur",
        "1Fr2QadtDCEXg6iwWX8OzeZLbHOx2t5Bj",
        "GoPro 32.87/0.961",
        tlc=True,
    ),
    _nafnet(
        "gopro-width64",
        "NAFNet-GoPro-width64",
        "deblur",
        "1S0PVRbyTakYY9a82kujgZLbMihfNBLfC",
        "GoPro 33.71/0.967",
        tlc=True,
    ),
    _nafnet(
        "reds-width64",
        "NAFNet-REDS-width64",
        "deblur",
        "14D4V4raNYIOhETfcuuLI3bGLB-OYIv6X",
        "REDS val300 29.09/0.867",
        tlc=True,
    ),
    _safmn(2, "38.00/0.9605 33.54/0.9177 32.16/0.8995 31.84/0.9256 38.71/0.9771"),
    _safmn(3, "34.34/0.9267 30.33/0.8418 29.08/0.8048 27.95/0.8474 33.52/0.9437"),
    _safmn(4, "32.18/0.8948 28.60/0.7813 27.58/0.7359 25.97/0.7809 30.43/0.9063"),
    _safmn_real(2, "SAFMN_L_Real_LSDIR_x2"),
    _safmn_real(4, "SAFMN_L_Real_LSDIR_x4-v2"),
    PretrainedEntry(
        name="camixersr-x4",
        arch="camixersr",
        config="x4",
        task="upscale",
        filename="CAMixerSRx4_DF.pth",
        url=f"{_CAMIXERSR_FILES}CAMixerSRx4_DF.pth",
        license=_SR_LICENSE,
        origin=_CAMIXERSR_ORIGIN,
        paper_score=_sr_scores(4, "32.51/0.8988 28.82/0.7870 27.72/0.7416 26.63/0.8012 31.18/0.9166"),
        protocol="sr-x4",
        notes="lightweight CAMixerSR (60 channels, ratio 0.5) trained on DF2K; attention-window count depends on content",
    ),
    _bundled("upscale", "x4", arch="safmn", protocol="sr-x4"),
)

_BY_NAME: dict[str, PretrainedEntry] = {entry.name: entry for entry in ENTRIES}


def has_entry(name: str) -> bool:
    """True when ``name`` is a registered entry."""
    return name in _BY_NAME


def unknown_name_message(name: str) -> str:
    """A one-line error for an unknown name, with close matches when there are any."""
    close = difflib.get_close_matches(name, list(_BY_NAME), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `restore models` lists them"
    return f"Expected a zoo model name or a checkpoint file, but got {name!r}{hint}"


def get_entry(name: str) -> PretrainedEntry:
    """The entry called ``name``; UnknownModelError with suggestions otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownModelError(unknown_name_message(name)) from None


def default_for(command: str) -> PretrainedEntry:
    """The model a command (``derain``/``deblur``/``denoise``/``upscale``) uses when ``--model`` is not given.

    Raises:
        UnknownModelError: the command has no default.
    """
    for entry in ENTRIES:
        if entry.default_for == command:
            return entry
    raise UnknownModelError(f"Expected a default model for {command!r}, but none is registered")


def entry_scale(entry: PretrainedEntry) -> int:
    """Output side / input side of an entry's network (1 for restoration)."""
    return architectures.get_arch(entry.arch).scale(architectures.resolve_config(entry.arch, entry.config))


def model_for_command(command: str, model: str | None, scale: int | None = None) -> str:
    """The model a task command runs: ``model`` or the command's default; warns on a task mismatch.

    ``scale`` (``restore upscale --scale``) without ``model`` picks the command's default when its
    scale fits, else the first entry of the command's tasks with that scale.

    Raises:
        ConfigError: no entry of the command's tasks has that scale (the message lists those that exist).
        WeightsNotFoundError: the default is needed and not trained yet (see :func:`default_for`).
    """
    if model is None and scale is not None:
        candidates = [entry for entry in ENTRIES if entry.task in COMMAND_TASKS[command]]
        fitting = [entry for entry in candidates if entry_scale(entry) == scale]
        if not fitting:
            scales = sorted({entry_scale(entry) for entry in candidates})
            raise ConfigError(
                f"Expected --scale among {', '.join(map(str, scales))} (the zoo's {command} models), but got {scale}"
            )
        chosen = min(fitting, key=lambda entry: entry.default_for != command)  # the default first
        model = default_for(command).name if chosen.default_for == command else chosen.name
    name = model or default_for(command).name
    if has_entry(name) and get_entry(name).task not in COMMAND_TASKS[command]:
        logger.warning("%s is a %s model, run by `restore %s`", name, get_entry(name).task, command)
    return name


def check_scale(name: str, model_scale: int, scale: int | None) -> None:
    """Refuse a model whose scale is not the ``--scale`` asked for (None: any scale).

    Raises:
        ConfigError: the scales differ.
    """
    if scale is not None and model_scale != scale:
        raise ConfigError(f"Expected a model that upscales x{scale} (--scale), but {name} upscales x{model_scale}")


def entries_matching(arch: str, kwargs: Mapping[str, Any]) -> list[PretrainedEntry]:
    """Entries whose architecture and resolved config equal ``arch``/``kwargs`` (to name a stray file)."""
    return [
        entry
        for entry in ENTRIES
        if entry.arch == arch and architectures.resolve_config(entry.arch, entry.config) == dict(kwargs)
    ]
