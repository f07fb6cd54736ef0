"""Where a COLMAP model and its images are, in the layouts people have.

* A model in one of :data:`MODEL_PLACES`, its images in ``images/`` (or the folder itself);
  of several numbered models the one registering the most images (note ``colmap_models``).
* gaussian-splatting's ``convert.py`` input: the original photos in ``input/`` beside their
  model in ``distorted/sparse/<n>``; a model under ``distorted/`` looks in ``input/`` first
  (``images/`` there holds the undistorted copies, which that model does not describe).
* A COLMAP workspace (``automatic_reconstructor``, or ``image_undistorter --output_path
  dense/<n>``): ``dense/<n>`` (or ``dense``) holds the undistorted ``images/`` with their own
  flat ``sparse/`` model (:func:`find_workspace`); ``colmap.py`` reads it when none of the
  top-level model's images is on disk.
* A model folder passed as the scene (``<capture>/sparse/1``) takes its images from the
  capture it belongs to (:func:`capture_root`).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from .paths import CaptureFiles
from .types import SceneNote

# Where a capture's model is looked for, in order: (folder, whether its numbered subfolders
# <n> are the models). A flat sparse/ comes before distorted/sparse/<n>: in the layout of
# `colmap image_undistorter` (and 3DGS) sparse/ is the model of the undistorted images/, while
# distorted/sparse/<n> is the model of the original photos.
MODEL_PLACES = (("sparse", True), ("sparse", False), ("colmap/sparse", True),
                ("distorted/sparse", True), (".", True), (".", False))
MODEL_PLACES_TEXT = ", ".join(  # for messages: "sparse/<n>, sparse, ..., the folder itself"
    (f"{place}/<n>".removeprefix("./") if numbered else place).replace(".", "the folder itself")
    for place, numbered in MODEL_PLACES)
SPARSE_OWNERS = ("colmap", "distorted")  # <capture>/<owner>/sparse holds models too
IMAGE_FOLDERS = ("images", ".")
DISTORTED_IMAGE_FOLDERS = ("input", *IMAGE_FOLDERS)  # convert.py: input/ + distorted/sparse/<n>
IMAGE_HOLDERS = ("images", "input")  # a folder with one of these is a capture's root
WORKSPACE_FOLDER = "dense"  # COLMAP's dense/<n>: undistorted images/ and their sparse/ model


@dataclass(frozen=True)
class ModelChoice:
    """The COLMAP model to read and where its images are looked up."""

    model: Path  # the folder holding cameras/images
    ext: str  # ".bin" or ".txt"
    root: Path  # the capture folder: image names are relative to it and must stay inside it
    note: SceneNote | None = None  # set when other models were passed over
    image_folders: tuple[str, ...] = IMAGE_FOLDERS  # where, under root, the images are


def _model_files(folder: Path) -> str | None:
    for ext in (".bin", ".txt"):
        if (folder / f"cameras{ext}").is_file() and (folder / f"images{ext}").is_file():
            return ext
    return None


def registered_images(model: Path, ext: str) -> int:
    """How many images the model registers, from the file's count (binary) or its lines."""
    if ext == ".bin":
        with open(model / "images.bin", "rb") as file:
            head = file.read(8)
        return struct.unpack("<Q", head)[0] if len(head) == 8 else 0
    lines = (model / "images.txt").read_text().splitlines()
    return (sum(1 for line in lines if not line.startswith("#")) + 1) // 2  # two per image


def _model_owners(folder: Path) -> list[Path]:
    """The folders a model folder can belong to, nearest first: for ``<x>/sparse`` and
    ``<x>/sparse/<n>`` that is ``<x>``; when ``<x>`` (or the folder itself) is colmap/ or
    distorted/, it and its parent; [] for other folders."""
    if folder.name.isdigit() and folder.parent.name == "sparse":
        folder = folder.parent
    if folder.name == "sparse":
        folder = folder.parent
    elif folder.name not in SPARSE_OWNERS:
        return []
    owners = [folder]
    if folder.name in SPARSE_OWNERS:
        owners.append(folder.parent)
    return owners


