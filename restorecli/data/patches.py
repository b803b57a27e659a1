"""Cut large images into overlapping square patches so training reads small files fast.

Positions reproduce BasicSR's ``scripts/data_preparation/extract_subimages.py`` (DIV2K practice:
size 480, step 240, threshold 0): along each axis ``0, step, 2*step, ...`` while a full patch fits, plus
one last patch flush with the border when the uncovered remainder exceeds ``thresh_size``. Patches are
named ``{id}_s{index:03d}.png`` with ``index`` counting from 1 in row-major order and written as
lossless PNG (16-bit and alpha kept), so every patch is a bit-exact crop. Paired folders
(input/target, images/masks) are cut at identical positions and their patches share names.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from natsort import natsorted
from tqdm import tqdm

from restorecli.data.dataset import PLAIN_FOLDER, DatasetIndex, index_dataset, pattern_hint, read_id_list, shorten
from restorecli.errors import ConfigError, DatasetError, RestoreError
from restorecli.images import atomic_path, read_array, write_array

SmallPolicy = Literal["skip", "pad", "whole"]
Status = Literal["cropped", "skipped", "failed"]
MANIFEST_NAME = "patches.csv"
# What the patches of an output folder were cut with, written before the first patch: --skip-existing
# resumes only a run with the same cut, so a folder never mixes patches of two sizes or steps.
CUT_NAME = "crop-options.json"
MANIFEST_FIELDS: tuple[str, ...] = ("patch", "source", "x", "y", "w", "h")
PATCH_SUFFIX = ".png"


@dataclass(frozen=True)
class Box:
    """A patch's region of the source image in pixels: left ``x``, top ``y``, width ``w``, height ``h``."""

    x: int
    y: int
    w: int
    h: int


def patch_starts(length: int, size: int, step: int, thresh_size: int = 0) -> list[int]:
    """Start offsets along one axis of ``length`` pixels (BasicSR ``extract_subimages`` rule).

    Empty when ``length < size``: the caller decides what to do with small images.
    """
    if length < size:
        return []
    starts = list(range(0, length - size + 1, step))
    if length - (starts[-1] + size) > thresh_size:
        starts.append(length - size)
    return starts


def patch_boxes(height: int, width: int, size: int, step: int, thresh_size: int = 0) -> list[Box]:
    """Full-size patch boxes of a ``height x width`` image in row-major order (index = position + 1)."""
    return [
        Box(x, y, size, size)
        for y in patch_starts(height, size, step, thresh_size)
        for x in patch_starts(width, size, step, thresh_size)
    ]


def patch_name(item_id: str, index: int) -> str:
    """File name of patch ``index`` (1-based) of ``item_id``: ``{id}_s{index:03d}.png``."""
    return f"{item_id}_s{index:03d}{PATCH_SUFFIX}"


@dataclass(frozen=True)
class CropOptions:
    """How to cut: patch ``size`` and ``step`` in pixels, BasicSR ``thresh_size``, small-image policy."""

    size: int = 480
    step: int = 240
    thresh_size: int = 0
    small: SmallPolicy = "skip"
    png_compression: int = 3
    skip_existing: bool = False

    def __post_init__(self) -> None:
        if self.size < 1 or self.step < 1 or self.thresh_size < 0:
            raise ConfigError(
                f"Expected size >= 1, step >= 1 and thresh_size >= 0, "
                f"but got {self.size}, {self.step}, {self.thresh_size}"
            )
        if self.small not in ("skip", "pad", "whole"):
            raise ConfigError(f"Expected small to be skip, pad or whole, but got {self.small!r}")
        if not 0 <= self.png_compression <= 9:
            raise ConfigError(f"Expected a PNG compression level in 0..9, but got {self.png_compression}")

    def cut(self) -> dict[str, object]:
        """The options that decide the patches' pixels and names (not the PNG level or resuming)."""
        return {"size": self.size, "step": self.step, "thresh_size": self.thresh_size, "small": self.small}


def _pad_to(array: np.ndarray, size: int) -> np.ndarray:
    """Pad bottom/right up to ``size`` by mirroring (as Restormer's training loader pads small images)."""
    pad_h = max(0, size - array.shape[0])
    pad_w = max(0, size - array.shape[1])
    widths = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, widths, mode="symmetric")


