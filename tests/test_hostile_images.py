"""The image reader against hostile and odd files: bombs refused from the header, one true line per
bad file, no third-party noise on stderr, odd files handled honestly, names shown safely."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from restorecli.errors import (
    ConfigError,
    ImageReadError,
    ImageTooLargeError,
    OutputPathError,
    display_path,
    escape_text,
)
from restorecli.images import (
    DEFAULT_MAX_PIXELS,
    FOLLOW_SYMLINKS_ENV,
    MAX_PIXELS_ENV,
    InputPolicy,
    check_output_file,
    check_output_folder,
    encode_array,
    list_images,
    read_array,
    write_array,
)


@pytest.fixture(autouse=True)
def _default_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from the default policy and leaves the environment as it found it."""
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    monkeypatch.delenv(FOLLOW_SYMLINKS_ENV, raising=False)


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(side: int) -> bytes:
    """A 1-bit grey PNG of ``side`` x ``side`` zeros: a few KB that decode to ``side**2`` bytes."""
    row = b"\0" * (1 + (side + 7) // 8)
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def _png(tmp_path: Path, name: str = "x.png") -> Path:
    path = tmp_path / name
    write_array(path, np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    return path


def test_bomb_is_refused_from_its_header_with_one_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bomb(13_500))  # 182 MP, the 22 KB file
    assert path.stat().st_size < 30_000
    with pytest.raises(ImageTooLargeError, match=r"13500 x 13500 = 182,250,000 \(.*bomb.png\)") as info:
        read_array(path)
    assert "\n" not in str(info.value)
    assert capfd.readouterr().err == ""  # no Pillow DecompressionBombWarning, no OpenCV line


def test_pixel_limit_comes_from_the_argument_then_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _png(tmp_path)  # 2,000 pixels
    with pytest.raises(ImageTooLargeError, match="at most 1,999 pixels"):
        read_array(path, max_pixels=1999)
    assert read_array(path, max_pixels=0).shape == (40, 50, 3)  # 0 = no limit
    monkeypatch.setenv(MAX_PIXELS_ENV, "1999")
    with pytest.raises(ImageTooLargeError):
        read_array(path)
    InputPolicy(max_pixels=2000).install()
    assert read_array(path).shape == (40, 50, 3)
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(ConfigError, match="RESTORECLI_MAX_PIXELS"):
        read_array(path)
    assert InputPolicy().max_pixels == DEFAULT_MAX_PIXELS == 178_956_970
    with pytest.raises(ConfigError):
        InputPolicy(max_pixels=-1)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b"hello, world\n", "none of these"),
        (b"\x89PNG\r\n\x1a\nnot really a png", "header is corrupt or truncated"),
        (b"\xff\xd8\xff\xe0 truncated", "corrupt or truncated"),
        (b"BM" + b"\xff" * 60, "corrupt or truncated"),
        (b"GIF89a" + b"\0" * 20, "none of these"),
    ],
    ids=["empty", "text", "png-magic-only", "jpeg-magic-only", "bmp-garbage", "gif"],
)
def test_wrong_or_broken_content_is_one_true_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], content: bytes, expected: str
) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=expected) as info:
        read_array(path)
    assert "\n" not in str(info.value) and "bad.png" in str(info.value)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".webp", ".bmp"])
def test_truncated_files_fail_quietly(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], suffix: str, cut: float
) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    payload = encode_array(pixels, suffix)
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(payload[: int(len(payload) * cut)])
    try:
        array = read_array(path)  # some decoders fill a truncated tail; the shape must still be right
    except ImageReadError as exc:
        assert "\n" not in str(exc) and "cut" in str(exc)
    else:
        assert array.shape == pixels.shape
    assert capfd.readouterr().err == ""  # no "libpng error", no "[ WARN:0@...]" beside our line


