"""Where weight files live, and fetching them: cache folder, resumable download, SHA-256 check.

Resolution order (first hit wins): an explicit path, the weights shipped inside the package
(``restorecli/weights``: package data in wheels and sdists, a link to the repository's top-level
``weights/`` in a source tree), ``./weights``, the user cache (``$RESTORECLI_HOME/weights``, else
the platform cache dir), then a download into the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import importlib.resources
import logging
import os
import re
import sys
import urllib.error
import urllib.request
import urllib.response
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from restorecli.errors import ChecksumError, DownloadError

try:
    import fcntl
except ImportError:  # Windows: downloads of one file by two processes are not serialised there
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("restorecli.zoo")
SHIPPED_WEIGHTS_DIR = Path(str(importlib.resources.files("restorecli") / "weights"))
_CHUNK_BYTES = 1 << 20


def cache_dir() -> Path:
    """The user cache for downloaded weights: ``$RESTORECLI_HOME/weights`` or the platform default."""
    home = os.environ.get("RESTORECLI_HOME")
    if home:
        return Path(home).expanduser() / "weights"
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "restorecli" / "weights"


def search_dirs() -> list[Path]:
    """Folders searched for a weight file by name, in order (before any download)."""
    folders = [SHIPPED_WEIGHTS_DIR, Path.cwd() / "weights", cache_dir()]
    return list(dict.fromkeys(folder.resolve() for folder in folders))


def find_local(filename: str) -> Path | None:
    """The first existing ``folder/filename`` among :func:`search_dirs`, or None."""
    for folder in search_dirs():
        candidate = folder / filename
        if candidate.is_file():
            return candidate
    return None


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _open(url: str, offset: int, timeout: float) -> urllib.response.addinfourl:
    request = urllib.request.Request(url, headers={"User-Agent": "restorecli"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(request, timeout=timeout)  # http(s) and file URLs alike, by design


def download(
    url: str, destination: Path, *, sha256: str | None = None, progress: bool = True, timeout: float = 30.0
) -> Path:
    """Fetch ``url`` to ``destination``, resuming a ``.part`` file left by an interrupted run.

    The file only appears at ``destination`` once complete and, when ``sha256`` is given, verified;
    a checksum mismatch deletes the partial data and raises ChecksumError. Processes fetching the same
    file take turns (a lock beside it, where ``fcntl`` exists): the later one finds it done.

    Raises:
        DownloadError: the server or the network failed (one line with the URL and where to put the
            file by hand), or the cache folder cannot be written.
        ChecksumError: the data do not match ``sha256``.
    """
    destination = Path(destination)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(destination.with_name(destination.name + ".lock")):
            if destination.is_file():  # another process finished it while this one waited
                return destination
            partial = destination.with_name(destination.name + ".part")
            _fetch(url, destination, partial, progress, timeout)
            if sha256 is not None:
                actual = sha256_of(partial)
                if actual != sha256.lower():
                    partial.unlink(missing_ok=True)
                    raise ChecksumError(f"Expected SHA-256 {sha256}, but got {actual} for {url} (deleted {partial})")
            os.replace(partial, destination)
    except OSError as exc:  # the cache folder's own failures; the network's are DownloadErrors already
        where = exc.filename or destination
        raise DownloadError(f"Cannot write {where}: {exc.strerror or exc} (downloading {url})") from exc
    return destination


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``lock_path`` (created if needed); no lock without ``fcntl``."""
    with open(lock_path, "a+b") as handle:
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield


def _fetch(url: str, destination: Path, partial: Path, progress: bool, timeout: float) -> None:
    """Complete ``partial`` from ``url`` (a Range request when it holds a beginning)."""
    offset = partial.stat().st_size if partial.exists() else 0
    response = _respond(url, destination, partial, offset, timeout)
    if response is None:
        return  # the partial file is the whole file
    with response:
        if response.headers.get_content_type() == "text/html":
            raise DownloadError(_offline_message(url, destination, "the server sent a web page instead of the weights"))
        resumed = offset > 0 and getattr(response, "status", 200) == 206
        if not resumed:
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        if total is None:
            logger.warning("%s sends no length: an early end of the transfer cannot be told from the end", url)
        with (
            open(partial, "ab" if resumed else "wb") as handle,
            tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=destination.name, disable=not progress)
            as bar,
        ):  # fmt: skip
            while True:
                try:
                    chunk = response.read(_CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as exc:
                    raise DownloadError(
                        _offline_message(url, destination, f"connection lost ({exc}); run again to resume")
                    ) from exc
                if not chunk:
                    break
                handle.write(chunk)  # a full disk is the cache folder's failure, not the network's
                bar.update(len(chunk))
    received = partial.stat().st_size
    if total is not None and received != total:  # read() returns b"" on an early end of stream
        raise DownloadError(_offline_message(url, destination, f"got {received} of {total} bytes; run again to resume"))


def _respond(
    url: str, destination: Path, partial: Path, offset: int, timeout: float
) -> urllib.response.addinfourl | None:
    """The server's response from ``offset`` on; None when the partial file is already the whole file
    (HTTP 416 naming exactly its size). A 416 for another size starts over."""
    try:
        return _open(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            match = re.fullmatch(r"bytes \*/(\d+)", (exc.headers.get("Content-Range") or "").strip())
            if match and int(match.group(1)) == offset:
                return None
            partial.unlink(missing_ok=True)  # longer than the file, or of unknown size: not to be trusted
            return _respond(url, destination, partial, 0, timeout)
        raise DownloadError(_offline_message(url, destination, f"HTTP {exc.code} {exc.reason}")) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(_offline_message(url, destination, str(reason))) from exc


def _offline_message(url: str, destination: Path, reason: str) -> str:
    return f"Cannot download {url} ({reason}); download it by hand and place it at {destination}"
