"""Videos: frame count, rate, size and the audio stream survive restoration; failures leave no file."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from restorecli.errors import ConfigError, ImageReadError
from restorecli.video import VideoOptions, probe, restore_video
from tests.clips import audio_packets, count_frames, make_clip

av = pytest.importorskip("av", reason="PyAV (the video extra) is not installed")


def test_a_clip_keeps_frames_rate_size_and_its_audio(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    make_clip(clip)
    seen: list[int] = []
    count = restore_video(
        clip,
        tmp_path / "out" / "clip.mp4",
        lambda frames: [255 - f for f in frames],
        VideoOptions(batch=5),
        seen.append,
    )
    out = tmp_path / "out" / "clip.mp4"
    info, original = probe(out), probe(clip)
    assert count == 24 == count_frames(out) and sum(seen) == 24 and seen[:2] == [5, 5]
    assert info.fps == original.fps == Fraction(24) and (info.width, info.height) == (64, 48)
    assert info.other_streams == ("audio",)
    assert audio_packets(out) == audio_packets(clip)  # copied, not re-encoded
    with av.open(str(out)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    with av.open(str(clip)) as container:
        source = next(container.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    assert np.abs((255 - source) - first).mean() < 6  # the restorer's output, through one lossy encode


def test_upscaled_frames_set_the_output_size_and_odd_sizes_encode(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mkv"
    make_clip(clip, frames=3, audio=False)
    out = tmp_path / "big.mkv"
    restore_video(clip, out, lambda frames: [np.repeat(np.repeat(f, 2, 0), 2, 1)[:-1, :-1] for f in frames])
    info = probe(out)
    assert (info.width, info.height) == (127, 95) and count_frames(out) == 3


def test_an_interrupted_video_leaves_no_output_and_no_temporary_file(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    make_clip(clip, frames=6)
    calls = 0

    def failing(frames):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt
        return frames

    with pytest.raises(KeyboardInterrupt):
        restore_video(clip, tmp_path / "out" / "clip.mp4", failing)
    assert list((tmp_path / "out").iterdir()) == []


def test_broken_input_and_bad_options_are_clear_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00 ftypisom" + bytes(200))
    with pytest.raises(ImageReadError, match="broken.mp4"):
        restore_video(broken, tmp_path / "out.mp4", lambda f: f)
    assert not (tmp_path / "out.mp4").exists()
    with pytest.raises(ConfigError, match="CRF"):
        VideoOptions(codec="mpeg4", crf=20).encoder_options("mpeg4")
    with pytest.raises(ConfigError, match=r"\[0, 51\]"):
        VideoOptions(crf=80).encoder_options("libx264")
