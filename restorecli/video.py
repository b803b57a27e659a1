"""Videos in and out: decode with PyAV, restore frame by frame, re-encode, copy the other streams.

The output has the input's frame count, frame timing (each frame keeps its timestamp) and container;
audio and subtitle streams are copied packet by packet, never re-encoded. It is written to a
temporary file beside the destination and renamed into place only when complete, so an
interrupted video leaves no partial output. PyAV is the optional extra ``restorecli[video]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from restorecli.errors import ConfigError, ImageReadError, ImageWriteError, MissingDependencyError
from restorecli.images import atomic_path

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")
INSTALL_HINT = 'pip install "restorecli[video]"'
# The encoder each container gets by default: H.264 where the container takes it, VP9 for WebM,
# MPEG-4 Part 2 for AVI (the codec AVI players expect).
DEFAULT_CODEC = {".mp4": "libx264", ".mov": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9", ".avi": "mpeg4"}
DEFAULT_CRF = 18  # visually lossless for x264; the restored frames should not lose detail again
_CRF_CODECS = {"libx264": (0, 51), "libx265": (0, 51), "libvpx-vp9": (0, 63)}

FrameRestorer = Callable[[Sequence[np.ndarray]], Sequence[np.ndarray]]
"""Restores a batch of ``(H, W, 3)`` uint8 RGB frames; returns frames of one (possibly larger) size."""


def is_video(path: Path) -> bool:
    """Whether ``path`` has a video suffix restorecli handles."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def import_av() -> ModuleType:
    """PyAV, or a MissingDependencyError naming the extra."""
    try:
        import av
    except ImportError as exc:
        raise MissingDependencyError(
            f"Expected PyAV to read and write videos, but it is not installed; {INSTALL_HINT}"
        ) from exc
    return av


@dataclass(frozen=True)
class VideoOptions:
    """How restored videos are encoded.

    Attributes:
        codec: encoder name (``libx264``, ``libvpx-vp9``, ``mpeg4``, ...); None picks the container's default.
        crf: constant rate factor for encoders that have one (lower is better quality); None: 18.
        batch: frames per call of the restorer (batching helps accelerators; one is best on a CPU);
            None: one, unless the caller knows the device (the batch engine picks per device).
    """

    codec: str | None = None
    crf: int | None = None
    batch: int | None = None

    def __post_init__(self) -> None:
        if self.batch is not None and self.batch < 1:
            raise ConfigError(f"Expected at least one frame per batch, but got {self.batch}")

    def encoder(self, suffix: str) -> str:
        return self.codec or DEFAULT_CODEC.get(suffix.lower(), "libx264")

    def encoder_options(self, codec: str) -> dict[str, str]:
        if codec not in _CRF_CODECS:
            if self.crf is not None:
                raise ConfigError(
                    f"Expected an encoder with a CRF ({', '.join(_CRF_CODECS)}) for --crf, but got {codec}"
                )
            return {}
        low, high = _CRF_CODECS[codec]
        crf = DEFAULT_CRF if self.crf is None else self.crf
        if not low <= crf <= high:
            raise ConfigError(f"Expected a CRF in [{low}, {high}] for {codec}, but got {crf}")
        options = {"crf": str(crf)}
        if codec == "libvpx-vp9":
            options["b"] = "0"  # constant quality: VP9 honours the CRF only without a target bitrate
        return options


def check_encoder(options: VideoOptions, suffix: str) -> None:
    """Refuse, before any work, the encoder ``options`` pick for a ``suffix`` video when FFmpeg lacks it,
    it encodes something other than video, or it cannot take the CRF. Without PyAV only the CRF is
    checked: the videos then fail on their own, naming the extra.

    Raises:
        ConfigError: naming the encoder.
    """
    codec = options.encoder(suffix)
    options.encoder_options(codec)
    try:
        import av
    except ImportError:
        return
    try:
        kind = av.codec.Codec(codec, "w").type
    except ValueError as exc:  # UnknownCodecError: no encoder of that name in this FFmpeg build
        raise ConfigError(
            f"Expected a video encoder FFmpeg has (e.g. libx264, libvpx-vp9, mpeg4), but got {codec!r}"
        ) from exc
    if kind != "video":
        raise ConfigError(f"Expected a video encoder, but {codec} encodes {kind}")


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe`` reads from a video's header."""

    frames: int
    fps: Fraction
    width: int
    height: int
    codec: str
    other_streams: tuple[str, ...]


