"""``restore denoise clip.mp4 OUT``: videos through the engine, with a tiny checkpoint on generated clips."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from restorecli.cli.app import app
from restorecli.engine import batch
from restorecli.images import write_array
from restorecli.video import probe
from tests.clips import audio_packets, count_frames, make_clip

av = pytest.importorskip("av", reason="PyAV (the video extra) is not installed")
runner = CliRunner()


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "clip.mp4"
    path.parent.mkdir()
    make_clip(path)
    return path


def _first_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24").astype(int)


def test_a_clip_comes_back_with_its_frames_rate_size_and_audio(checkpoint: Path, clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["denoise", str(clip), str(out), "--model", str(checkpoint), "-q"])
    assert result.exit_code == 0, result.output
    assert "1 restored (1 video, 24 frames), 0 skipped, 0 failed" in result.output
    assert sorted(path.name for path in out.iterdir()) == ["clip.mp4"]  # no temporary file left
    restored, original = probe(out / "clip.mp4"), probe(clip)
    assert count_frames(out / "clip.mp4") == 24
    assert restored.fps == original.fps == Fraction(24)
    assert (restored.width, restored.height) == (original.width, original.height) == (64, 48)
    assert restored.other_streams == ("audio",) and restored.codec == "h264"
    assert audio_packets(out / "clip.mp4") == audio_packets(clip)


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_a_portrait_phone_clip_keeps_its_display_rotation(checkpoint: Path, tmp_path: Path, rotation: int) -> None:
    clip = tmp_path / "in" / "phone.mp4"
    clip.parent.mkdir()
    make_clip(clip, frames=3, audio=False, rotation=rotation)
    result = runner.invoke(app, ["denoise", str(clip), str(tmp_path / "out"), "--model", str(checkpoint), "-q"])
    assert result.exit_code == 0, result.output
    with av.open(str(clip)) as source, av.open(str(tmp_path / "out" / "phone.mp4")) as restored:
        before, after = next(source.decode(video=0)), next(restored.decode(video=0))
    assert before.rotation == after.rotation != 0
    assert (after.width, after.height) == (before.width, before.height) == (64, 48)  # pixels as stored


def test_a_variable_frame_rate_clip_keeps_every_frames_time(checkpoint: Path, tmp_path: Path) -> None:
    """A phone's clip: 33 ms steps and one dropped frame. On a clock of 1 / average rate two frames
    landed on one tick (the encoder refused) or moved."""
    times = [0, 33, 66, 99, 132, 165, 198, 231, 264, 330, 363, 396]
    clip = tmp_path / "in" / "phone.mp4"
    clip.parent.mkdir()
    make_clip(clip, audio=False, times_ms=times)
    result = runner.invoke(app, ["denoise", str(clip), str(tmp_path / "out"), "--model", str(checkpoint), "-q"])
    assert result.exit_code == 0, result.output
    with av.open(str(tmp_path / "out" / "phone.mp4")) as restored:
        seen = [round(float(frame.time) * 1000) for frame in restored.decode(video=0)]
    assert seen == times


def test_frames_are_batched_per_model_call_with_the_same_result(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = tmp_path / "clip.mkv"
    make_clip(clip, frames=7, audio=False, colour=True)  # grey frames would go one by one, as restore_array does
    calls: list[int] = []
    real = batch.restore_tensor

    def spy(descriptor, x, options=None):  # type: ignore[no-untyped-def]
        calls.append(x.shape[0])
        return real(descriptor, x, options)

    monkeypatch.setattr(batch, "restore_tensor", spy)
    base = ["denoise", str(clip), "--model", str(checkpoint), "-q"]
    assert runner.invoke(app, [*base[:2], str(tmp_path / "one"), *base[2:]]).exit_code == 0
    assert calls == []  # one frame per call on the CPU: frame by frame through restore_array
    result = runner.invoke(app, [*base[:2], str(tmp_path / "three"), *base[2:], "--frame-batch", "3"])
    assert result.exit_code == 0, result.output
    assert calls == [3, 3]  # and the seventh frame alone, through restore_array
    assert count_frames(tmp_path / "three" / "clip.mkv") == 7
    one, three = _first_frame(tmp_path / "one" / "clip.mkv"), _first_frame(tmp_path / "three" / "clip.mkv")
    assert np.abs(one - three).mean() < 1  # the same model output, encoded alike


def test_codec_and_crf_options(checkpoint: Path, clip: Path, tmp_path: Path) -> None:
    base = ["denoise", str(clip), "--model", str(checkpoint), "-q"]
    result = runner.invoke(app, [*base[:2], str(tmp_path / "m"), *base[2:], "--video-codec", "mpeg4"])
    assert result.exit_code == 0, result.output
    assert probe(tmp_path / "m" / "clip.mp4").codec == "mpeg4"
    small = runner.invoke(app, [*base[:2], str(tmp_path / "small"), *base[2:], "--crf", "40"])
    assert small.exit_code == 0, small.output
    assert (tmp_path / "small" / "clip.mp4").stat().st_size < (tmp_path / "m" / "clip.mp4").stat().st_size
    for extra, message in (
        (["--crf", "60"], "Expected a CRF in [0, 51] for libx264, but got 60"),
        (["--video-codec", "mpeg4", "--crf", "20"], "Expected an encoder with a CRF"),
        (["--video-codec", "nonesuch"], "Expected a video encoder FFmpeg has"),
        (["--video-codec", "aac"], "Expected a video encoder, but aac encodes audio"),
    ):
        refused = runner.invoke(app, [*base[:2], str(tmp_path / "refused"), *base[2:], *extra])
        assert refused.exit_code == 1 and f"Error: {message}" in refused.output
        assert not (tmp_path / "refused").exists()  # refused before any work


def test_skip_existing_leaves_a_finished_video(checkpoint: Path, clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "clip.mp4").write_bytes(b"finished earlier")
    write_array(clip.parent / "a.png", np.zeros((20, 24, 3), np.uint8))
    args = ["denoise", str(clip.parent), str(out), "--model", str(checkpoint), "--skip-existing", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "1 restored, 1 skipped, 0 failed" in result.output
    assert (out / "clip.mp4").read_bytes() == b"finished earlier"


def test_an_interrupted_video_leaves_no_output(
    checkpoint: Path, clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_array(clip.parent / "a.png", np.zeros((20, 24, 3), np.uint8))
    calls = 0
    real = batch.restore_array

    def interrupted(descriptor, array, options=None):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 5:  # the image, then the fourth frame: Ctrl-C mid-video
            raise KeyboardInterrupt
        return real(descriptor, array, options)

    monkeypatch.setattr(batch, "restore_array", interrupted)
    out = tmp_path / "out"
    result = runner.invoke(app, ["denoise", str(clip.parent), str(out), "--model", str(checkpoint), "-q"])
    assert result.exit_code == 130  # Ctrl-C's exit status
    assert sorted(path.name for path in out.iterdir()) == ["a.png"]  # the image is whole; no video, no temp


def test_without_pyav_videos_fail_on_one_line_and_images_are_restored(
    checkpoint: Path, clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_array(clip.parent / "a.png", np.zeros((20, 24, 3), np.uint8))
    (clip.parent / "b.webm").write_bytes(b"never opened")  # videos are known by their suffix
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError, as when it is not installed
    out = tmp_path / "out"
    result = runner.invoke(app, ["denoise", str(clip.parent), str(out), "--model", str(checkpoint), "-q"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if "PyAV" in line]
    assert len(lines) == 1 and 'pip install "restorecli[video]"' in lines[0]
    assert lines[0].startswith("Warning: Skipped 2 video(s) (b.webm, clip.mp4): Expected PyAV")
    assert "1 restored, 0 skipped, 2 failed" in result.output
    assert "Error: 2 of 3 images and videos failed" in result.output
    assert [path.name for path in out.iterdir()] == ["a.png"]


def test_a_broken_video_is_reported_and_the_rest_restored(checkpoint: Path, clip: Path, tmp_path: Path) -> None:
    (clip.parent / "broken.mov").write_bytes(b"\x00\x00\x00 ftypqt  " + bytes(100))
    (clip.parent / "misnamed.webm").write_bytes(clip.read_bytes())  # WebM cannot hold its AAC track
    out = tmp_path / "out"
    result = runner.invoke(app, ["denoise", str(clip.parent), str(out), "--model", str(checkpoint), "-q"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Skipped " in result.output and "broken.mov: Expected a decodable video" in result.output
    assert "misnamed.webm: Expected streams the container takes" in result.output
    assert "1 restored (1 video, 24 frames), 0 skipped, 2 failed" in result.output
    assert [path.name for path in out.iterdir()] == ["clip.mp4"]


def test_the_frame_bar_is_drawn_unless_quiet(checkpoint: Path, tmp_path: Path) -> None:
    clip = tmp_path / "in" / "clip.avi"
    clip.parent.mkdir()
    make_clip(clip, frames=3, audio=False)
    loud = runner.invoke(app, ["denoise", str(clip), str(tmp_path / "loud"), "--model", str(checkpoint)])
    assert loud.exit_code == 0, loud.output
    assert "3/3" in loud.output and "frame/s" in loud.output
    quiet = runner.invoke(app, ["denoise", str(clip), str(tmp_path / "quiet"), "--model", str(checkpoint), "-q"])
    assert quiet.exit_code == 0 and "frame/s" not in quiet.output and "3/3" not in quiet.output
    assert probe(tmp_path / "quiet" / "clip.avi").codec == "mpeg4"  # AVI's default encoder
