"""Open any image a user may have as an upright 8-bit RGB PIL image.

Handles files and zip members, EXIF orientation, grayscale, palette, RGBA/LA (composited on
white), CMYK and 16-bit or float images. PIL's decompression-bomb guard stays on.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
from PIL import Image, ImageOps

from imagefit.data.samples import ZIP_SEPARATOR, remote_url

# What a file's extension promises, for the wrong-extension warning.
EXTENSION_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".png": "PNG",
    ".gif": "GIF",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".ppm": "PPM",
    ".pgm": "PPM",
}


@functools.lru_cache(maxsize=8)
def _open_zip(archive: str, pid: int) -> zipfile.ZipFile:
    # One handle per process: a handle inherited through fork shares its file offset with the parent.
    del pid
    return zipfile.ZipFile(archive)


# No image file a user means is this large; a bigger one (or a zip member that says so, or expands to
# more) is skipped as unreadable rather than read whole into memory.
MAX_FILE_BYTES = 256 * 2**20


class TooLarge(OSError):
    """A file or zip member over MAX_FILE_BYTES."""


def read_bytes(locator: str) -> bytes:
    """The raw bytes of a file or zip member; TooLarge (an OSError) past MAX_FILE_BYTES, never read whole."""
    if ZIP_SEPARATOR in locator:
        archive, member = locator.split(ZIP_SEPARATOR, 1)
        if os.path.isdir(archive) or remote_url(archive):  # shards (imagefit shard), a folder or URL: INDEX/NAME
            from imagefit.data.shards import read_shard_item

            return _capped(read_shard_item(archive, member))
        handle = _open_zip(archive, os.getpid())
        if handle.getinfo(member).file_size > MAX_FILE_BYTES:
            raise TooLarge(f"too large ({handle.getinfo(member).file_size // 2**20} MB unpacked)")
        with handle.open(member) as stream:
            return _capped(stream.read(MAX_FILE_BYTES + 1))
    if os.path.getsize(locator) > MAX_FILE_BYTES:
        raise TooLarge(f"too large ({os.path.getsize(locator) // 2**20} MB)")
    with open(locator, "rb") as stream:
        return _capped(stream.read(MAX_FILE_BYTES + 1))


def _capped(data: bytes) -> bytes:
    if len(data) > MAX_FILE_BYTES:  # the zip directory (or a growing file) understated the size
        raise TooLarge(f"too large (over {MAX_FILE_BYTES // 2**20} MB)")
    return data


# Everything that means "this file is not an image we can read": missing or too large, not an image,
# truncated, a zip member that is gone or damaged, or over PIL's pixel limit (its bomb guard).
UNREADABLE = (OSError, ValueError, SyntaxError, EOFError, KeyError, zipfile.BadZipFile, Image.DecompressionBombError)


def unreadable_reason(exc: BaseException) -> str:
    """A short reason for a file that could not be read (one of UNREADABLE), for warnings and skip lists."""
    if isinstance(exc, Image.DecompressionBombError):
        return "too many pixels (PIL decompression-bomb guard); shrink it"
    text = str(exc)
    if "cannot identify image file" in text:
        return "not an image"
    if "truncated" in text:
        return "truncated image"
    if isinstance(exc, KeyError):
        return "missing from its zip"
    return text.split("\n")[0][:80] or type(exc).__name__


def open_image(locator: str, *, min_size: int = 0) -> Image.Image:
    """An upright RGB image; JPEGs decode at a reduced scale when `min_size` allows (PIL draft)."""
    return image_from_bytes(read_bytes(locator), min_size=min_size)


def image_from_bytes(data: bytes, *, min_size: int = 0) -> Image.Image:
    """`open_image` for bytes already in memory (an upload): upright, RGB, PIL's bomb guard on."""
    image = Image.open(io.BytesIO(data))
    if min_size and image.format in ("JPEG", "MPO"):
        # draft keeps both sides >= the requested size, so the crop that follows loses nothing.
        image.draft("RGB", (min_size, min_size))
    image.load()
    return to_rgb(ImageOps.exif_transpose(image))


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode as 8-bit RGB; transparency becomes white, high bit depths are rescaled."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _high_depth_to_rgb(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    values = np.asarray(image, dtype=np.float64)
    top = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
    if image.mode == "F":
        low, high = float(values.min(initial=0)), float(values.max(initial=1))
        values, top = values - low, max(high - low, 1e-12)
    scaled = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, mode="L").convert("RGB")


@dataclass(frozen=True)
class ImageFacts:
    """What one file check found: why it is unusable ('' if usable), its format, size, mode and content hash."""

    reason: str
    format: str = ""
    width: int = 0
    height: int = 0
    mode: str = ""
    sha256: str = ""
    bytes: int = 0


def check_image(locator: str) -> ImageFacts:
    """Read and decode one file (JPEGs at 1/8 scale: a truncated file still fails) and report what it is."""
    try:
        data = read_bytes(locator)
    except UNREADABLE as exc:
        return ImageFacts(reason=unreadable_reason(exc))
    digest = hashlib.sha256(data).hexdigest()
    if not data:
        return ImageFacts(reason="empty file (0 bytes)", sha256=digest)
    try:
        image = Image.open(io.BytesIO(data))
        facts = ImageFacts("", image.format or "", image.width, image.height, image.mode, digest, len(data))
        if facts.format in ("JPEG", "MPO"):
            image.draft("RGB", (64, 64))
        image.load()
        return facts
    except UNREADABLE as exc:
        return ImageFacts(reason=unreadable_reason(exc), sha256=digest, bytes=len(data))


def extension_mismatch(locator: str, image_format: str) -> str:
    """The format a file's extension promises when its content is another, else ''."""
    expected = EXTENSION_FORMATS.get(PurePosixPath(locator).suffix.lower(), "")
    actual = "JPEG" if image_format == "MPO" else image_format  # camera JPEGs with a preview read as MPO
    return expected if expected and actual and actual != expected else ""