def capture_root(folder: Path) -> Path:
    """The capture a named folder belongs to: the folder itself when it holds images/ (or
    convert.py's input/), else
    for a model folder (``sparse``, ``sparse/<n>``, ``colmap``, ``colmap/sparse/<n>``...) the
    nearest folder above it that holds images/ (links followed only when the path as named
    leads to none), else the folder the model lives in."""
    def holds_images(candidate: Path) -> bool:
        return any((candidate / name).is_dir() for name in IMAGE_HOLDERS)

    if holds_images(folder):
        return folder
    named = Path(os.path.abspath(folder))  # '.', 'sparse/1/..' and the like get their names
    for spelling in dict.fromkeys([named, folder.resolve()]):
        for owner in _model_owners(spelling):
            if holds_images(owner):
                return owner
    owners = _model_owners(named)
    return owners[0] if owners else folder


def find_model(folder: Path) -> ModelChoice | None:
    """The model of a capture folder, searched in :data:`MODEL_PLACES` order: of several
    numbered ones (``sparse/0``, ``sparse/1``..., as COLMAP's mapper writes when not every
    image registers together) the one with the most images, with a note naming the others."""
    root = capture_root(folder)
    for place, numbered in MODEL_PLACES:
        where = folder / place
        if not numbered:
            if ext := _model_files(where):
                return _choice(where, ext, root)
            continue
        subfolders = sorted((p for p in where.iterdir() if p.name.isdigit()),
                            key=lambda p: int(p.name)) if where.is_dir() else []
        models = [(p, ext) for p in subfolders if (ext := _model_files(p))]
        if models:
            counts = [registered_images(p, ext) for p, ext in models]
            best = max(range(len(models)), key=lambda i: counts[i])  # the first of equals
            model, ext = models[best]
            return _choice(model, ext, root, _models_note(folder, models, counts, best))
    return None


def _choice(model: Path, ext: str, root: Path, note: SceneNote | None = None) -> ModelChoice:
    """A model under a distorted/ folder is convert.py's: its photos are in input/ first."""
    distorted = "distorted" in Path(os.path.abspath(model)).parts[
        len(Path(os.path.abspath(root)).parts):]
    return ModelChoice(model, ext, root, note,
                       DISTORTED_IMAGE_FOLDERS if distorted else IMAGE_FOLDERS)


def find_workspace(folder: Path) -> tuple[Path, ModelChoice] | None:
    """A COLMAP workspace's undistorted output under ``folder``: of the folders in ``dense/``
    (``dense/0``, ``dense/1``..., then others such as ``dense/workspace``) and ``dense``
    itself that hold ``images/`` and a model, the one registering the most images."""
    base = folder / WORKSPACE_FOLDER
    if not base.is_dir():
        return None
    inside = sorted((p for p in base.iterdir() if p.is_dir()),
                    key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0,
                                   p.name))
    found = []
    for candidate in [*inside, base]:
        choice = find_model(candidate) if (candidate / "images").is_dir() else None
        if choice is not None and choice.root == candidate:
            found.append((registered_images(choice.model, choice.ext), candidate, choice))
    if not found:
        return None
    _, candidate, choice = max(found, key=lambda item: item[0])  # the first of equals
    return candidate, choice


def _models_note(folder: Path, models: list[tuple[Path, str]], counts: list[int], best: int
                 ) -> SceneNote | None:  # fmt: skip
    if len(models) < 2:
        return None
    names = [p.relative_to(folder).as_posix() for p, _ in models]
    listed = ", ".join(f"{name} ({count} images)" for name, count in zip(names, counts))
    other = next(p for i, (p, _) in enumerate(models) if i != best)
    return SceneNote(
        "colmap_models",
        f"The COLMAP folder holds {len(models)} separate models: {listed}. {names[best]}, which "
        f"registers the most images, was used; to use another, pass its folder as the scene "
        f"(e.g. {other}).")


def find_image(files: CaptureFiles, name: str, image_folders: tuple[str, ...] = IMAGE_FOLDERS
               ) -> Path | None:  # fmt: skip
    """The image file of a COLMAP image name (under the first of ``image_folders`` that has
    it, relative to ``files.root``), or None."""
    for sub in image_folders:
        candidate = files.find(name if sub == "." else f"{sub}/{name}")
        if candidate is not None:
            return candidate
    return None