def plan_crop(height: int, width: int, options: CropOptions) -> tuple[list[Box], bool]:
    """Boxes for an image (clipped to the image) and whether its arrays must be padded first.

    An image is small when either side is below ``size``: ``skip`` gives no boxes, ``whole`` one box
    covering the image, ``pad`` the boxes of the image mirrored up to ``size`` with each box clipped to
    the real pixels (so ``patch[:h, :w] == image[y:y+h, x:x+w]`` holds for every manifest row).
    """
    if height >= options.size and width >= options.size:
        return patch_boxes(height, width, options.size, options.step, options.thresh_size), False
    if options.small == "skip":
        return [], False
    if options.small == "whole":
        return [Box(0, 0, width, height)], False
    padded = patch_boxes(
        max(height, options.size), max(width, options.size), options.size, options.step, options.thresh_size
    )
    return [Box(b.x, b.y, min(b.w, width - b.x), min(b.h, height - b.y)) for b in padded], True


@dataclass(frozen=True)
class CropJob:
    """One image (or one aligned pair) to cut: its id, sources, and the output folder per source."""

    item_id: str
    sources: tuple[Path, ...]
    outputs: tuple[Path, ...]
    labels: tuple[str, ...]  # manifest prefixes: "" for a plain folder, "input/" for a pair member


@dataclass
class CropResult:
    """Outcome of one job: manifest rows, counts, and the error message when it failed."""

    item_id: str
    status: Status
    small: bool = False
    rows: list[tuple[str, str, int, int, int, int]] = field(default_factory=list)
    written: int = 0
    existing: int = 0
    pixels_bytes: int = 0
    error: str = ""


def crop_job(job: CropJob, options: CropOptions, root: Path) -> CropResult:
    """Cut one job; read/write errors and mismatched pair sizes become a ``failed`` result."""
    try:
        arrays = [read_array(source) for source in job.sources]
        sizes = {array.shape[:2] for array in arrays}
        if len(sizes) > 1:
            shown = ", ".join(f"{a.shape[1]}x{a.shape[0]}" for a in arrays)
            raise DatasetError(f"Expected a pair of equal sizes, but got {shown} ({', '.join(map(str, job.sources))})")
        height, width = arrays[0].shape[:2]
        boxes, pad = plan_crop(height, width, options)
        small = min(height, width) < options.size
        if not boxes:
            return CropResult(job.item_id, "skipped", small=small)
        if pad:
            arrays = [_pad_to(array, options.size) for array in arrays]
        result = CropResult(job.item_id, "cropped", small=small, pixels_bytes=sum(a.nbytes for a in arrays))
        for index, box in enumerate(boxes, start=1):
            cut_w, cut_h = (options.size, options.size) if pad else (box.w, box.h)
            name = patch_name(job.item_id, index)
            for array, source, output, label in zip(arrays, job.sources, job.outputs, job.labels, strict=True):
                target = output / name
                rel_source = source.relative_to(root).as_posix()
                result.rows.append((label + name, rel_source, box.x, box.y, box.w, box.h))
                if options.skip_existing and target.is_file():
                    result.existing += 1
                    continue
                patch = np.ascontiguousarray(array[box.y : box.y + cut_h, box.x : box.x + cut_w])
                write_array(target, patch, png_compression=options.png_compression)
                result.written += 1
        return result
    except RestoreError as exc:
        return CropResult(job.item_id, "failed", error=str(exc))


def _crop_job_star(args: tuple[CropJob, CropOptions, Path]) -> CropResult:
    return crop_job(*args)


@dataclass
class CropReport:
    """Summary of :func:`crop_patches`.

    Attributes:
        images: Jobs (images or pairs) considered.
        cropped: Jobs cut into patches.
        small: Jobs with an image side below the patch size (skipped, padded or kept whole per policy).
        patches: Manifest rows (one per written or already present patch file).
        written: Patch files written by this run.
        existing: Patch files kept because they existed (``skip_existing``).
        failures: Id -> error message for unreadable images, mismatched pairs, incomplete pairs.
        pixels_bytes: Decoded bytes of the cut images (for throughput figures).
        manifest: Path of ``patches.csv``.
        folders: The source folders cut together (``(".",)`` for a plain folder).
    """

    images: int
    cropped: int
    small: int
    patches: int
    written: int
    existing: int
    failures: dict[str, str]
    pixels_bytes: int
    manifest: Path
    folders: tuple[str, ...]

    def to_dict(self, input_dir: Path, output_dir: Path) -> dict[str, object]:
        """Plain JSON data for ``restore crop-patches --json``."""
        return {
            "input": str(input_dir),
            "output": str(output_dir),
            "folders": list(self.folders),
            "images": self.images,
            "cropped": self.cropped,
            "small": self.small,
            "failed": len(self.failures),
            "patches": self.patches,
            "written": self.written,
            "existing": self.existing,
            "manifest": str(self.manifest),
            "failures": self.failures,
        }


