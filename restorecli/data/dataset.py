"""Find the files of a dataset and match them across sibling folders by id.

A dataset is a root folder holding sibling folders (``input/`` + ``target/`` for paired restoration,
``images/`` + ``masks/`` for segmentation, or any set the user names), or a plain folder of images.
A file's *id* is its stem, or the part of the stem matched by ``{id}`` in a per-folder name pattern:
NUAA-SIRST stores ``images/Misc_1.png`` beside ``masks/Misc_1_pixels0.png``, i.e. the pattern
``masks={id}_pixels0``. Split lists (``train.txt``...) hold one id per line.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from natsort import natsorted

from restorecli.errors import ConfigError, DatasetError
from restorecli.images import atomic_path, list_images

KNOWN_LAYOUTS: tuple[tuple[str, ...], ...] = (("input", "target"), ("images", "masks"))
"""Sibling-folder layouts recognised without ``dirs``, tried in this order."""

PLAIN_FOLDER = "."
"""Folder name used when the root itself holds the images."""

ID_FIELD = "{id}"


def compile_name_pattern(template: str) -> re.Pattern[str]:
    """Turn a stem template such as ``{id}_pixels0`` into a regex whose group ``id`` captures the id."""
    if template.count(ID_FIELD) != 1:
        raise ConfigError(f"Expected a name pattern with exactly one {ID_FIELD}, but got {template!r}")
    prefix, suffix = template.split(ID_FIELD)
    return re.compile(f"{re.escape(prefix)}(?P<id>.+){re.escape(suffix)}")


def parse_name_patterns(values: Iterable[str]) -> dict[str, str]:
    """Parse ``FOLDER=TEMPLATE`` strings (e.g. ``masks={id}_pixels0``) into a mapping."""
    patterns: dict[str, str] = {}
    for value in values:
        folder, sep, template = value.partition("=")
        if not sep or not folder.strip():
            raise ConfigError(f"Expected FOLDER=TEMPLATE such as masks={ID_FIELD}_pixels0, but got {value!r}")
        compile_name_pattern(template)
        patterns[folder.strip().strip("/")] = template
    return patterns


@dataclass(frozen=True)
class DatasetIndex:
    """The files of a dataset, matched by id across its folders.

    Attributes:
        root: The dataset folder.
        folders: Folder names relative to ``root`` (``"."`` for a plain folder of images).
        files: Complete ids in natural order -> one file per folder, in the order of ``folders``.
        missing: Ids found in some folders only -> the folders that lack them.
        unmatched: Files whose stem does not fit their folder's name pattern (they have no id).
    """

    root: Path
    folders: tuple[str, ...]
    files: dict[str, tuple[Path, ...]]
    missing: dict[str, tuple[str, ...]] = field(default_factory=dict)
    unmatched: tuple[Path, ...] = ()

    @property
    def ids(self) -> list[str]:
        """Complete ids (present in every folder) in natural order."""
        return list(self.files)


def _has_images(folder: Path) -> bool:
    # A probe, not a read: links are judged (and reported once) when the folder is indexed.
    return any(not p.name.startswith(".") for p in list_images(folder, follow_symlinks=True))


def resolve_folders(root: Path, dirs: Sequence[str] | None = None) -> tuple[str, ...]:
    """Pick the dataset's folders: ``dirs`` if given, else a known layout, else the root itself."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"Expected a dataset folder, but got no folder at {root}")
    if dirs:
        names = tuple(d.strip().strip("/") or PLAIN_FOLDER for d in dirs)
        if len(set(names)) != len(names):
            raise DatasetError(f"Expected distinct folder names, but got {', '.join(names)}")
        for name in names:
            if not (root / name).is_dir():
                raise DatasetError(f"Expected a folder {name}/ in {root}, but it does not exist")
        return names
    for layout in KNOWN_LAYOUTS:
        if all((root / name).is_dir() for name in layout):
            return layout
    if _has_images(root):
        return (PLAIN_FOLDER,)
    known = " or ".join("/ + ".join(layout) + "/" for layout in KNOWN_LAYOUTS)
    raise DatasetError(f"Expected images, {known} (or folders named with --dirs), but found none in {root}")


def _ids_in_folder(folder: Path, pattern: re.Pattern[str]) -> tuple[dict[str, Path], list[Path]]:
    """Map id -> file for one folder; also return files the pattern does not match."""
    ids: dict[str, Path] = {}
    unmatched: list[Path] = []
    for path in list_images(folder):
        if path.name.startswith("."):  # temp files of interrupted atomic writes, macOS "._" forks
            continue
        match = pattern.fullmatch(path.stem)
        if match is None:
            unmatched.append(path)
            continue
        item_id = match.group("id")
        if item_id in ids:
            raise DatasetError(f"Expected one file per id, but got {ids[item_id].name} and {path.name} ({folder})")
        ids[item_id] = path
    return ids, unmatched


