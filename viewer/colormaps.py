"""Small colormaps in plain numpy, and a colorbar legend rendered to an image.

Each map is a 256-entry ``uint8`` lookup table interpolated from a few anchor colours, so colouring
millions of points is one ``take``. ``sequential`` is a perceptually ordered dark-blue to yellow
ramp (anchors sampled from viridis); ``diverging`` runs blue -> near-white -> red with the
saturation growing monotonically away from the centre, for signed quantities centred at zero.
"""

from __future__ import annotations

from functools import cache

import numpy as np

_ANCHORS: dict[str, list[tuple[int, int, int]]] = {
    "sequential": [
        (68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141),
        (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37),
    ],
    "diverging": [
        (33, 102, 172), (103, 169, 207), (247, 247, 247), (239, 138, 98), (178, 24, 43),
    ],
}  # fmt: skip

CENTER_COLOR = (247, 247, 247)  # what zero maps to in the diverging map
COLORMAP_NAMES = tuple(_ANCHORS)


@cache
def lut(name: str) -> np.ndarray:
    """``[256, 3]`` uint8 table of colormap ``name``."""
    if name not in _ANCHORS:
        raise ValueError(f"unknown colormap {name!r}; choose one of {', '.join(_ANCHORS)}")
    anchors = np.asarray(_ANCHORS[name], dtype=np.float64)  # [A, 3]
    stops = np.linspace(0.0, 1.0, len(anchors))
    x = np.linspace(0.0, 1.0, 256)
    table = np.stack([np.interp(x, stops, anchors[:, c]) for c in range(3)], axis=-1)
    table = np.round(table).astype(np.uint8)
    table.flags.writeable = False
    return table


def apply_sequential(values: np.ndarray, low: float, high: float, name: str = "sequential"):
    """Colours ``[..., 3]`` uint8 for ``values`` ``[...]`` mapped linearly from [low, high]."""
    span = max(float(high) - float(low), 1e-12)
    t = np.clip((np.asarray(values, dtype=np.float32) - low) / span, 0.0, 1.0)
    return lut(name)[np.rint(t * 255.0).astype(np.intp)]


def diverging_index(values: np.ndarray, limit: float) -> np.ndarray:
    """Table entries ``[...]`` for signed ``values`` on the symmetric range [-limit, limit].

    ``+r`` and ``-r`` land on mirror entries (``i`` and ``255 - i``); zero on 127/128, which
    both hold the centre colour.
    """
    limit = max(float(limit), 1e-12)
    t = np.clip(np.asarray(values, dtype=np.float32) / limit, -1.0, 1.0)  # [-1, 1]
    k = np.minimum(np.floor(np.abs(t) * 127.5 + 0.5), 127).astype(np.intp)  # steps from centre
    return np.where(t > 0, 128 + k, 127 - k)


def apply_diverging(values: np.ndarray, limit: float, name: str = "diverging") -> np.ndarray:
    """Colours ``[..., 3]`` uint8 for signed ``values`` on the symmetric range [-limit, limit].

    Zero maps to :data:`CENTER_COLOR`; the sign picks the side, ``|value|`` the saturation.
    """
    return _centered(name)[diverging_index(values, limit)]


@cache
def _centered(name: str) -> np.ndarray:
    """The map with entries 127 and 128 both set to the exact centre colour."""
    table = lut(name).copy()
    mid = np.asarray(_ANCHORS[name][len(_ANCHORS[name]) // 2], dtype=np.uint8)
    table[127] = mid
    table[128] = mid
    table.flags.writeable = False
    return table


def robust_limit(values: np.ndarray, percentile: float = 98.0, max_samples: int = 1_000_000):
    """Symmetric range for signed data: the ``percentile`` of ``|values|`` (finite entries).

    At most ``max_samples`` values (a fixed strided subset) are used, so this stays cheap for
    millions of points.
    """
    flat = np.abs(np.asarray(values, dtype=np.float32).reshape(-1))
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return 1.0
    if flat.size > max_samples:
        flat = flat[:: int(np.ceil(flat.size / max_samples))]
    limit = float(np.percentile(flat, percentile))
    return limit if limit > 0 else float(flat.max()) or 1.0


def colorbar_image(
    name: str,
    low: float,
    high: float,
    label: str,
    width: int = 320,
    height: int = 64,
) -> np.ndarray:
    """A legend ``[height, width, 3]`` uint8: the colour ramp with its end and middle values."""
    from PIL import Image, ImageDraw  # lazy: only the GUI needs it

    table = _centered(name) if name == "diverging" else lut(name)
    margin = 10
    bar_height = height // 3
    ramp = table[np.linspace(0, 255, width - 2 * margin).round().astype(np.intp)]
    image = Image.new("RGB", (width, height), (255, 255, 255))
    image.paste(
        Image.fromarray(np.repeat(ramp[None], bar_height, axis=0)), (margin, margin // 2)
    )
    draw = ImageDraw.Draw(image)
    text_y = margin // 2 + bar_height + 4
    ticks = [(low, margin, "la"), ((low + high) / 2, width // 2, "ma"), (high, width - margin, "ra")]
    for value, x, anchor in ticks:
        draw.text((x, text_y), _format_number(value), fill=(20, 20, 20), anchor=anchor)
    draw.text((width // 2, height - 2), label, fill=(20, 20, 20), anchor="md")
    return np.asarray(image)


def _format_number(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000 or magnitude < 0.01:
        return f"{value:.2e}"
    return f"{value:.3g}"


def two_color_legend(
    colors: tuple[tuple[int, int, int], tuple[int, int, int]],
    labels: tuple[str, str],
    width: int = 320,
    height: int = 64,
) -> np.ndarray:
    """A legend ``[height, width, 3]`` uint8 of a two-colour flag map: two labelled swatches."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    half = width // 2
    for i, (color, label) in enumerate(zip(colors, labels, strict=True)):
        left = i * half + 10
        draw.rectangle((left, 12, left + 28, 40), fill=tuple(color), outline=(60, 60, 60))
        draw.text((left + 36, 26), label, fill=(20, 20, 20), anchor="lm")
    return np.asarray(image)