def _check_output(index: DatasetIndex, output: Path, reuse: bool) -> None:
    """Refuse to write into a source folder, or into a non-empty folder unless resuming/overwriting."""
    sources = {(index.root / folder).resolve() for folder in index.folders}
    if output.resolve() in sources:
        raise DatasetError(f"Expected an output folder apart from the images, but got a source folder ({output})")
    if not reuse and output.is_dir() and any(output.iterdir()):
        raise DatasetError(
            f"Expected an empty output folder (or --skip-existing / --overwrite), but {output} has files"
        )


def build_jobs(index: DatasetIndex, output: Path, ids: Sequence[str]) -> list[CropJob]:
    """One job per id, writing ``output/<folder>/`` for pairs or ``output/`` for a plain folder."""
    outputs = tuple(output if f == PLAIN_FOLDER else output / f for f in index.folders)
    labels = tuple("" if f == PLAIN_FOLDER else f"{f}/" for f in index.folders)
    return [CropJob(item_id, index.files[item_id], outputs, labels) for item_id in ids]


def _selected_ids(index: DatasetIndex, list_path: Path | None) -> list[str]:
    """All ids (incomplete ones too, to be reported), or those of ``list_path``; natural order."""
    if list_path is None:
        return natsorted([*index.files, *index.missing])
    listed = read_id_list(list_path)
    unknown = [i for i in listed if i not in index.files and i not in index.missing]
    if unknown:
        raise DatasetError(
            f"Expected the ids of {list_path} in {index.root}, but {len(unknown)} are absent: {shorten(unknown)}"
        )
    return natsorted(listed)


