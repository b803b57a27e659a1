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

from restorecli.errors import UnknownModelError
from restorecli.zoo import architectures

logger = logging.getLogger("restorecli.zoo")

Task = str  # "derain", "deblur", "defocus-deblur", "denoise", "denoise-gray", "real-denoise"
COMMAND_TASKS: dict[str, tuple[Task, ...]] = {
    "derain": ("derain",),
    "deblur": ("deblur", "defocus-deblur"),
    "denoise": ("denoise", "denoise-gray", "real-denoise"),
}

_RESTORMER_RELEASE = "https://github.com/swz30/Restormer/releases/download/v1.0/"
# NAFNet is released on Google Drive only; this form skips Drive's "cannot scan for viruses" page.
_GOOGLE_DRIVE = "https://drive.usercontent.google.com/download?id={id}&export=download&confirm=t"
_RESTORMER_LICENSE = "Academic Public License (non-commercial)"
_NAFNET_LICENSE = "MIT"
_RESTORMER_ORIGIN = "Zamir et al., Restormer, CVPR 2022 (github.com/swz30/Restormer)"
_NAFNET_ORIGIN = "Chen et al., Simple Baselines for Image Restoration, ECCV 2022 (github.com/megvii-research/NAFNet)"
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
        tlc: run NAFNet with the test-time local converter, as the official evaluation does.
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
    sha256: str | None = None
    tlc: bool = False
    default_for: str | None = None
    notes: str = field(default="", compare=False)

    def display_facts(self) -> dict[str, Any]:
        """The facts worth showing next to a loaded model."""
        return {"license": self.license, "origin": self.origin, "paper_score": self.paper_score}


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
        tlc=tlc,
    )


def _bundled(task: str, config: str) -> PretrainedEntry:
    return PretrainedEntry(
        name=f"restorecli-{task}",
        arch="nafnet",
        config=config,
        task=task,
        filename=f"restorecli-{task}.safetensors",
        url=None,
        license="MIT; trained on BSDS (non-commercial)",
        origin=_BUNDLED_ORIGIN.format(task=task),
        paper_score="see the model card beside the weights",
        default_for=task,
    )


ENTRIES: tuple[PretrainedEntry, ...] = (
    _bundled("derain", "lite-w16"),
    _bundled("deblur", "lite-w16-deeper"),
    _bundled("denoise", "lite-w16"),
    _restormer(
        "derain", "deraining", "derain", "deraining", "Y-channel mean of 5 sets 33.96/0.935; Rain100L 38.99/0.978"
    ),
    _restormer("deblur-motion", "motion-deblurring", "deblur", "motion_deblurring", "GoPro 32.92/0.961"),
    _restormer(
        "deblur-defocus-single", "defocus-deblurring-single", "defocus-deblur",
        "single_image_defocus_deblurring", "DPDD combined 25.98/0.811",
    ),
    _restormer(
        "deblur-defocus-dual", "defocus-deblurring-dual", "defocus-deblur",
        "dual_pixel_defocus_deblurring", "DPDD combined 26.66/0.833",
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
    _nafnet("sidd-width32", "NAFNet-SIDD-width32", "real-denoise", "1lsByk21Xw-6aW7epCwOQxvm6HYCQZPHZ",
            "SIDD 39.97/0.960", tlc=False),
    _nafnet("sidd-width64", "NAFNet-SIDD-width64", "real-denoise", "14Fht1QQJ2gMlk4N1ERCRuElg8JfjrWWR",
            "SIDD 40.30/0.961", tlc=False),
    _nafnet("gopro-width32", "NAFNet-GoPro-width32", "deblur", "1Fr2QadtDCEXg6iwWX8OzeZLbHOx2t5Bj",
            "GoPro 32.87/0.961", tlc=True),
    _nafnet("gopro-width64", "NAFNet-GoPro-width64", "deblur", "1S0PVRbyTakYY9a82kujgZLbMihfNBLfC",
            "GoPro 33.71/0.967", tlc=True),
    _nafnet("reds-width64", "NAFNet-REDS-width64", "deblur", "14D4V4raNYIOhETfcuuLI3bGLB-OYIv6X",
            "REDS val300 29.09/0.867", tlc=True),
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
    """The model a command (``derain``/``deblur``/``denoise``) uses when ``--model`` is not given."""
    for entry in ENTRIES:
        if entry.default_for == command:
            return entry
    raise UnknownModelError(f"Expected a default model for {command!r}, but none is registered")


def model_for_command(command: str, model: str | None) -> str:
    """The model a task command runs: ``model`` or the command's default; warns on a task mismatch."""
    name = model or default_for(command).name
    if has_entry(name) and get_entry(name).task not in COMMAND_TASKS[command]:
        logger.warning("%s is a %s model, run by `restore %s`", name, get_entry(name).task, command)
    return name


def entries_matching(arch: str, kwargs: Mapping[str, Any]) -> list[PretrainedEntry]:
    """Entries whose architecture and resolved config equal ``arch``/``kwargs`` (to name a stray file)."""
    return [
        entry
        for entry in ENTRIES
        if entry.arch == arch and architectures.resolve_config(entry.arch, entry.config) == dict(kwargs)
    ]
