"""Tiny generated video clips for the video tests (PyAV, the ``video`` extra, must be installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_clip(
    path: Path,
    frames: int = 24,
    size: tuple[int, int] = (64, 48),
    fps: int = 24,
    audio: bool = True,
    colour: bool = False,
    rotation: int = 0,
    times_ms: list[int] | None = None,
) -> None:
    """A tiny H.264 clip of moving gradients, with a 440 Hz AAC tone when ``audio``.

    The gradients are grey (three equal channels) unless ``colour`` shifts each channel's; ``rotation``
    is a display rotation in degrees (what a phone writes for a portrait clip); ``times_ms`` gives each
    frame's time (a variable frame rate, as phones record), overriding ``frames``.
    """
    from fractions import Fraction

    import av

    width, height = size
    shift = np.array([0, 40, 80]) if colour else np.zeros(3, int)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps, options={"crf": "20"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if rotation:
            video.set_display_rotation(rotation)
        if times_ms is not None:
            frames = len(times_ms)
            video.time_base = video.codec_context.time_base = Fraction(1, 1000)
        sound = container.add_stream("aac", rate=48000) if audio else None
        samples_per_frame = 48000 // fps
        for index in range(frames):
            ramp = (np.arange(width)[None, :, None] * 3 + index * 5 + np.arange(height)[:, None, None]) % 256
            pixels = np.broadcast_to((ramp + shift) % 256, (height, width, 3)).astype(np.uint8)
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            if times_ms is not None:
                picture.pts, picture.time_base = times_ms[index], Fraction(1, 1000)
            container.mux(video.encode(picture))
            if sound is not None:
                t = (np.arange(samples_per_frame) + index * samples_per_frame) / 48000
                tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
                chunk = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = 48000, index * samples_per_frame
                container.mux(sound.encode(chunk))
        container.mux(video.encode(None))
        if sound is not None:
            container.mux(sound.encode(None))


def count_frames(path: Path) -> int:
    """Frames a decoder gets out of the video (not what the header says)."""
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def audio_packets(path: Path) -> list[bytes]:
    """The audio stream's packets as bytes: equal lists mean the stream was copied, not re-encoded."""
    import av

    with av.open(str(path)) as container:
        return [bytes(packet) for packet in container.demux(audio=0) if packet.size]