def crop_patches(
    input_dir: Path,
    output_dir: Path,
    options: CropOptions | None = None,
    dirs: Sequence[str] | None = None,
    patterns: Mapping[str, str] | None = None,
    list_path: Path | None = None,
    workers: int = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> CropReport:
    """Cut every image (or aligned pair) of ``input_dir`` into patches under ``output_dir``.

    Output is byte-identical for any ``workers``: each job depends only on its own image, and the manifest
    ``patches.csv`` (patch, source, x, y, w, h; paths relative to the output and input folders) is sorted
    by natural id order, then patch index, then pair folder. ``patch[:h, :w] == source[y:y+h, x:x+w]``.

    Args:
        input_dir: A folder of images, or a dataset root with ``input/ + target/``, ``images/ + masks/``
            or the folders named in ``dirs`` (cut as aligned pairs).
        output_dir: Destination; must be empty unless ``options.skip_existing`` or ``overwrite``.
        options: Patch size, step, threshold, small-image policy, PNG level, resume.
        dirs, patterns: Dataset folders and per-folder name patterns (see ``index_dataset``).
        list_path: Only the ids of this list (e.g. ``train.txt`` from ``restore split``).
        workers: Processes; 0 means ``os.cpu_count()``. They are spawned, so a script calling this with
            ``workers != 1`` needs the usual ``if __name__ == "__main__":`` guard.
        overwrite: Allow writing into a non-empty output folder, replacing patches of the same name and
            removing those an earlier run's manifest lists that this run does not cut.
        progress: Show a tqdm bar on stderr (when it is a terminal).
    """
    options = options or CropOptions()
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    index = index_dataset(input_dir, dirs, patterns)
    if not index.files:
        raise DatasetError(
            f"Expected images present in every folder ({', '.join(index.folders)}), but none is complete"
            f"{pattern_hint(index)} ({input_dir})"
        )
    _check_output(index, output_dir, reuse=options.skip_existing or overwrite)
    earlier = _earlier_patches(output_dir) if overwrite else set()
    ids = _selected_ids(index, list_path)
    failures = {
        i: f"Expected a file for this id in every folder, but {', '.join(index.missing[i])} has none ({input_dir})"
        for i in ids
        if i in index.missing
    }
    jobs = build_jobs(index, output_dir, [i for i in ids if i in index.files])
    output_dir.mkdir(parents=True, exist_ok=True)
    _record_cut(output_dir, options)

    workers = min(workers or os.cpu_count() or 1, max(1, len(jobs)))
    tasks = [(job, options, input_dir) for job in jobs]
    bar = tqdm(total=len(jobs), unit="image", desc="crop-patches", disable=None if progress else True)
    results: list[CropResult] = []
    with bar:
        if workers == 1:
            for task in tasks:
                results.append(_crop_job_star(task))
                bar.update(1)
        else:
            # spawn: no locks or threads inherited from the parent (torch, OpenCV), the same on every OS;
            # an executor (unlike Pool) raises BrokenProcessPool instead of hanging when a worker dies.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context) as executor:
                for result in executor.map(_crop_job_star, tasks):
                    results.append(result)
                    bar.update(1)

    failures.update({r.item_id: r.error for r in results if r.status == "failed"})
    manifest = output_dir / MANIFEST_NAME
    rows = [row for r in results for row in r.rows]
    write_manifest(manifest, rows)
    for stale in sorted(earlier - {str(row[0]) for row in rows}):  # an earlier cut's patches this one lacks
        (output_dir / stale).unlink(missing_ok=True)
    return CropReport(
        images=len(ids),
        cropped=sum(r.status == "cropped" for r in results),
        small=sum(r.small for r in results),
        patches=sum(len(r.rows) for r in results),
        written=sum(r.written for r in results),
        existing=sum(r.existing for r in results),
        failures=failures,
        pixels_bytes=sum(r.pixels_bytes for r in results),
        manifest=manifest,
        folders=index.folders,
    )


def _record_cut(output: Path, options: CropOptions) -> None:
    """Write :data:`CUT_NAME`; with ``skip_existing``, first refuse a folder cut with other options.

    Raises:
        DatasetError: the folder's patches were cut with another size, step, threshold or small policy.
    """
    path = output / CUT_NAME
    if options.skip_existing and path.is_file():
        try:
            earlier = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(
                f"Expected the crop options of the run to resume, but reading failed: {exc} ({path})"
            ) from exc
        if earlier != options.cut():
            shown = ", ".join(f"{key} {value}" for key, value in options.cut().items())
            was = ", ".join(f"{key} {value}" for key, value in earlier.items())
            raise DatasetError(
                f"Expected --skip-existing to resume a run cut alike, but {output} holds patches cut with {was} "
                f"and this run asks {shown} (--overwrite replaces them)"
            )
    try:
        with atomic_path(path) as temp:
            temp.write_text(json.dumps(options.cut()) + "\n", encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"Cannot write {path}: {exc.strerror or exc}") from exc


def _earlier_patches(output: Path) -> set[str]:
    """Patch paths (relative to ``output``) an earlier run's manifest lists: replaced or removed by --overwrite."""
    path = output / MANIFEST_NAME
    if not path.is_file():
        return set()
    try:
        return {str(row["patch"]) for row in read_manifest(path)}
    except (OSError, ValueError, KeyError, csv.Error) as exc:
        raise DatasetError(
            f"Expected the earlier patches.csv to list its patches, but reading failed: {exc} ({path})"
        ) from exc


def write_manifest(path: Path, rows: Sequence[Sequence[object]]) -> None:
    """Write ``patches.csv`` atomically with a header and LF line endings (UTF-8; a file name that is not
    UTF-8 as its bytes, as :func:`~restorecli.data.dataset.write_id_list` writes ids)."""
    try:
        with (
            atomic_path(path) as temp,
            temp.open("w", newline="", encoding="utf-8", errors="surrogateescape") as handle,
        ):
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(MANIFEST_FIELDS)
            writer.writerows(rows)
    except OSError as exc:
        raise DatasetError(f"Cannot write {path}: {exc.strerror or exc}") from exc


def read_manifest(path: Path) -> list[dict[str, str | int]]:
    """Rows of a ``patches.csv`` with integer x, y, w, h."""
    with Path(path).open(newline="", encoding="utf-8", errors="surrogateescape") as handle:
        return [
            {key: int(value) if key in ("x", "y", "w", "h") else value for key, value in row.items()}
            for row in csv.DictReader(handle)
        ]
