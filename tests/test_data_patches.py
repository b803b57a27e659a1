"""crop-patches: BasicSR positions, bit-exact reassembly, pairs, small images, resume, worker independence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from restorecli.data import CropOptions, crop_patches, patch_boxes, patch_name, patch_starts, plan_crop, read_manifest
from restorecli.errors import ConfigError, DatasetError
from restorecli.images import read_array, write_array


def _image(height: int, width: int, channels: int = 3, dtype: type = np.uint8) -> np.ndarray:
    high = np.iinfo(dtype).max + 1
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.random.randint(0, high, size=shape, dtype=np.int64).astype(dtype)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# Hand-computed with the rule "0, step, 2*step, ... while a patch fits, plus length - size when the
# remainder exceeds thresh_size" (DIV2K practice: size 480, step 240, thresh 0).
@pytest.mark.parametrize(
    ("length", "thresh", "expected"),
    [
        (480, 0, [0]),
        (481, 0, [0, 1]),
        (720, 0, [0, 240]),
        (2040, 0, [0, 240, 480, 720, 960, 1200, 1440, 1560]),
        (1356, 0, [0, 240, 480, 720, 876]),
        (300, 0, []),
        (481, 1, [0]),  # remainder 1 is not above the threshold
        (500, 10, [0, 20]),
        (1356, 156, [0, 240, 480, 720]),
    ],
)
def test_patch_starts_follow_basicsr_rule(length: int, thresh: int, expected: list[int]) -> None:
    assert patch_starts(length, 480, 240, thresh) == expected


@pytest.mark.parametrize(
    ("width", "height", "count"),
    [(480, 480, 1), (481, 720, 4), (2040, 1356, 40), (300, 300, 0)],
)
def test_patch_counts_for_reference_sizes(width: int, height: int, count: int) -> None:
    assert len(patch_boxes(height, width, 480, 240)) == count


def test_boxes_are_row_major_and_names_count_from_one() -> None:
    boxes = patch_boxes(720, 481, 480, 240)
    assert [(b.x, b.y) for b in boxes] == [(0, 0), (1, 0), (0, 240), (1, 240)]
    assert patch_name("0801", 1) == "0801_s001.png"
    assert patch_name("0801", 40) == "0801_s040.png"


def test_small_image_policies_plan() -> None:
    assert plan_crop(300, 300, CropOptions(small="skip")) == ([], False)
    boxes, pad = plan_crop(300, 200, CropOptions(small="whole"))
    assert [(b.x, b.y, b.w, b.h) for b in boxes] == [(0, 0, 200, 300)] and not pad
    boxes, pad = plan_crop(300, 720, CropOptions(small="pad"))  # only the height is short
    assert pad and [(b.x, b.y, b.w, b.h) for b in boxes] == [(0, 0, 480, 300), (240, 0, 480, 300)]


@pytest.mark.parametrize("bad", [{"size": 0}, {"step": 0}, {"thresh_size": -1}, {"png_compression": 10}])
def test_invalid_options_raise_config_error(bad: dict[str, int]) -> None:
    with pytest.raises(ConfigError, match="Expected"):
        CropOptions(**bad)


@pytest.mark.parametrize(
    ("channels", "dtype"), [(3, np.uint8), (1, np.uint8), (4, np.uint8), (3, np.uint16), (4, np.uint16)]
)
def test_patches_reassemble_bit_exactly(tmp_path: Path, channels: int, dtype: type) -> None:
    image = _image(130, 200, channels, dtype)
    write_array(tmp_path / "in" / "pic.png", image)
    report = crop_patches(tmp_path / "in", tmp_path / "out", CropOptions(size=64, step=48), workers=1)

    rows = read_manifest(report.manifest)
    # x starts 0, 48, 96, 136 (flush); y starts 0, 48, 66 (flush) -> 12 patches
    assert report.patches == len(rows) == 12 and report.written == 12 and not report.failures
    canvas = np.zeros_like(image)
    covered = np.zeros(image.shape[:2], dtype=bool)
    for row in rows:
        patch = read_array(tmp_path / "out" / str(row["patch"]))
        assert patch.dtype == image.dtype and patch.shape[:2] == (64, 64)
        x, y, w, h = (int(row[k]) for k in ("x", "y", "w", "h"))
        assert np.array_equal(patch, image[y : y + h, x : x + w])
        canvas[y : y + h, x : x + w] = patch
        covered[y : y + h, x : x + w] = True
    assert covered.all() and np.array_equal(canvas, image)
    assert rows[0]["source"] == "pic.png" and rows[0]["patch"] == "pic_s001.png"


def test_full_size_2k_image_gives_40_patches_at_basicsr_positions(tmp_path: Path) -> None:
    image = np.zeros((1356, 2040), dtype=np.uint8)  # flat: fast to encode, positions are what matter
    image[::7, ::5] = 255
    write_array(tmp_path / "in" / "0801.png", image)
    report = crop_patches(tmp_path / "in", tmp_path / "out", workers=1)
    rows = read_manifest(report.manifest)
    assert len(rows) == 40
    assert rows[7] == {"patch": "0801_s008.png", "source": "0801.png", "x": 1560, "y": 0, "w": 480, "h": 480}
    assert rows[-1]["x"] == 1560 and rows[-1]["y"] == 876
    last = read_array(tmp_path / "out" / "0801_s040.png")
    assert np.array_equal(last, image[876:, 1560:])


def test_pairs_are_cut_at_identical_positions_with_shared_names(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for item_id, (h, w) in {"a": (100, 150), "b": (90, 64)}.items():
        degraded = _image(h, w)
        write_array(root / "input" / f"{item_id}.png", degraded)
        write_array(root / "target" / f"{item_id}.png", 255 - degraded)
    report = crop_patches(root, tmp_path / "out", CropOptions(size=64, step=32), workers=1)

    assert report.folders == ("input", "target") and not report.failures
    names_in = sorted(p.name for p in (tmp_path / "out" / "input").iterdir())
    names_gt = sorted(p.name for p in (tmp_path / "out" / "target").iterdir())
    assert names_in == names_gt and len(names_in) == 3 * 4 + 2 * 1
    for name in names_in:
        degraded = read_array(tmp_path / "out" / "input" / name)
        assert np.array_equal(read_array(tmp_path / "out" / "target" / name), 255 - degraded)
    rows = read_manifest(report.manifest)
    assert [r["patch"] for r in rows[:2]] == ["input/a_s001.png", "target/a_s001.png"]


def test_masks_with_name_pattern_pair_with_images(tmp_path: Path) -> None:
    root = tmp_path / "sirst"
    image, mask = _image(70, 70, channels=4), _image(70, 70, channels=1)
    write_array(root / "images" / "Misc_1.png", image)
    write_array(root / "masks" / "Misc_1_pixels0.png", mask)
    report = crop_patches(
        root, tmp_path / "out", CropOptions(size=64, step=64), patterns={"masks": "{id}_pixels0"}, workers=1
    )
    assert report.patches == 2 * 4
    assert np.array_equal(read_array(tmp_path / "out" / "masks" / "Misc_1_s004.png"), mask[6:70, 6:70])
    assert np.array_equal(read_array(tmp_path / "out" / "images" / "Misc_1_s004.png"), image[6:70, 6:70])


def test_mismatched_incomplete_and_corrupt_inputs_are_reported_and_skipped(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for name, (h, w) in {"good": (64, 64), "sizes": (64, 64)}.items():
        write_array(root / "input" / f"{name}.png", _image(h, w))
    write_array(root / "target" / "good.png", _image(64, 64))
    write_array(root / "target" / "sizes.png", _image(64, 65))
    write_array(root / "input" / "lonely.png", _image(64, 64))
    write_array(root / "input" / "broken.png", _image(64, 64))
    (root / "target" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")

    report = crop_patches(root, tmp_path / "out", CropOptions(size=64, step=64), workers=1)
    assert set(report.failures) == {"sizes", "lonely", "broken"}
    assert "65x64" in report.failures["sizes"] and "target" in report.failures["lonely"]
    assert report.cropped == 1 and report.patches == 2
    assert [r["patch"] for r in read_manifest(report.manifest)] == ["input/good_s001.png", "target/good_s001.png"]


def test_small_images_skip_whole_and_mirror_pad(tmp_path: Path) -> None:
    image = _image(20, 30)
    write_array(tmp_path / "in" / "tiny.png", image)
    write_array(tmp_path / "in" / "big.png", _image(48, 48))
    options = {"size": 48, "step": 24}

    skipped = crop_patches(tmp_path / "in", tmp_path / "skip", CropOptions(**options), workers=1)
    assert (skipped.small, skipped.cropped, skipped.patches, skipped.failures) == (1, 1, 1, {})

    whole = crop_patches(tmp_path / "in", tmp_path / "whole", CropOptions(**options, small="whole"), workers=1)
    assert whole.small == 1 and np.array_equal(read_array(tmp_path / "whole" / "tiny_s001.png"), image)

    padded = crop_patches(tmp_path / "in", tmp_path / "pad", CropOptions(**options, small="pad"), workers=1)
    patch = read_array(tmp_path / "pad" / "tiny_s001.png")
    assert patch.shape == (48, 48, 3)
    assert np.array_equal(patch[:20, :30], image)
    assert np.array_equal(patch[20, :30], image[19]) and np.array_equal(patch[21, :30], image[18])
    assert np.array_equal(patch[:20, 30], image[:, 29])
    tiny_row = next(r for r in read_manifest(padded.manifest) if r["patch"] == "tiny_s001.png")
    assert (tiny_row["w"], tiny_row["h"]) == (30, 20)


def test_worker_count_does_not_change_output(tmp_path: Path) -> None:
    for index in range(4):
        write_array(tmp_path / "in" / f"img{index}.png", _image(80 + 9 * index, 100))
    options = CropOptions(size=40, step=30)
    crop_patches(tmp_path / "in", tmp_path / "one", options, workers=1)
    crop_patches(tmp_path / "in", tmp_path / "two", options, workers=2)
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")


def test_skip_existing_resumes_and_nonempty_output_is_refused(tmp_path: Path) -> None:
    write_array(tmp_path / "in" / "a.png", _image(64, 96))
    options = CropOptions(size=32, step=32)
    first = crop_patches(tmp_path / "in", tmp_path / "out", options, workers=1)
    manifest = first.manifest.read_bytes()
    (tmp_path / "out" / "a_s002.png").unlink()

    with pytest.raises(DatasetError, match="empty output folder"):
        crop_patches(tmp_path / "in", tmp_path / "out", options, workers=1)
    resumed = crop_patches(
        tmp_path / "in", tmp_path / "out", CropOptions(size=32, step=32, skip_existing=True), workers=1
    )
    assert (resumed.written, resumed.existing, resumed.patches) == (1, 5, 6)
    assert resumed.manifest.read_bytes() == manifest
    assert not list((tmp_path / "out").glob(".*"))  # no temp files left behind
    overwritten = crop_patches(tmp_path / "in", tmp_path / "out", options, workers=1, overwrite=True)
    assert overwritten.written == 6


def test_list_limits_ids_and_unknown_ids_fail(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        write_array(tmp_path / "in" / f"{name}.png", _image(32, 32))
    (tmp_path / "train.txt").write_bytes(b"c\r\na\r\n")
    report = crop_patches(
        tmp_path / "in", tmp_path / "out", CropOptions(size=32, step=32), list_path=tmp_path / "train.txt", workers=1
    )
    assert [r["patch"] for r in read_manifest(report.manifest)] == ["a_s001.png", "c_s001.png"]

    (tmp_path / "bad.txt").write_text("a\nzzz\n")
    with pytest.raises(DatasetError, match="1 are absent: zzz"):
        crop_patches(tmp_path / "in", tmp_path / "out2", list_path=tmp_path / "bad.txt", workers=1)


def test_output_inside_sources_and_unpaired_layout_are_refused(tmp_path: Path) -> None:
    write_array(tmp_path / "in" / "a.png", _image(32, 32))
    with pytest.raises(DatasetError, match="apart from the images"):
        crop_patches(tmp_path / "in", tmp_path / "in", CropOptions(size=32, step=32, skip_existing=True))
    write_array(tmp_path / "sirst" / "images" / "Misc_1.png", _image(32, 32))
    write_array(tmp_path / "sirst" / "masks" / "Misc_1_pixels0.png", _image(32, 32, 1))
    with pytest.raises(DatasetError, match=r"none is complete; .*--pattern masks=\{id\}_pixels0"):
        crop_patches(tmp_path / "sirst", tmp_path / "out")


def test_a_folder_cut_otherwise_is_not_resumed_and_overwrite_leaves_no_stale_patches(tmp_path: Path) -> None:
    write_array(tmp_path / "in" / "a.png", _image(64, 96))
    out = tmp_path / "out"
    small = crop_patches(tmp_path / "in", out, CropOptions(size=16, step=16), workers=1)
    assert small.patches == 24
    with pytest.raises(DatasetError, match="holds patches cut with size 16, step 16.*asks size 32, step 16"):
        crop_patches(tmp_path / "in", out, CropOptions(size=32, step=16, skip_existing=True), workers=1)
    assert len(list(out.glob("*.png"))) == 24  # refused before touching anything
    large = crop_patches(tmp_path / "in", out, CropOptions(size=32, step=16), workers=1, overwrite=True)
    names = {str(row["patch"]) for row in read_manifest(large.manifest)}
    assert {path.name for path in out.glob("*.png")} == names and len(names) == large.patches == 15
    assert all(read_array(out / name).shape[:2] == (32, 32) for name in names)
    resumed = crop_patches(tmp_path / "in", out, CropOptions(size=32, step=16, skip_existing=True), workers=1)
    assert (resumed.written, resumed.existing) == (0, 15)
