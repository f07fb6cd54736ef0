"""COLMAP's camera models: names, parameter layouts, and checks on their values.

A :class:`Camera` holds a model name and its parameters in COLMAP's order and pixel units
(``fx fy cx cy`` or ``f cx cy``, then the distortion coefficients), for a ``width x height``
image whose top-left pixel centre is at ``(0.5, 0.5)`` (COLMAP's convention, and ours after
dividing by width and height).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import (
    PANORAMA_ADVICE,
    ImplausibleCameraError,
    IntrinsicsError,
    UnsupportedCameraError,
)

# COLMAP model id -> (name, parameter names), as in COLMAP's sensor/models.h.
CAMERA_MODELS: dict[int, tuple[str, tuple[str, ...]]] = {
    0: ("SIMPLE_PINHOLE", ("f", "cx", "cy")),
    1: ("PINHOLE", ("fx", "fy", "cx", "cy")),
    2: ("SIMPLE_RADIAL", ("f", "cx", "cy", "k")),
    3: ("RADIAL", ("f", "cx", "cy", "k1", "k2")),
    4: ("OPENCV", ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2")),
    5: ("OPENCV_FISHEYE", ("fx", "fy", "cx", "cy", "k1", "k2", "k3", "k4")),
    6: ("FULL_OPENCV", ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6")),
    7: ("FOV", ("fx", "fy", "cx", "cy", "omega")),
    8: ("SIMPLE_RADIAL_FISHEYE", ("f", "cx", "cy", "k")),
    9: ("RADIAL_FISHEYE", ("f", "cx", "cy", "k1", "k2")),
    10: ("THIN_PRISM_FISHEYE",
         ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "sx1", "sy1")),
    11: ("RAD_TAN_THIN_PRISM_FISHEYE",
         ("fx", "fy", "cx", "cy", "k0", "k1", "k2", "k3", "k4", "k5", "p0", "p1", "s0", "s1",
          "s2", "s3")),
    12: ("SIMPLE_DIVISION", ("f", "cx", "cy", "k")),
    13: ("DIVISION", ("fx", "fy", "cx", "cy", "k")),
    14: ("SIMPLE_FISHEYE", ("f", "cx", "cy")),
    15: ("FISHEYE", ("fx", "fy", "cx", "cy")),
    16: ("EUCM", ("fx", "fy", "cx", "cy", "alpha", "beta")),
    17: ("EQUIRECTANGULAR", ("w", "h")),
}
PARAMETERS = {name: params for name, params in CAMERA_MODELS.values()}
PINHOLE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE")
SPHERICAL_MODELS = ("EQUIRECTANGULAR",)
FISHEYE_PROJECTION = ("OPENCV_FISHEYE", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE",
                      "THIN_PRISM_FISHEYE", "RAD_TAN_THIN_PRISM_FISHEYE", "SIMPLE_FISHEYE",
                      "FISHEYE")
PLAUSIBLE_FOV_DEGREES = (1.0, 170.0)
"""Fields of view (2 atan(size / 2f), per axis) outside this range are no camera a capture
was taken with: a focal length in the wrong unit (normalized, millimetres) or a broken file."""


@dataclass(frozen=True)
class Camera:
    """One camera of a capture: COLMAP model name, image size and parameters (pixels)."""

    model: str
    width: int
    height: int
    params: tuple[float, ...]

    @property
    def pinhole(self) -> tuple[float, float, float, float]:
        """``(fx, fy, cx, cy)`` in pixels."""
        if PARAMETERS[self.model][0] == "f":
            f, cx, cy = self.params[:3]
            return f, f, cx, cy
        fx, fy, cx, cy = self.params[:4]
        return fx, fy, cx, cy

    @property
    def distortion(self) -> tuple[float, ...]:
        """The parameters after focal length(s) and principal point."""
        return self.params[3:] if PARAMETERS[self.model][0] == "f" else self.params[4:]

    @property
    def has_distortion(self) -> bool:
        """True unless the projection is a plain pinhole (fisheye models always distort)."""
        return self.model in FISHEYE_PROJECTION or any(k != 0 for k in self.distortion)

    def scaled(self, width: int, height: int) -> Camera:
        """The same camera for the image resized to ``width x height`` (distortion, which acts
        on normalized coordinates, is unchanged)."""
        sx, sy = width / self.width, height / self.height
        fx, fy, cx, cy = self.pinhole
        if PARAMETERS[self.model][0] == "f":
            head: tuple[float, ...] = (fx * sx, cx * sx, cy * sy)
        else:
            head = (fx * sx, fy * sy, cx * sx, cy * sy)
        return Camera(self.model, width, height, head + self.distortion)

    def downscaled(self, factor: int) -> Camera:
        """The camera of the images a capture tool shrank by ``factor`` (``images_<k>``
        folders): focal lengths and principal point divided by ``factor``, the size truncated,
        as nerfstudio's ``rescale_output_resolution`` and LLFF's ``minify`` do."""
        fx, fy, cx, cy = (v / factor for v in self.pinhole)
        head = (fx, cx, cy) if PARAMETERS[self.model][0] == "f" else (fx, fy, cx, cy)
        return Camera(self.model, max(1, self.width // factor), max(1, self.height // factor),
                      head + self.distortion)

    @property
    def fov_degrees(self) -> tuple[float, float]:
        """Horizontal and vertical field of view of the pinhole ``(fx, fy)``, in degrees."""
        fx, fy, _, _ = self.pinhole
        return (math.degrees(2 * math.atan(self.width / (2 * fx))),
                math.degrees(2 * math.atan(self.height / (2 * fy))))


def make_camera(model: str, width: int, height: int, params: list[float] | tuple[float, ...],
                source: str, where: str) -> Camera:
    """A checked :class:`Camera`: known model, right parameter count, positive image size,
    finite parameters, positive focal lengths."""
    if model not in PARAMETERS:
        raise UnsupportedCameraError(
            f"{where} in {source}", repr(model), "it is none of COLMAP's camera models ("
            f"{', '.join(PARAMETERS)})", "Write one of those names (as COLMAP spells it) in the "
            "camera file, or undistort the images to PINHOLE cameras (e.g. `colmap "
            "image_undistorter`) and load that folder")
    names = PARAMETERS[model]
    if len(params) != len(names):
        raise IntrinsicsError(source, where, f"{model} takes {len(names)} parameters "
                              f"({' '.join(names)}), got {len(params)}")
    if width <= 0 or height <= 0:
        raise IntrinsicsError(source, where, f"image size {width}x{height} (WxH) is not positive")
    bad = [f"{n}={v}" for n, v in zip(names, params, strict=True) if not math.isfinite(v)]
    if bad:
        raise IntrinsicsError(source, where, f"non-finite {', '.join(bad)}")
    camera = Camera(model, int(width), int(height), tuple(float(p) for p in params))
    if model not in SPHERICAL_MODELS:
        fx, fy, _, _ = camera.pinhole
        if fx <= 0 or fy <= 0:
            raise IntrinsicsError(source, where, f"focal length fx={fx:g}, fy={fy:g}; it must "
                                  "be positive")
        low, high = PLAUSIBLE_FOV_DEGREES
        fov_x, fov_y = camera.fov_degrees
        if not (low <= fov_x <= high and low <= fov_y <= high):
            raise ImplausibleCameraError(source, where, fx, fy, camera.width, camera.height,
                                         fov_x, fov_y, PLAUSIBLE_FOV_DEGREES)
    return camera


def check_perspective(camera: Camera, where: str) -> None:
    """Refuse cameras with no pinhole image (spherical panoramas), before anything reads their
    focal length: ``where`` names the frame or camera for the message."""
    if camera.model in SPHERICAL_MODELS:
        raise UnsupportedCameraError(where, camera.model, "it is a spherical panorama, which "
                                     "no pinhole camera can show", PANORAMA_ADVICE)
