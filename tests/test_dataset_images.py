"""Every image mode a capture brings decodes to the right RGB8 values; big images are reduced
while decoding; EXIF orientation is reported, not applied."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from dsviewer.dataset.errors import ImageTooLargeError
from dsviewer.dataset.images import read_image

GRADIENT = np.tile(np.arange(0, 65536, 1024, dtype=np.uint16), (4, 1))  # [4, 64] 16-bit


def encode(image: Image.Image, fmt: str, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def rgb(data: bytes, **kwargs) -> np.ndarray:
    return read_image(data, "test", 0, **kwargs).pixels.permute(1, 2, 0).numpy().astype(int)


def test_sixteen_bit_grayscale_png_is_scaled_not_clipped():
    data = encode(Image.fromarray(GRADIENT), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    out = rgb(data)
    expected = np.rint(GRADIENT.astype(float) * 255 / 65535)
    np.testing.assert_array_equal(out[..., 0], expected)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    assert (out == 255).mean() < 0.02  # PIL's own convert("RGB") makes 99 % of this white


def test_sixteen_bit_rgb_png():
    bgr = np.stack([GRADIENT, GRADIENT[:, ::-1], np.full_like(GRADIENT, 32768)], axis=-1)
    ok, data = cv2.imencode(".png", bgr)  # OpenCV writes 48-bit PNGs, PIL does not
    assert ok
    out = rgb(data.tobytes())
    np.testing.assert_allclose(out[..., 2], GRADIENT / 257, atol=1)  # BGR on disk
    np.testing.assert_allclose(out[..., 0], 128, atol=1)


def test_float_tiff_is_linear_zero_to_one():
    values = np.linspace(-0.5, 1.5, 64, dtype=np.float32).reshape(4, 16)
    out = rgb(encode(Image.fromarray(values), "TIFF"))
    np.testing.assert_array_equal(out[..., 1], np.clip(np.rint(values.astype(float) * 255), 0, 255))


def test_alpha_is_composited_on_white():
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[0, :, 3] = [0, 128, 255]  # transparent, half, opaque
    rgba[1, :, 3] = 255
    decoded = read_image(encode(Image.fromarray(rgba, "RGBA"), "PNG"), "test", 0)
    out = decoded.pixels.permute(1, 2, 0).numpy().astype(int)
    assert decoded.had_alpha and decoded.mode == "RGBA"
    half = 128 / 255
    np.testing.assert_array_equal(out[0, :, 0], [255, round(200 * half + 255 * (1 - half)), 200])
    np.testing.assert_array_equal(out[0, :, 1], [255, round(255 * (1 - half)), 0])
    la = Image.fromarray(np.stack([np.full((2, 2), 50, np.uint8), np.zeros((2, 2), np.uint8)],
                                  -1), "LA")
    np.testing.assert_array_equal(rgb(encode(la, "PNG")), 255)


def test_palette_with_transparency_cmyk_bilevel_and_gray():
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    palette.putpixel((0, 0), 0)
    out = rgb(encode(palette, "PNG", transparency=0))
    np.testing.assert_array_equal(out[0, 0], [255, 255, 255])  # transparent index -> white
    np.testing.assert_array_equal(out[1, 1], [10, 20, 30])
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    np.testing.assert_allclose(rgb(encode(cmyk, "JPEG", quality=100))[4, 4], [255, 0, 0],
                               atol=3)
    assert rgb(encode(Image.new("1", (4, 4), 1), "PNG")).min() == 255
    np.testing.assert_array_equal(rgb(encode(Image.new("L", (4, 4), 77), "PNG")), 77)


def test_exif_orientation_is_reported_and_not_applied():
    pixels = np.zeros((6, 10, 3), dtype=np.uint8)
    pixels[0, 0] = 255  # the stored top-left pixel
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    decoded = read_image(encode(image, "JPEG", quality=100, exif=exif.tobytes()), "test", 0)
    assert decoded.exif_orientation == 6
    assert decoded.size == (10, 6)  # as stored: width 10, height 6
    assert decoded.pixels[:, 0, 0].min() > 200
    plain = read_image(encode(image, "JPEG", quality=100), "test", 0)
    assert plain.exif_orientation is None


def test_large_jpeg_is_reduced_while_decoding():
    pattern = np.kron(np.indices((30, 40)).sum(0) % 2, np.ones((100, 100)))  # 100 px checkers
    data = encode(Image.fromarray((pattern * 255).astype(np.uint8)).convert("RGB"), "JPEG",
                  quality=95)
    decoded = read_image(data, "test", 0, max_pixels=1_000_000)  # 4000x3000 = 12 MP
    assert decoded.stored_size == (4000, 3000) and decoded.size == (1000, 750)  # DCT 1/4
    out = decoded.pixels[0].numpy().astype(int)
    assert abs(out[12, 12] - 255 * pattern[50, 50]) < 10  # cell (0, 0) after 1/4 scaling


def test_large_png_is_reduced_after_decoding():
    data = encode(Image.fromarray(np.zeros((300, 400), np.uint8)), "PNG")
    decoded = read_image(data, "test", 0, max_pixels=10_000)
    assert decoded.size == (100, 75) and decoded.reduced


def test_decompression_bomb_limit(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL raises above twice this
    png = encode(Image.fromarray(np.zeros((60, 60), np.uint8)), "PNG")
    with pytest.raises(ImageTooLargeError, match=r"Frame 0 of test is too large to decode .* "
                       r"decompression-bomb limit is 0 MP"):
        read_image(png, "test", 0)
    jpeg = encode(Image.fromarray(np.zeros((80, 80), np.uint8)), "JPEG")
    decoded = read_image(jpeg, "test", 0, max_pixels=1000)  # 6400 px: DCT-scaled to 1/4
    assert decoded.size == (20, 20)
