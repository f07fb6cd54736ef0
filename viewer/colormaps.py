"""Colormaps in plain numpy, the one robust-range helper, and legend images.

Each continuous map is a 256-entry ``uint8`` table interpolated from a few anchors, so colouring
millions of points is one ``take``. ``sequential`` is a perceptually ordered dark-blue to yellow
ramp (anchors sampled from viridis); ``diverging`` runs blue -> near-white -> red with the
saturation growing away from the centre, for signed quantities centred at zero. The viewer draws
on a dark background, where the near-white centre (zero) stays visible. ``CATEGORY_COLORS`` is a
qualitative palette (Okabe-Ito) for categorical modes: views, layers, flags.
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
NO_DATA_COLOR = (128, 128, 128)  # undefined values (no GT, not analysed, unchecked)
CATEGORY_COLORS = (
    (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66),
    (0, 114, 178), (213, 94, 0), (204, 121, 167), (255, 255, 255),
)  # fmt: skip
LEGEND_BACKGROUND = (37, 38, 43)  # the viser panel in dark mode
LEGEND_TEXT = (230, 230, 230)
LINE_HEIGHT = 13  # pixels per legend caption line in PIL's default font
BUTTON_CLEARANCE = 26  # viser draws a fullscreen button over an image's bottom-right corner
SAMPLE_LIMIT = 1_000_000  # robust ranges read at most this many values (a fixed stride)


@cache
def lut(name: str) -> np.ndarray:
    """``[256, 3]`` uint8 table of colormap ``name`` (``sequential`` or ``diverging``)."""
    if name not in _ANCHORS:
        raise ValueError(f"unknown colormap {name!r}; choose one of {', '.join(_ANCHORS)}")
    anchors = np.asarray(_ANCHORS[name], dtype=np.float64)  # [A, 3]
    stops = np.linspace(0.0, 1.0, len(anchors))
    x = np.linspace(0.0, 1.0, 256)
    table = np.stack([np.interp(x, stops, anchors[:, c]) for c in range(3)], axis=-1)
    table = np.round(table).astype(np.uint8)
    if name == "diverging":  # entries 127 and 128 both hold the exact centre: +r, -r mirror
        table[127] = table[128] = CENTER_COLOR
    table.flags.writeable = False
    return table


def apply_sequential(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Colours ``[..., 3]`` uint8 for ``values`` ``[...]`` mapped linearly from [low, high]."""
    span = max(float(high) - float(low), 1e-12)
    t = np.clip((np.asarray(values, dtype=np.float32) - low) / span, 0.0, 1.0)
    return lut("sequential")[np.rint(t * 255.0).astype(np.intp)]


def diverging_index(values: np.ndarray, limit: float) -> np.ndarray:
    """Table entries ``[...]`` for signed ``values`` on the symmetric range [-limit, limit].

    ``+r`` and ``-r`` land on mirror entries (``i`` and ``255 - i``); zero on 127/128, which
    both hold the centre colour.
    """
    limit = max(float(limit), 1e-12)
    t = np.clip(np.asarray(values, dtype=np.float32) / limit, -1.0, 1.0)  # [-1, 1]
    k = np.minimum(np.floor(np.abs(t) * 127.5 + 0.5), 127).astype(np.intp)  # steps from centre
    return np.where(t > 0, 128 + k, 127 - k)


def apply_diverging(values: np.ndarray, limit: float) -> np.ndarray:
    """Colours ``[..., 3]`` uint8 for signed ``values`` on [-limit, limit]; zero is the centre."""
    return lut("diverging")[diverging_index(values, limit)]