def test_crc_error_is_folded_into_our_line(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    payload = bytearray(_png(tmp_path).read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    path = tmp_path / "flipped.png"
    path.write_bytes(bytes(payload))
    with pytest.raises(ImageReadError, match="corrupt or truncated"):
        read_array(path)
    assert capfd.readouterr().err == ""


def test_multi_page_tiff_and_animations_are_refused_not_cut(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 6), colour) for colour in ("red", "green", "blue")]
    for name, kind in (("pages.tif", "3 pages"), ("anim.png", "3 animation frames"), ("anim.webp", "3 animation")):
        frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:])
        with pytest.raises(ImageReadError, match=kind):
            read_array(tmp_path / name)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_grey_alpha_stays_grey_alpha(tmp_path: Path, dtype: type) -> None:
    pixels = np.random.default_rng(2).integers(0, np.iinfo(dtype).max, (9, 7, 2), dtype=dtype)
    path = tmp_path / "la.png"
    write_array(path, pixels)
    assert path.read_bytes()[25] == 4  # PNG colour type 4: grey + alpha (Pillow calls a 16-bit one RGBA)
    np.testing.assert_array_equal(read_array(path), pixels)
    Image.fromarray(pixels[..., 0].astype(np.uint8)).convert("LA").save(tmp_path / "pil.png")
    assert read_array(tmp_path / "pil.png").shape == (9, 7, 2)


def test_escape_text_shows_names_as_ls_does() -> None:
    assert escape_text("a\nb\tc\x1b[31md\x07") == "a\\nb\\tc\\033[31md\\a"
    assert display_path(b"caf\xe9.png") == "caf\\351.png"  # not UTF-8
    assert display_path("caf\u00e9 photo.png") == "caf\u00e9 photo.png"  # printable text untouched
    assert display_path("\u202egnp.exe") == "\\342\\200\\256gnp.exe"  # a bidi override cannot reorder the line
    once = escape_text("x\ny\x9b")
    assert escape_text(once) == once and once.isprintable()


def test_odd_names_are_escaped_in_messages(tmp_path: Path) -> None:
    path = tmp_path / "evil\n\x1b]0;title\x07.png"
    path.write_bytes(b"junk")
    with pytest.raises(ImageReadError) as info:
        read_array(path)
    assert str(info.value).isprintable() and "evil\\n\\033]0;title\\a.png" in str(info.value)


def test_symlinks_out_of_the_folder_are_skipped_unless_followed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "in"
    _png(folder, "a.png")
    _png(tmp_path, "secret.png")
    (folder / "inside.png").symlink_to(folder / "a.png")
    (folder / "outside.png").symlink_to(tmp_path / "secret.png")
    assert [p.name for p in list_images(folder)] == ["a.png", "inside.png"]
    assert any("outside.png" in r.getMessage() and "--follow-symlinks" in r.getMessage() for r in caplog.records)
    assert [p.name for p in list_images(folder, follow_symlinks=True)] == ["a.png", "inside.png", "outside.png"]
    InputPolicy(follow_symlinks=True).install()
    assert len(list_images(folder)) == 3


def test_output_paths_are_checked_before_work(tmp_path: Path) -> None:
    with pytest.raises(OutputPathError, match="got a folder"):
        check_output_file(tmp_path, "--csv")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputPathError, match="is a file"):
        check_output_file(tmp_path / "file" / "scores.csv", "--csv")
    with pytest.raises(OutputPathError, match="is a file"):
        check_output_folder(tmp_path / "file" / "sub", "--save")
    check_output_file(tmp_path / "new" / "scores.csv", "--csv")
    check_output_folder(tmp_path / "new", "--save")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(OutputPathError, match="writable"):
            check_output_file(locked / "scores.csv", "--csv")


_SEED_FILES = {
    suffix: encode_array(np.arange(6 * 5 * 3, dtype=np.uint8).reshape(6, 5, 3), suffix)
    for suffix in (".png", ".jpg", ".tif", ".webp", ".bmp")
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    suffix=st.sampled_from(sorted(_SEED_FILES)),
    edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 500),
)
def test_property_any_mutation_reads_or_fails_with_one_line(
    tmp_path: Path, suffix: str, edits: list[tuple[int, int]], cut: int
) -> None:
    """Byte flips and truncations of valid files: a well-formed array or one ImageReadError line, nothing else."""
    payload = bytearray(_SEED_FILES[suffix])
    for position, value in edits:
        payload[position % len(payload)] = value
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(bytes(payload[: max(1, len(payload) - cut)]))
    try:
        array = read_array(path, max_pixels=10_000)
    except ImageReadError as exc:
        assert str(exc).isprintable() and "fuzz" in str(exc)
    else:
        assert array.dtype in (np.uint8, np.uint16) and array.ndim in (2, 3) and array.size <= 10_000 * 4