def index_dataset(
    root: Path, dirs: Sequence[str] | None = None, patterns: Mapping[str, str] | None = None
) -> DatasetIndex:
    """Match the files of ``root``'s folders by id (see :func:`resolve_folders` for the folders).

    Args:
        root: Dataset folder.
        dirs: Folder names under ``root``; None detects ``input/target``, ``images/masks`` or a plain folder.
        patterns: Folder name -> stem template with ``{id}``; other folders use the plain stem.
    """
    root = Path(root)
    folders = resolve_folders(root, dirs)
    patterns = dict(patterns or {})
    unknown = sorted(set(patterns) - set(folders))
    if unknown:
        raise ConfigError(f"Expected name patterns for {', '.join(folders)}, but got {', '.join(unknown)} ({root})")
    per_folder: list[dict[str, Path]] = []
    unmatched: list[Path] = []
    for name in folders:
        ids, skipped = _ids_in_folder(root / name, compile_name_pattern(patterns.get(name, ID_FIELD)))
        per_folder.append(ids)
        unmatched.extend(skipped)
    all_ids = natsorted(set().union(*per_folder))
    files: dict[str, tuple[Path, ...]] = {}
    missing: dict[str, tuple[str, ...]] = {}
    for item_id in all_ids:
        lacking = tuple(name for name, ids in zip(folders, per_folder, strict=True) if item_id not in ids)
        if lacking:
            missing[item_id] = lacking
        else:
            files[item_id] = tuple(ids[item_id] for ids in per_folder)
    return DatasetIndex(root=root, folders=folders, files=files, missing=missing, unmatched=tuple(unmatched))


def shorten(items: Sequence[str], limit: int = 5) -> str:
    """The first ``limit`` items joined by commas, then ``and N more``: error messages stay one line."""
    extra = len(items) - limit
    return ", ".join(items[:limit]) + (f" and {extra} more" if extra > 0 else "")


def describe_missing(missing: Mapping[str, Sequence[str]], limit: int = 5) -> str:
    """A short human list such as ``a (no masks), b (no images) and 3 more``."""
    return shorten([f"{item_id} (no {', '.join(lacking)})" for item_id, lacking in missing.items()], limit)


def _affix(names: Sequence[str], bases: set[str]) -> str | None:
    """The template ``{id}<suffix>`` or ``<prefix>{id}`` that maps every name onto one of ``bases``."""
    first = names[0]
    for base in sorted(bases, key=len, reverse=True):
        templates = [ID_FIELD + first[len(base) :]] if first.startswith(base) else []
        templates += [first[: -len(base)] + ID_FIELD] if first.endswith(base) else []
        for template in templates:
            pattern = compile_name_pattern(template)
            matches = [pattern.fullmatch(name) for name in names]
            if all(m is not None and m.group("id") in bases for m in matches):
                return template
    return None


def pattern_hint(index: DatasetIndex) -> str:
    """A ``--pattern`` suggestion when a folder's names are the others' ids plus a fixed affix."""
    for name in index.folders:
        only_here = [
            i for i, lacking in index.missing.items() if name not in lacking and len(lacking) == len(index.folders) - 1
        ]
        elsewhere = {i for i, lacking in index.missing.items() if name in lacking}
        if only_here and elsewhere:
            template = _affix(only_here, elsewhere)
            if template is not None:
                return f"; names differ by a fixed part, try --pattern {name}={template}"
    return ""


def name_bytes(name: str) -> bytes:
    """The bytes a file name counts as wherever it seeds or splits something: Unicode's composed form
    (NFC) in UTF-8, so a copy with decomposed names (macOS) counts the same; a name that is not UTF-8
    (``os.fsdecode`` surrogates) keeps its own bytes."""
    return unicodedata.normalize("NFC", name).encode("utf-8", "surrogateescape")


def read_id_list(path: Path) -> list[str]:
    """Read a split list: one id per line, any line endings (LF, CRLF, CR), optional BOM, blanks ignored.

    UTF-8; bytes that are not (a file name that is not UTF-8, listed as it is) come back as the
    surrogates ``os.fsdecode`` gives that name.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig", "surrogateescape")
    except FileNotFoundError:
        raise DatasetError(f"Expected a list file, but nothing exists at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"Expected a UTF-8 text list, but reading failed: {exc} ({path})") from exc
    ids = [line.strip() for line in text.splitlines() if line.strip()]
    seen: set[str] = set()
    for item_id in ids:
        if item_id in seen:
            raise DatasetError(f"Expected each id once, but {item_id!r} is listed twice ({path})")
        seen.add(item_id)
    return ids


def write_id_list(path: Path, ids: Sequence[str]) -> None:
    """Write one id per line with LF endings, atomically (UTF-8; a name that is not UTF-8 as its bytes)."""
    path = Path(path)
    try:
        with atomic_path(path) as temp:
            temp.write_text("".join(f"{item_id}\n" for item_id in ids), encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise DatasetError(f"Cannot write {path}: {exc.strerror or exc}") from exc