def apply_categories(codes: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """Colours ``[..., 3]`` uint8 of integer category ``codes`` (float, NaN: no data)."""
    codes = np.asarray(codes, dtype=np.float32)
    defined = np.isfinite(codes)
    index = np.where(defined, codes, 0).astype(np.intp)
    out = np.asarray(colors, dtype=np.uint8)[np.clip(index, 0, len(colors) - 1)]
    out[~defined] = NO_DATA_COLOR
    return out


def _finite_sample(values: np.ndarray) -> np.ndarray:
    flat = np.asarray(values, dtype=np.float32).reshape(-1)
    if flat.size > SAMPLE_LIMIT:
        flat = flat[:: int(np.ceil(flat.size / SAMPLE_LIMIT))]
    return flat[np.isfinite(flat)]


def robust_range(values: np.ndarray, low: float = 2.0, high: float = 98.0) -> tuple[float, float]:
    """The ``low``-th to ``high``-th percentile of the finite ``values`` (a strided sample).

    Never empty: ``(0, 1)`` without finite values, and ``high > low`` always.
    """
    flat = _finite_sample(values)
    if flat.size == 0:
        return 0.0, 1.0
    lo, hi = (float(x) for x in np.percentile(flat, [low, high]))
    return lo, hi if hi > lo else lo + max(abs(lo) * 1e-6, 1e-6)


def robust_limit(values: np.ndarray, percentile: float = 98.0, floor: float = 0.0) -> float:
    """Symmetric range for signed data: the ``percentile`` of ``|values|``, at least ``floor``."""
    flat = np.abs(_finite_sample(values))
    if flat.size == 0:
        return max(floor, 1.0)
    limit = max(float(np.percentile(flat, percentile)), floor)
    return limit if limit > 0 else float(flat.max()) or 1.0


# --- legends ------------------------------------------------------------------------------------


def format_number(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000 or magnitude < 0.01:
        return f"{value:.2e}"
    return f"{value:.3g}"


def _canvas(width: int, height: int):
    from PIL import Image, ImageDraw  # lazy: only the GUI and panels draw legends

    image = Image.new("RGB", (width, height), LEGEND_BACKGROUND)
    return image, ImageDraw.Draw(image)


def colorbar_image(
    name: str, low: float, high: float, label: str, width: int = 320, height: int = 64
) -> np.ndarray:
    """A legend ``[height, width, 3]`` uint8: the ramp with its end and middle values."""
    from PIL import Image

    margin = 10
    bar_height = height // 3
    ramp = lut(name)[np.linspace(0, 255, width - 2 * margin).round().astype(np.intp)]
    lines = _wrap(label, width - 2 * (margin + BUTTON_CLEARANCE))  # centred: clear both sides
    height += LINE_HEIGHT * (len(lines) - 1)  # long captions wrap instead of running off
    image, draw = _canvas(width, height)
    image.paste(Image.fromarray(np.repeat(ramp[None], bar_height, axis=0)), (margin, margin // 2))
    text_y = margin // 2 + bar_height + 4
    ticks = [
        (low, margin, "la"),
        ((low + high) / 2, width // 2, "ma"),
        (high, width - margin, "ra"),
    ]
    for value, x, anchor in ticks:
        draw.text((x, text_y), format_number(value), fill=LEGEND_TEXT, anchor=anchor)
    for row, line in enumerate(lines):
        bottom = height - 2 - LINE_HEIGHT * (len(lines) - 1 - row)
        draw.text((width // 2, bottom), line, fill=LEGEND_TEXT, anchor="md")
    return np.asarray(image)


def _wrap(text: str, width: int) -> list[str]:
    """``text`` split at spaces into lines no wider than ``width`` pixels (default font)."""
    _, draw = _canvas(1, 1)
    lines: list[str] = []
    for word in text.split(" "):
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and draw.textlength(candidate) <= width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines or [""]


Swatch = tuple[str, tuple[int, int, int]]  # (label, colour)


def categories_image(
    entries: list[Swatch], width: int = 320, row_height: int = 18, footnote: Swatch | None = None
) -> np.ndarray:
    """A legend of labelled swatches, two per row, then an optional ``footnote`` swatch whose
    label may be long (wrapped over the full width): ``[h, width, 3]`` uint8."""
    rows = max(1, (len(entries) + 1) // 2)
    half = width // 2
    note_lines = [] if footnote is None else _wrap(footnote[0], width - 28 - BUTTON_CLEARANCE)
    image, draw = _canvas(width, rows * row_height + 8 + LINE_HEIGHT * len(note_lines))

    def swatch(left: int, top: int, color) -> None:
        draw.rectangle((left, top + 2, left + 14, top + 14), fill=tuple(color),
                       outline=(90, 90, 90))  # fmt: skip

    for i, (label, color) in enumerate(entries):
        left, top = (i % 2) * half + 8, (i // 2) * row_height + 4
        swatch(left, top, color)
        draw.text((left + 20, top + 8), _fit(label, half - 28), fill=LEGEND_TEXT, anchor="lm")
    if footnote is not None:
        top = rows * row_height + 4
        swatch(8, top, footnote[1])
        for row, line in enumerate(note_lines):
            draw.text((28, top + 8 + row * LINE_HEIGHT), line, fill=LEGEND_TEXT, anchor="lm")
    return np.asarray(image)


def _fit(text: str, width: int) -> str:
    """``text`` cut with an ellipsis to at most ``width`` pixels (default font)."""
    _, draw = _canvas(1, 1)
    if draw.textlength(text) <= width:
        return text
    while text and draw.textlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


def text_image(text: str, width: int = 320, height: int = 28) -> np.ndarray:
    """A one-line legend without a colour scale (e.g. "image colours")."""
    image, draw = _canvas(width, height)
    draw.text((width // 2, height // 2), text, fill=LEGEND_TEXT, anchor="mm")
    return np.asarray(image)
