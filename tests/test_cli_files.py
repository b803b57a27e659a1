"""File handling of the restore commands: sub-folders, output formats and names, files left alone, quiet bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from restorecli.cli.app import app
from restorecli.engine.files import find_inputs, output_name, output_paths
from restorecli.engine.options import OutputOptions
from restorecli.errors import ConfigError, ImageWriteError
from restorecli.images import convert_for_format, list_folder, read_array, write_array

runner = CliRunner()


def _pixels(shape: tuple[int, ...], dtype: type = np.uint8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


def _restore(checkpoint: Path, source: Path, out: Path, *extra: str) -> object:
    return runner.invoke(app, ["denoise", str(source), str(out), "--model", str(checkpoint), "-q", *extra])


def _tree(folder: Path) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file())


def test_a_folder_restores_images_and_videos_and_names_everything_else(checkpoint: Path, tmp_path: Path) -> None:
    from tests.clips import make_clip

    pytest.importorskip("av", reason="PyAV (the video extra) is not installed")
    source = tmp_path / "in"
    write_array(source / "a.png", _pixels((20, 24, 3)))
    write_array(source / "b.jpg", _pixels((16, 18, 3)))
    make_clip(source / "clip.mp4", frames=3, audio=False)
    (source / "notes.txt").write_text("not an image")
    (source / "data.csv").write_text("1,2")
    write_array(source / "sub" / "c.png", _pixels((12, 12, 3)))
    (source / "sub" / "more.txt").write_text("deeper")

    top = _restore(checkpoint, source, tmp_path / "top")
    assert top.exit_code == 0, top.output  # type: ignore[attr-defined]
    assert _tree(tmp_path / "top") == ["a.png", "b.jpg", "clip.mp4"]
    assert "3 restored (1 video, 3 frames), 0 skipped, 0 failed" in top.output  # type: ignore[attr-defined]
    assert (
        "; 2 other files not restored: data.csv, notes.txt; 1 sub-folder not searched (--recursive restores them): sub"
        in top.output  # type: ignore[attr-defined]
    )

    tree = _restore(checkpoint, source, tmp_path / "tree", "--recursive")
    assert tree.exit_code == 0, tree.output  # type: ignore[attr-defined]
    assert _tree(tmp_path / "tree") == ["a.png", "b.jpg", "clip.mp4", "sub/c.png"]
    assert "4 restored (1 video, 3 frames)" in tree.output  # type: ignore[attr-defined]
    assert "; 3 other files not restored: data.csv, notes.txt, sub/more.txt" in tree.output  # type: ignore[attr-defined]
    assert "sub-folder" not in tree.output  # type: ignore[attr-defined]
    assert read_array(tmp_path / "tree" / "sub" / "c.png").shape == (12, 12, 3)


def test_an_output_folder_inside_the_input_is_never_taken_as_input(checkpoint: Path, tmp_path: Path) -> None:
    source = tmp_path / "in"
    write_array(source / "a.png", _pixels((20, 24, 3)))
    write_array(source / "sub" / "b.png", _pixels((20, 24, 3), seed=1))
    out = source / "restored"
    first = _restore(checkpoint, source, out, "--recursive")
    assert first.exit_code == 0 and "2 restored" in first.output, first.output  # type: ignore[attr-defined]
    again = _restore(checkpoint, source, out, "--recursive", "--skip-existing")
    assert "0 restored, 2 skipped" in again.output, again.output  # type: ignore[attr-defined]
    top = _restore(checkpoint, source, out)
    assert "1 sub-folder not searched (--recursive restores them): sub" in top.output  # type: ignore[attr-defined]
    assert _tree(out) == ["a.png", "sub/b.png"]


def test_inputs_are_never_overwritten_whatever_the_naming(checkpoint: Path, tmp_path: Path) -> None:
    source = tmp_path / "in"
    write_array(source / "sub" / "a.png", _pixels((20, 24, 3)))
    before = (source / "sub" / "a.png").read_bytes()
    for extra in (["--recursive"], ["--recursive", "--suffix", "x"]):
        refused = _restore(checkpoint, source, source, *extra)
        assert refused.exit_code == 1  # type: ignore[attr-defined]
        assert "Error: Expected an output folder other than the input folder" in refused.output  # type: ignore[attr-defined]
    assert _tree(source) == ["sub/a.png"] and (source / "sub" / "a.png").read_bytes() == before
    # Through the library with a root, a result may land on another input: refused too.
    write_array(source / "a.png", _pixels((20, 24, 3)))
    with pytest.raises(ImageWriteError, match="would be written over the input"):
        output_paths([source / "a.png", source / "sub" / "a.png"], source / "sub", root=source)


def test_output_formats_and_jpeg_quality(checkpoint: Path, tmp_path: Path) -> None:
    source = tmp_path / "in"
    smooth = np.broadcast_to(np.linspace(0, 255, 40, dtype=np.uint8)[None, :, None], (32, 40, 3))
    write_array(source / "photo.jpg", np.ascontiguousarray(smooth))
    write_array(source / "deep.png", _pixels((18, 20, 4), np.uint16))
    same = _restore(checkpoint, source, tmp_path / "same")
    assert same.exit_code == 0, same.output  # type: ignore[attr-defined]
    assert _tree(tmp_path / "same") == ["deep.png", "photo.jpg"]  # the default keeps each format

    assert _restore(checkpoint, source, tmp_path / "png", "--ext", "png").exit_code == 0  # type: ignore[attr-defined]
    assert _tree(tmp_path / "png") == ["deep.png", "photo.png"]
    lossless = read_array(tmp_path / "png" / "deep.png")
    assert lossless.dtype == np.uint16 and lossless.shape == (18, 20, 4)

    assert _restore(checkpoint, source, tmp_path / "webp", "--ext", "webp").exit_code == 0  # type: ignore[attr-defined]
    # Lossless WebP of the same restored pixels rounded to 8 bits (libwebp blanks fully transparent ones).
    webp, expected = read_array(tmp_path / "webp" / "deep.webp"), np.round(lossless / 257).astype(np.uint8)
    visible = expected[..., 3] > 0
    np.testing.assert_array_equal(webp[visible], expected[visible])

    for quality in ("95", "20"):
        result = _restore(checkpoint, source, tmp_path / f"q{quality}", "--ext", "jpg", "--jpeg-quality", quality)
        assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
        assert _tree(tmp_path / f"q{quality}") == ["deep.jpg", "photo.jpg"]
    deep = read_array(tmp_path / "q95" / "deep.jpg")
    assert deep.dtype == np.uint8 and deep.shape == (18, 20, 3)  # JPEG: 8-bit, no alpha
    assert (tmp_path / "q20" / "photo.jpg").stat().st_size < (tmp_path / "q95" / "photo.jpg").stat().st_size
    out_of_range = _restore(checkpoint, source, tmp_path / "bad", "--jpeg-quality", "101")
    assert out_of_range.exit_code == 2 and "--jpeg-quality" in out_of_range.output  # type: ignore[attr-defined]


def test_suffix_names_outputs_and_clashing_names_are_refused(checkpoint: Path, tmp_path: Path) -> None:
    source = tmp_path / "in"
    write_array(source / "a.png", _pixels((20, 24, 3)))
    write_array(source / "b.JPG", _pixels((20, 24, 3), seed=1))
    named = _restore(checkpoint, source, tmp_path / "named", "--suffix", "restored")
    assert named.exit_code == 0, named.output  # type: ignore[attr-defined]
    assert _tree(tmp_path / "named") == ["a_restored.png", "b_restored.JPG"]

    write_array(source / "a.jpg", _pixels((20, 24, 3), seed=2))
    clash = _restore(checkpoint, source, tmp_path / "clash", "--ext", "png")
    assert clash.exit_code == 1  # type: ignore[attr-defined]
    assert "Error: Expected distinct output names" in clash.output and "both write a.png" in clash.output  # type: ignore[attr-defined]
    assert not (tmp_path / "clash").exists()

    slash = _restore(checkpoint, source, tmp_path / "slash", "--suffix", "../up")
    assert slash.exit_code == 1 and "Error: Expected a suffix without / or \\" in slash.output  # type: ignore[attr-defined]


def test_other_file_names_are_escaped_and_long_lists_cut(checkpoint: Path, tmp_path: Path) -> None:
    source = tmp_path / "in"
    write_array(source / "a.png", _pixels((20, 24, 3)))
    (source / "evil\n\x1b[31mname.txt").write_text("x")
    for index in range(11):
        (source / f"n{index}.txt").write_text("x")
    result = _restore(checkpoint, source, tmp_path / "out")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    summary = result.stdout.strip()  # type: ignore[attr-defined]
    assert "\n" not in summary and "\x1b" not in summary
    assert "12 other files not restored: evil\\n\\033[31mname.txt, n0.txt, n1.txt" in summary
    assert summary.endswith("n8.txt and 2 more")


def test_listing_order_links_and_exclusions(tmp_path: Path) -> None:
    root = tmp_path / "in"
    for name in ("b/x10.png", "b/x2.png", "a10.png", "a2.png", "b/c/deep.png", "out/old.png"):
        write_array(root / name, _pixels((4, 4, 3)))
    (root / "loop").symlink_to(root, target_is_directory=True)
    listing = list_folder(root, recursive=True, exclude=root / "out")
    natural = ["a2.png", "a10.png", "b/c/deep.png", "b/x2.png", "b/x10.png"]
    assert [p.relative_to(root).as_posix() for p in listing.files] == natural
    assert listing.unsearched == [root / "loop"]  # a link to a folder is never followed
    flat = find_inputs(root)
    assert [p.name for p in flat.images] == ["a2.png", "a10.png"]
    assert [p.name for p in flat.unsearched] == ["b", "loop", "out"]


def test_output_names_and_format_conversion() -> None:
    assert output_name(Path("x/a.JPG"), OutputOptions()) == "a.JPG"
    assert output_name(Path("a.tar.png"), OutputOptions(ext="webp", suffix="v2")) == "a.tar_v2.webp"
    assert output_name(Path("clip.mov"), OutputOptions(ext="png", suffix="clean")) == "clip_clean.mov"
    with pytest.raises(ConfigError, match="JPEG quality"):
        OutputOptions(jpeg_quality=120)
    deep = np.array([[[0, 128, 65535, 40000]]], dtype=np.uint16)
    np.testing.assert_array_equal(convert_for_format(deep, ".png"), deep)
    np.testing.assert_array_equal(convert_for_format(deep, ".webp"), [[[0, 0, 255, 156]]])
    np.testing.assert_array_equal(convert_for_format(deep, ".JPG"), [[[0, 0, 255]]])


def test_degrade_and_crop_patches_draw_no_bar_when_quiet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import restorecli.data

    write_array(tmp_path / "in" / "a.png", _pixels((40, 40, 3)))
    crop_progress: list[bool] = []
    real_crop = restorecli.data.crop_patches

    def crop_spy(*args: object, progress: bool, **kwargs: object) -> object:
        crop_progress.append(progress)  # its bar draws only on a terminal, which CliRunner is not
        return real_crop(*args, progress=progress, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(restorecli.data, "crop_patches", crop_spy)
    for quiet in ([], ["-q"]):
        out = tmp_path / f"noise{len(quiet)}"
        noisy = runner.invoke(app, ["degrade", "noise", str(tmp_path / "in"), str(out), *quiet])
        assert noisy.exit_code == 0, noisy.output
        assert ("100%" in noisy.output) is not bool(quiet)
        patches = tmp_path / f"patches{len(quiet)}"
        args = ["crop-patches", str(tmp_path / "in"), str(patches), "--size", "16", "--workers", "1", *quiet]
        assert runner.invoke(app, args).exit_code == 0
    assert crop_progress == [True, False]
