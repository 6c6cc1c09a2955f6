import io

import numpy as np
import pytest
from conftest import colour_image
from PIL import Image

from imagefit.data.decode import check_image, extension_mismatch, open_image


def _save(image: Image.Image, path, fmt: str, **kwargs):
    image.save(path, format=fmt, **kwargs)
    return str(path)


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "RGBA", "LA", "I;16", "I", "F"])
def test_every_mode_becomes_8bit_rgb(tmp_path, mode):
    source = colour_image((200, 40, 40), seed=0)
    image = source.convert(mode) if mode not in ("I;16", "I", "F") else _high_depth(mode)
    fmt = "TIFF" if mode in ("CMYK", "I", "F", "LA") else "PNG"
    path = _save(image, tmp_path / f"x.{fmt.lower()}", fmt)
    result = open_image(path)
    assert result.mode == "RGB" and result.size == image.size


def _high_depth(mode: str) -> Image.Image:
    ramp = np.linspace(0, 65535, 40 * 36).reshape(36, 40)
    if mode == "F":
        return Image.fromarray(ramp.astype(np.float32) / 1000.0, mode="F")
    return Image.fromarray(ramp.astype(np.uint16 if mode == "I;16" else np.int32))


def test_16bit_values_are_rescaled_not_clipped(tmp_path):
    path = _save(_high_depth("I;16"), tmp_path / "deep.png", "PNG")
    pixels = np.asarray(open_image(path))
    assert pixels.min() == 0 and pixels.max() == 255 and 100 < pixels.mean() < 155


def test_transparent_pixels_become_white(tmp_path):
    image = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    pixels = np.asarray(open_image(_save(image, tmp_path / "clear.png", "PNG")))
    assert (pixels == 255).all()


def test_exif_rotated_photo_comes_upright(tmp_path):
    wide = colour_image((40, 40, 200), seed=1, size=(60, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to view
    path = _save(wide, tmp_path / "phone.jpg", "JPEG", exif=exif.tobytes())
    assert open_image(path).size == (30, 60)


def test_png_named_jpg_is_read_and_flagged(tmp_path):
    path = _save(colour_image((1, 2, 3), seed=2), tmp_path / "fake.jpg", "PNG")
    facts = check_image(path)
    assert facts.reason == "" and facts.format == "PNG" and (facts.width, facts.height) == (40, 36)
    assert extension_mismatch(path, facts.format) == "JPEG"
    assert open_image(path).mode == "RGB"


def test_truncated_jpeg_text_file_and_empty_file_fail_the_check(tmp_path):
    buffer = io.BytesIO()
    colour_image((9, 9, 9), seed=3, size=(200, 200)).save(buffer, format="JPEG")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert check_image(str(truncated)).reason == "truncated image"
    assert check_image(str(text)).reason == "not an image"
    assert check_image(str(empty)).reason.startswith("empty file")


def test_decompression_bomb_guard_stays_on(tmp_path, monkeypatch):
    path = _save(colour_image((5, 5, 5), seed=4, size=(64, 64)), tmp_path / "big.png", "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64*64 > 2 * 1000 pixels
    assert "decompression-bomb" in check_image(path).reason


def test_reduced_scale_jpeg_decode_stays_close_to_full_decode(tmp_path):
    path = _save(colour_image((120, 80, 40), seed=5, size=(400, 300)), tmp_path / "p.jpg", "JPEG", quality=95)
    drafted = open_image(path, min_size=100)
    full = open_image(path).resize(drafted.size, Image.BILINEAR)
    assert min(drafted.size) >= 100 and drafted.size[0] < 400
    difference = np.abs(np.asarray(drafted, dtype=int) - np.asarray(full, dtype=int)).mean()
    assert difference < 12