def probe(path: Path) -> VideoInfo:
    """Frame count (0 when the container does not say), rate, size and the other streams' kinds."""
    av = import_av()
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ImageReadError(f"Expected a video stream, but the file has none ({path})")
            stream = container.streams.video[0]
            return VideoInfo(
                frames=int(stream.frames or 0),
                fps=Fraction(stream.average_rate or stream.guessed_rate or 0),
                width=int(stream.codec_context.width),
                height=int(stream.codec_context.height),
                codec=stream.codec_context.name,
                other_streams=tuple(s.type for s in container.streams if s is not stream),
            )
    except av.FFmpegError as exc:
        raise ImageReadError(f"Expected a decodable video, but FFmpeg says: {_one_line(exc)} ({path})") from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _batches(frames: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def restore_video(
    source: Path,
    destination: Path,
    restore_frames: FrameRestorer,
    options: VideoOptions = VideoOptions(),
    on_frames: Callable[[int], None] | None = None,
) -> int:
    """Restore every frame of ``source`` into ``destination`` (same container); returns the frame count.

    Args:
        source: the input video.
        destination: the output file, written atomically; its suffix picks the container.
        restore_frames: maps a batch of RGB frames to restored frames (the engine, in the CLI).
        options: encoder, quality and batch size.
        on_frames: called with the number of frames just written (progress bars).

    Raises:
        ImageReadError: the input cannot be decoded or has no video stream.
        ImageWriteError: the output cannot be encoded (e.g. the encoder refuses the frame size).
    """
    av = import_av()
    codec = options.encoder(destination.suffix)
    encoder_options = options.encoder_options(codec)
    try:
        source_container = av.open(str(source))
    except av.FFmpegError as exc:
        raise ImageReadError(f"Expected a decodable video, but FFmpeg says: {_one_line(exc)} ({source})") from exc
    with source_container, atomic_path(destination) as temporary:
        if not source_container.streams.video:
            raise ImageReadError(f"Expected a video stream, but the file has none ({source})")
        video = source_container.streams.video[0]
        video.thread_type = "AUTO"
        copied = [s for s in source_container.streams if s.type in ("audio", "subtitle")]
        try:
            with av.open(str(temporary), "w") as target:
                count = _transcode(
                    av,
                    source_container,
                    video,
                    copied,
                    target,
                    codec,
                    encoder_options,
                    restore_frames,
                    options,
                    on_frames,
                )
        except av.FFmpegError as exc:
            raise ImageWriteError(
                f"Expected to encode the restored video with {codec}, but FFmpeg says: {_one_line(exc)} ({source})"
            ) from exc
    return count


def _transcode(
    av: ModuleType,
    source: Any,
    video: Any,
    copied: list[Any],
    target: Any,
    codec: str,
    encoder_options: dict[str, str],
    restore_frames: FrameRestorer,
    options: VideoOptions,
    on_frames: Callable[[int], None] | None,
) -> int:
    """Demux once: video packets are decoded, restored and encoded; the others are copied as they are."""
    rate = video.average_rate or video.guessed_rate
    if not rate or rate <= 0:
        raise ImageReadError(f"Expected a positive frame rate, but the video says {rate} ({source.name})")
    try:
        outputs = {stream.index: target.add_stream_from_template(stream) for stream in copied}
    except ValueError as exc:  # e.g. an AAC track in a file named .webm
        raise ImageWriteError(f"Expected streams the container takes, but FFmpeg says: {_one_line(exc)}") from exc
    encoder: Any = None
    count = 0
    # The container header is written at the first mux, so every stream must exist by then; the video
    # stream's size is known only from the first restored frame, so copied packets wait for it.
    waiting: list[Any] = []

    def encode(batch: list[Any]) -> None:
        nonlocal encoder, count
        restored = restore_frames([frame.to_ndarray(format="rgb24") for frame in batch])
        for frame, pixels in zip(batch, restored, strict=True):
            if encoder is None:
                # Frames stay as stored (a phone's portrait clip is landscape pixels plus a display
                # rotation): the output carries the same rotation, or players would show it sideways.
                rotation = getattr(frame, "rotation", 0)  # PyAV >= 14 reads the display matrix
                encoder = _open_encoder(target, codec, rate, video, pixels.shape, encoder_options, rotation)
                for packet in waiting:
                    target.mux(packet)
                waiting.clear()
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
            picture.pts, picture.time_base = frame.pts, frame.time_base
            target.mux(encoder.encode(picture))
        count += len(batch)
        if on_frames is not None:
            on_frames(len(batch))

    def decoded() -> Iterator[Any]:
        for packet in source.demux(video, *copied):
            if packet.stream.index == video.index:
                yield from packet.decode()
            elif packet.dts is not None:
                packet.stream = outputs[packet.stream.index]
                if encoder is None:
                    waiting.append(packet)
                else:
                    target.mux(packet)

    for batch in _batches(decoded(), options.batch or 1):
        encode(batch)
    if encoder is None:
        raise ImageReadError(f"Expected at least one video frame, but decoding gave none ({source.name})")
    target.mux(encoder.encode(None))
    return count


def _open_encoder(
    target: Any,
    codec: str,
    rate: Fraction,
    video: Any,
    shape: tuple[int, ...],
    options: dict[str, str],
    rotation: float = 0,
) -> Any:
    """The output video stream, sized from the first restored frame (an upscaled video is larger), with
    the source's display ``rotation`` in degrees."""
    height, width = shape[:2]
    try:
        stream = target.add_stream(codec, rate=rate, options=options)
    except ValueError as exc:  # e.g. "'webm' format does not support 'libx264' codec"
        raise ImageWriteError(f"Expected an encoder the container takes, but FFmpeg says: {_one_line(exc)}") from exc
    stream.width, stream.height = width, height
    # The source's clock for the stream and the encoder alike: on a clock of 1 / average rate, a
    # variable-frame-rate clip's timestamps would be rounded onto that grid (moved, or two on one tick).
    stream.time_base = video.time_base
    if codec != "mpeg4" or video.time_base.denominator <= 65535:  # MPEG-4 part 2 caps its clock there
        stream.codec_context.time_base = video.time_base
    # 4:2:0 chroma needs even sides; odd-sized frames keep full chroma instead of being cropped.
    even = width % 2 == 0 and height % 2 == 0
    formats = [fmt.name for fmt in (stream.codec_context.codec.video_formats or ())]
    wanted = "yuv420p" if even else "yuv444p"
    stream.pix_fmt = wanted if not formats or wanted in formats else formats[0]
    if rotation:
        stream.set_display_rotation(rotation)
    return stream
