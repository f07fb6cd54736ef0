"""Encoded image files to 8-bit RGB pixels, whatever PIL hands back.

Rules, one per situation a real capture brings:

* **Bit depth.** 16-bit integer images (PIL modes ``I;16*`` and ``I``, e.g. 16-bit grayscale
  PNG) are scaled from 0..65535 to 0..255; float images (mode ``F``, e.g. float TIFF, EXR where
  a PIL plugin opens it) are taken as linear values in [0, 1], clipped, and scaled (no tone
  mapping). Everything else (palette, CMYK, YCbCr, 1-bit, grayscale) goes through PIL's own
  conversion to RGB.
* **Alpha.** Images with transparency (RGBA, LA, palette or grayscale with a transparent
  colour) are composited on a **white** background (:data:`ALPHA_BACKGROUND`), the convention
  of NeRF-synthetic (Blender) scenes, whose RGBA PNGs hold black under transparent pixels.
* **EXIF orientation.** Pixels are used **as stored**; an orientation tag is reported, never
  applied. COLMAP reads images the same way (its bitmap reader turns OpenImageIO's reorienting
  off, and its FreeImage reader never applied it), so the pixels match COLMAP's cameras, whose
  width and height are those of the stored image.
* **Size.** Images over :data:`MAX_DECODE_PIXELS` are decoded at reduced size: JPEGs through
  the decoder's DCT scaling (PIL ``draft``, 1/2, 1/4 or 1/8, so the full image is never
  allocated), other formats by ``reduce`` after decoding. Sizes above PIL's
  decompression-bomb limit are refused unless the decoder can reduce them while decoding.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, JpegImagePlugin
from torch import Tensor

from .errors import CorruptImageError, ImageTooLargeError, size_text

MAX_DECODE_PIXELS = 64_000_000
"""Pixel budget of one decoded image (64 MP); larger images are reduced while decoding."""
ALPHA_BACKGROUND = 255
"""Transparent pixels are composited on white (255, 255, 255)."""
EXIF_ORIENTATION_TAG = 0x0112
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass(frozen=True)
class DecodedImage:
    """An image decoded to RGB8 and what the user should know about how."""

    pixels: Tensor  # uint8 [3, H, W]
    stored_size: tuple[int, int]  # (width, height) of the image in the file
    mode: str  # PIL mode of the file, e.g. "I;16", "RGBA", "CMYK"
    exif_orientation: int | None = None  # the tag's value when present and not 1 (upright)
    had_alpha: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) as decoded (smaller than ``stored_size`` when reduced)."""
        return int(self.pixels.shape[2]), int(self.pixels.shape[1])

    @property
    def reduced(self) -> bool:
        return self.size != self.stored_size


def bomb_limit() -> int | None:
    """PIL's decompression-bomb limit in pixels (it raises above twice MAX_IMAGE_PIXELS)."""
    return None if Image.MAX_IMAGE_PIXELS is None else 2 * Image.MAX_IMAGE_PIXELS


def _open(raw: bytes, source: str, frame: int | str) -> Image.Image:
    """Open (header only); JPEGs over PIL's bomb limit are opened anyway, since ``draft``
    will decode them at a fraction of their size."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(raw))
    except Image.DecompressionBombError as exc:
        if not raw.startswith(JPEG_MAGIC):
            raise ImageTooLargeError(source, frame, str(exc), bomb_limit()) from None
        return JpegImagePlugin.JpegImageFile(io.BytesIO(raw))


def _reduction(width: int, height: int, max_pixels: int) -> int:
    """Smallest integer factor that brings ``width x height`` within ``max_pixels``."""
    factor = 1
    while math.ceil(width / factor) * math.ceil(height / factor) > max_pixels:
        factor += 1
    return factor


def _to_rgb8(image: Image.Image) -> tuple[np.ndarray, bool]:
    """Any PIL image to ``[H, W, 3]`` uint8 and whether it had transparency."""
    mode = image.mode
    if mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.float64)
        gray = np.clip(np.rint(values * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2), False
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0)
        gray = np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2), False
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info
    if not has_alpha:
        return np.asarray(image.convert("RGB")), False
    rgba = np.asarray(image.convert("RGBA")).astype(np.float64)
    alpha = rgba[..., 3:] / 255.0
    rgb = rgba[..., :3] * alpha + ALPHA_BACKGROUND * (1.0 - alpha)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8), True


def read_image(data: Tensor | bytes, source: str, frame: int | str,
               max_pixels: int = MAX_DECODE_PIXELS) -> DecodedImage:
    """Decode encoded image bytes (fully, so truncation is caught) by the rules above.

    Args:
        data: the file's bytes (or a uint8 tensor of them, as chunks store images).
        source, frame: where the image comes from, for messages.
        max_pixels: decoded images larger than this are reduced while decoding.
    """
    raw = data.numpy().tobytes() if isinstance(data, Tensor) else bytes(data)
    try:
        image = _open(raw, source, frame)
        stored, file_mode = image.size, image.mode
        orientation = image.getexif().get(EXIF_ORIENTATION_TAG)
        factor = _reduction(*stored, max_pixels)
        if factor > 1 and image.format == "JPEG":
            scale = 1 << min(3, math.ceil(math.log2(factor)))
            image.draft(image.mode, (math.ceil(stored[0] / scale), math.ceil(stored[1] / scale)))
        limit = bomb_limit()
        if limit is not None and image.size[0] * image.size[1] > limit:
            raise ImageTooLargeError(source, frame, f"{size_text(*image.size)} even at the "
                                     "smallest decoding scale", limit)
        image.load()
        factor = _reduction(*image.size, max_pixels)
        if factor > 1:
            image = image.reduce(factor)
        pixels, had_alpha = _to_rgb8(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, ImageTooLargeError):
            raise
        raise CorruptImageError(source, frame, f"{type(exc).__name__}: {exc}") from None
    return DecodedImage(
        pixels=torch.from_numpy(np.array(pixels)).permute(2, 0, 1).contiguous(),
        stored_size=(int(stored[0]), int(stored[1])),
        mode=file_mode,
        exif_orientation=None if orientation in (None, 1) else int(orientation),
        had_alpha=had_alpha,
    )


def decode_image(data: Tensor | bytes, source: str, frame: int | str) -> Tensor:
    """Encoded image bytes to uint8 ``[3, H, W]`` RGB (see :func:`read_image`)."""
    return read_image(data, source, frame).pixels
