"""ICC colour profiles carried from an input image to its restored output.

A phone photo in Display P3 or a scan in Adobe RGB says so in an embedded profile; written without
it, colour-managed viewers read the pixels as sRGB and the colours shift. Pillow reads the profile from
a header (PNG ``iCCP``, JPEG ``APP2``, WebP ``ICCP``, TIFF tag 34675); OpenCV, which encodes the
outputs, writes none, so the profile is spliced into the encoded PNG or JPEG bytes here. Other output
formats are written without it.
"""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

from PIL import Image

from restorecli.images import PILLOW_LOCK

# The profile's colour space (bytes 16-19 of its header) must match the pixels it describes.
_SPACE_CHANNELS = {b"RGB ": (3, 4), b"GRAY": (1, 2)}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_ICC_TAG = b"ICC_PROFILE\x00"
_JPEG_SEGMENT_DATA = 65533 - len(_JPEG_ICC_TAG) - 2  # a segment's length field counts itself and 2 sequence bytes


def read_icc_profile(path: Path) -> bytes | None:
    """The ICC profile embedded in the image at ``path`` (header only, no pixel decode); None without one
    or when the header cannot be read (reading the pixels reports that)."""
    try:
        # Pillow's warnings (a large image's DecompressionBombWarning) were said when the pixels were read.
        with PILLOW_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                profile = image.info.get("icc_profile")
    except Exception:  # noqa: BLE001 - any unreadable header means no profile to carry
        return None
    return bytes(profile) if profile else None


def embed_icc_profile(payload: bytes, suffix: str, profile: bytes | None, channels: int) -> bytes:
    """``payload`` (an encoded PNG or JPEG) with ``profile`` embedded; unchanged for other formats, without
    a profile, or when the profile's colour space does not fit ``channels`` (an RGB profile on a grey
    output would be invalid)."""
    if not profile or len(profile) < 20 or channels not in _SPACE_CHANNELS.get(profile[16:20], ()):
        return payload
    suffix = suffix.lower()
    if suffix == ".png" and payload.startswith(_PNG_SIGNATURE):
        return _png_with_profile(payload, profile)
    if suffix in (".jpg", ".jpeg") and payload.startswith(b"\xff\xd8"):
        return _jpeg_with_profile(payload, profile)
    return payload


def _png_with_profile(payload: bytes, profile: bytes) -> bytes:
    """An ``iCCP`` chunk right after ``IHDR`` (it must precede the image data)."""
    data = b"icc\x00\x00" + zlib.compress(profile)  # name, separator, compression method 0 (zlib)
    chunk = struct.pack(">I", len(data)) + b"iCCP" + data + struct.pack(">I", zlib.crc32(b"iCCP" + data))
    after_header = len(_PNG_SIGNATURE) + 8 + struct.unpack(">I", payload[8:12])[0] + 4
    return payload[:after_header] + chunk + payload[after_header:]


def _jpeg_with_profile(payload: bytes, profile: bytes) -> bytes:
    """``APP2 ICC_PROFILE`` segments (the profile split as the ICC specification's annex B says) after the
    ``APP0``/``APP1`` segments that must come first."""
    pieces = [profile[start : start + _JPEG_SEGMENT_DATA] for start in range(0, len(profile), _JPEG_SEGMENT_DATA)]
    if len(pieces) > 255:
        return payload  # beyond what the format can hold (16 MB): written without it
    segments = b"".join(
        b"\xff\xe2" + struct.pack(">H", 2 + len(_JPEG_ICC_TAG) + 2 + len(piece)) + _JPEG_ICC_TAG
        + bytes((index, len(pieces))) + piece
        for index, piece in enumerate(pieces, start=1)
    )  # fmt: skip
    position = 2
    while payload[position : position + 1] == b"\xff" and payload[position + 1] in (0xE0, 0xE1):
        position += 2 + struct.unpack(">H", payload[position + 2 : position + 4])[0]
    return payload[:position] + segments + payload[position:]
