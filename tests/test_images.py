"""Lossless image I/O: 16-bit depth, alpha, EXIF orientation, atomic writes, clear errors."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from restorecli.errors import ImageReadError, ImageWriteError
from restorecli.images import (
    atomic_path,
    from_tensor,
    list_images,
    merge_alpha,
    read_array,
    remove_abandoned_temporaries,
    split_alpha,
    to_tensor,
    write_array,
)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_rgb_round_trips_exactly_where_pillow_drops_the_low_byte(tmp_path: Path, suffix: str) -> None:
    pixels = np.random.default_rng(0).integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    path = tmp_path / f"deep{suffix}"
    write_array(path, pixels)
    np.testing.assert_array_equal(read_array(path), pixels)
    if suffix == ".png":  # the reason we decode with OpenCV
        with Image.open(path) as image:
            assert np.asarray(image).dtype == np.uint8


@pytest.mark.parametrize(
    "pixels",
    [
        np.arange(35, dtype=np.uint8).reshape(5, 7),
        np.arange(5 * 7 * 4, dtype=np.uint8).reshape(5, 7, 4),
        np.arange(5 * 7 * 4, dtype=np.uint16).reshape(5, 7, 4) * 300,
    ],
    ids=["grey", "rgba8", "rgba16"],
)
def test_grey_and_alpha_round_trip(tmp_path: Path, pixels: np.ndarray) -> None:
    path = tmp_path / "x.png"
    write_array(path, pixels)
    np.testing.assert_array_equal(read_array(path), pixels)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("suffix", [".png", ".webp", ".tif"])  # PNG: eXIf chunk; WebP: RIFF EXIF chunk; TIFF: its tag
def test_exif_orientation_matches_pillow(tmp_path: Path, orientation: int, suffix: str) -> None:
    pixels = np.random.default_rng(orientation).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    path = tmp_path / f"photo{suffix}"
    image.save(path, exif=exif, lossless=True)
    with Image.open(path) as reference:
        expected = np.asarray(ImageOps.exif_transpose(reference).convert("RGB"))
    np.testing.assert_array_equal(read_array(path), expected)


@pytest.mark.parametrize("orientation", [2, 3, 5, 6, 7, 8])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_grey_tiff_orientation_is_applied_once(tmp_path: Path, orientation: int, dtype: type) -> None:
    """OpenCV's TIFF decoder already follows the Orientation tag; a second rotation would undo it. The
    stored pixels turned upright by hand are the reference (Pillow's ``exif_transpose`` leaves grey
    TIFFs as stored)."""
    stored = np.random.default_rng(orientation).integers(0, np.iinfo(dtype).max, (6, 10), dtype=dtype)
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = orientation
    path = tmp_path / "scan.tif"
    image.save(path, exif=exif)
    upright = {2: stored[:, ::-1], 3: stored[::-1, ::-1], 5: stored.T, 6: np.rot90(stored, -1)}
    upright |= {7: np.rot90(stored, 2).T, 8: np.rot90(stored, 1)}
    np.testing.assert_array_equal(read_array(path), upright[orientation])


def test_corrupt_and_missing_files_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(ImageReadError, match="broken.png"):
        read_array(broken)
    with pytest.raises(ImageReadError, match="nothing exists"):
        read_array(tmp_path / "absent.png")


def test_failed_write_leaves_no_file_and_no_temp(tmp_path: Path) -> None:
    with pytest.raises(ImageWriteError, match="16-bit"):
        write_array(tmp_path / "deep.jpg", np.zeros((4, 4, 3), np.uint16))
    assert list(tmp_path.iterdir()) == []


def test_write_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    write_array(path, np.zeros((4, 4), np.uint8))
    write_array(path, np.full((4, 4), 7, np.uint8))
    assert read_array(path).max() == 7
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


_HOLD_A_WRITE = """
import sys, time
from pathlib import Path
from restorecli.images import atomic_path
with atomic_path(Path(sys.argv[1])) as temporary:
    temporary.write_bytes(b"partial")
    print(temporary.name, flush=True)
    time.sleep(60)
"""


def test_a_killed_writers_temporary_is_removed_but_a_live_writers_is_not(tmp_path: Path) -> None:
    destination = tmp_path / "out.v1.png"
    writer = subprocess.Popen(
        [sys.executable, "-c", _HOLD_A_WRITE, str(destination)], stdout=subprocess.PIPE, text=True
    )
    try:
        name = writer.stdout.readline().strip()  # type: ignore[union-attr]
        assert name.startswith(".out.v1.") and name.endswith(".tmp.png")
        abandoned = tmp_path / ".out.v1.abcdefgh.tmp.png"  # written by name, no writer holds it
        unrelated = [tmp_path / ".other.abcdefgh.tmp.png", tmp_path / ".out.v1.abcdefgh.tmp.jpg", tmp_path / "x.tmp"]
        for path in [abandoned, *unrelated]:
            path.write_bytes(b"x")
        with atomic_path(destination) as own:  # this process's own write in progress is a live writer too
            own.write_bytes(b"y")
            assert remove_abandoned_temporaries([destination, tmp_path / "missing" / "a.png"]) == [abandoned]
        assert (tmp_path / name).exists()
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        assert (tmp_path / name).exists()  # no finally survives a kill
        assert remove_abandoned_temporaries([destination]) == [tmp_path / name]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.v1.png", *(p.name for p in unrelated)])
    finally:
        writer.kill()
        writer.wait()


def test_written_files_get_the_umask_mode_not_mkstemps_0600(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    write_array(path, np.zeros((2, 2), np.uint8))
    probe = tmp_path / "probe"
    probe.touch()
    assert path.stat().st_mode & 0o777 == probe.stat().st_mode & 0o777


def test_list_images_is_natural_order_and_filters_suffixes(tmp_path: Path) -> None:
    for name in ["img10.png", "img2.JPG", "img1.webp", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["img1.webp", "img2.JPG", "img10.png"]
    with pytest.raises(ImageReadError, match="nothing exists"):
        list_images(tmp_path / "missing")


def test_tensor_conversion_scales_by_bit_depth_and_rounds_back() -> None:
    pixels = np.array([[0, 32768, 65535]], dtype=np.uint16)
    tensor = to_tensor(pixels)
    assert tuple(tensor.shape) == (1, 1, 1, 3)
    assert tensor.max().item() == 1.0
    np.testing.assert_array_equal(from_tensor(tensor, np.uint16), pixels)


def test_alpha_split_and_merge_are_inverse() -> None:
    rgba = np.random.default_rng(1).integers(0, 256, (3, 4, 4), dtype=np.uint8)
    color, alpha = split_alpha(rgba)
    np.testing.assert_array_equal(merge_alpha(color, alpha), rgba)
    grey, none = split_alpha(rgba[..., 0])
    assert none is None and grey.ndim == 2


def test_names_that_tie_in_natural_order_are_listed_by_their_text(tmp_path: Path) -> None:
    """img1 and img01 are the same number: the folder's own order must not decide (ranks must agree)."""
    for name in ("img1.png", "img01.png", "img2.png", "img001.png"):
        write_array(tmp_path / name, np.zeros((2, 2), np.uint8))
    assert [p.name for p in list_images(tmp_path)] == ["img001.png", "img01.png", "img1.png", "img2.png"]
