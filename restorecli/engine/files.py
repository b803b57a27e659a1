"""Which files of an input a restore job takes, and where each result goes.

A folder's images and videos are restored; every other file is counted so the summary can name it,
never silently dropped. With ``recursive`` the input tree is mirrored under the output folder.
Outputs never overwrite inputs: :func:`output_paths` checks every destination before any work.
The naming record itself, :class:`~restorecli.engine.options.OutputOptions`, lives with the run options.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from restorecli.engine.options import OutputOptions
from restorecli.errors import DatasetError, ImageReadError, ImageWriteError, display_path
from restorecli.images import IMAGE_SUFFIXES, list_folder, refuse_input_folder
from restorecli.video import is_video

_FORMAT_SUFFIXES = {"png": ".png", "jpg": ".jpg", "webp": ".webp"}


def output_name(source: Path, naming: OutputOptions) -> str:
    """The output file name of ``source``: its stem, ``_suffix`` when set, and the output format's suffix
    (a video keeps its container)."""
    source = Path(source)
    keep = naming.ext == "same" or is_video(source)
    stem = f"{source.stem}_{naming.suffix}" if naming.suffix else source.stem
    return stem + (source.suffix if keep else _FORMAT_SUFFIXES[naming.ext])


@dataclass(frozen=True)
class InputFiles:
    """What an input path holds, sorted by kind.

    Attributes:
        root: the folder that was listed (outputs mirror the paths below it); None for a single file.
        recursive: whether sub-folders were searched.
        images, videos: the files to restore, in natural order.
        others: files that are neither; the summary names them.
        unsearched: sub-folders whose files were not looked at (see
            :class:`~restorecli.images.FolderListing`); the summary names them too.
    """

    root: Path | None
    recursive: bool = False
    images: tuple[Path, ...] = ()
    videos: tuple[Path, ...] = ()
    others: tuple[Path, ...] = ()
    unsearched: tuple[Path, ...] = ()

    @property
    def restorable(self) -> list[Path]:
        """Images, then videos."""
        return [*self.images, *self.videos]

    def relative(self, path: Path) -> Path:
        """``path`` as the user knows it: below the listed folder, or as given for a single file."""
        return path if self.root is None else path.relative_to(self.root)


def find_inputs(path: Path, *, recursive: bool = False, exclude: Path | None = None) -> InputFiles:
    """An image or video file, or a folder's files (its sub-folders' too when ``recursive``) sorted by kind.

    A single file is taken as a video when its suffix says so, else as an image (so a file of another
    kind fails on reading, with a message naming it). ``exclude`` is a folder to leave out, as in
    :func:`~restorecli.images.list_folder` (the output folder, when it lies inside the input).

    Raises:
        ImageReadError: nothing exists at ``path``, or a folder cannot be listed.
    """
    path = Path(path)
    if path.is_file():
        return InputFiles(None, videos=(path,)) if is_video(path) else InputFiles(None, images=(path,))
    if not path.is_dir():
        raise ImageReadError(f"Expected an image, a video or a folder, but nothing exists at {display_path(path)}")
    listing = list_folder(path, recursive=recursive, exclude=exclude)
    kinds: dict[str, list[Path]] = {"image": [], "video": [], "other": []}
    for file in listing.files:
        kind = "image" if file.suffix.lower() in IMAGE_SUFFIXES else "video" if is_video(file) else "other"
        kinds[kind].append(file)
    return InputFiles(
        path, recursive, tuple(kinds["image"]), tuple(kinds["video"]), tuple(kinds["other"]), tuple(listing.unsearched)
    )


def output_paths(
    inputs: list[Path] | tuple[Path, ...],
    output_dir: Path,
    naming: OutputOptions | None = None,
    *,
    root: Path | None = None,
) -> list[Path]:
    """Where each input's result goes, after checking that no result can replace or mix with an input.

    Args:
        inputs: the files to restore.
        output_dir: the output folder.
        naming: output names and formats (default: each input's own name).
        root: a folder holding every input; their paths below it are mirrored under ``output_dir``
            (default: every result directly in ``output_dir``).

    Raises:
        DatasetError: there are no inputs, or one is not inside ``root``.
        ImageWriteError: ``output_dir`` is a file; a result would go to the folder of its input (or of the
            file an input links to), or onto an input; two results would share a path.
    """
    if not inputs:
        raise DatasetError("Expected at least one input image or video, but got none")
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ImageWriteError(f"Expected an output folder, but got a file ({display_path(output_dir)})")
    naming = naming or OutputOptions()
    sources = {Path(path).resolve() for path in inputs}
    seen: dict[Path, Path] = {}
    destinations = []
    for path in map(Path, inputs):
        if root is not None and not path.is_relative_to(root):
            raise DatasetError(f"Expected inputs inside {display_path(root)}, but got {display_path(path)}")
        below = path.parent.relative_to(root) if root is not None else Path()
        destination = output_dir / below / output_name(path, naming)
        refuse_input_folder(destination, path)
        target = destination.resolve()
        if target in sources:
            raise ImageWriteError(
                f"Expected results that leave the inputs alone, but {display_path(path)} would be written over "
                f"the input {display_path(destination)}"
            )
        if target in seen:
            raise ImageWriteError(
                f"Expected distinct output names, but {display_path(seen[target])} and {display_path(path)} "
                f"would both write {display_path(destination.name)}"
            )
        seen[target] = path
        destinations.append(destination)
    return destinations
