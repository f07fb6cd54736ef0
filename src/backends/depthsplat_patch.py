"""The exposure a DepthSplat checkout needs for dsviewer, stated once: check, explain, apply it.

dsviewer reads two inverse-depth maps out of ``visualization_dump`` (the contract of
:mod:`dsviewer.backends.extension`): ``coarse_mv_depth``, the cost volume's soft-argmax bilinearly
upsampled, and ``mono_depth``, the signed residual the DPT upsampler adds to it. The official
code computes both in ``mv_unimatch.py`` but keeps them local. The exposure is two insertions,
each after one anchor line of the official files:

* ``src/model/encoder/unimatch/mv_unimatch.py``: put both maps and the last scale's depth
  candidates into ``results_dict``, per view;
* ``src/model/encoder/encoder_depthsplat.py``: copy them, and the last scale's matching
  softmax, into ``visualization_dump`` (before the depth-only return, so depth models have them).

Nothing else in a checkout is read or written.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from dsviewer.errors import InputError

ENCODER_FILE = Path("src/model/encoder/encoder_depthsplat.py")
MATCHER_FILE = Path("src/model/encoder/unimatch/mv_unimatch.py")
REQUIRED_KEYS = ("coarse_mv_depth", "mono_depth")
OPTIONAL_KEYS = ("match_probs", "match_prob", "depth_candidates")


@dataclass(frozen=True)
class Insertion:
    """Lines to insert after the one ``anchor`` line of ``path``; ``requires`` are lines of the
    official file that the inserted code relies on (names it reads)."""

    path: Path
    anchor: str
    requires: tuple[str, ...]
    lines: str


MATCHER_INSERTION = Insertion(
    path=MATCHER_FILE,
    anchor='        results_dict.update({"match_probs": match_probs})\n',
    requires=(
        "from einops import rearrange",
        "b, v, _, ori_h, ori_w = images.shape",
        "depth_candidates = depth_candidates.repeat(1, 1, h, w)",
        "residual_depth = self.upsampler(",
        "depth_bilinear = F.interpolate(",
    ),
    lines=(
        "        # dsviewer: the two inverse-depth terms of the final depth and the last scale's\n"
        "        # inverse-depth candidates, per view (depth = 1 / clamp(coarse + mono)).\n"
        "        per_view = \"(b v) ... -> b v ...\"\n"
        "        results_dict.update({\n"
        "            \"coarse_mv_depth\": rearrange(depth_bilinear[:, 0], per_view, b=b, v=v),\n"
        "            \"mono_depth\": rearrange(residual_depth[:, 0], per_view, b=b, v=v),\n"
        "            \"depth_candidates\": rearrange(depth_candidates, per_view, b=b, v=v),\n"
        "        })\n"
    ),
)

ENCODER_INSERTION = Insertion(
    path=ENCODER_FILE,
    anchor="        depth = depth_preds[-1]\n",
    requires=(
        "from einops import rearrange",
        "b, v, _, h, w = context[\"image\"].shape",
        "results_dict = self.depth_predictor(",
        "visualization_dump",
    ),
    lines=(
        "        # dsviewer: expose the coarse cost-volume depth and the monocular residual (both\n"
        "        # INVERSE depths) and the last scale's matching softmax over its candidates.\n"
        "        if visualization_dump is not None:\n"
        "            for key in (\"coarse_mv_depth\", \"mono_depth\", \"depth_candidates\"):\n"
        "                visualization_dump[key] = results_dict[key]\n"
        "            match_probs = rearrange(\n"
        "                results_dict[\"match_probs\"][-1], \"(b v) ... -> b v ...\", b=b, v=v\n"
        "            )\n"
        "            visualization_dump[\"match_probs\"] = match_probs\n"
        "            visualization_dump[\"match_prob\"] = match_probs.max(dim=2).values\n"
    ),
)

INSERTIONS = (MATCHER_INSERTION, ENCODER_INSERTION)


class UnrecognizedCheckoutError(InputError):
    """A folder whose DepthSplat files the patch cannot place its lines in."""


@dataclass
class FilePatch:
    path: Path  # relative to the checkout
    old: str
    new: str

    @property
    def changed(self) -> bool:
        return self.old != self.new

    def diff(self) -> str:
        return "".join(
            difflib.unified_diff(
                self.old.splitlines(keepends=True),
                self.new.splitlines(keepends=True),
                fromfile=f"a/{self.path.as_posix()}",
                tofile=f"b/{self.path.as_posix()}",
            )
        )


def exposes_maps(repo: Path) -> bool:
    """Whether the checkout's encoder code names both required keys (its own way or ours)."""
    encoder_dir = repo / "src" / "model" / "encoder"
    text = "".join(p.read_text(errors="replace") for p in sorted(encoder_dir.rglob("*.py")))
    return all(f'"{key}"' in text or f"'{key}'" in text for key in REQUIRED_KEYS)


def _read(repo: Path, path: Path) -> str:
    file = repo / path
    if not file.is_file():
        raise UnrecognizedCheckoutError(
            f"{repo} is not a DepthSplat checkout that dsviewer recognises: {path.as_posix()} is "
            "missing. Pass the root folder of a clone of github.com/cvg/depthsplat (or of your "
            "fork), the folder that holds src/ and config/."
        )
    try:
        return file.read_bytes().decode()  # keeps CRLF (upstream mv_unimatch.py has CRLF lines)
    except UnicodeDecodeError as error:
        raise UnrecognizedCheckoutError(
            f"{file} is not UTF-8 text ({error.reason} at byte {error.start}), so it is not the "
            "DepthSplat source file dsviewer patches; changed nothing. Restore it from the "
            "repository (git checkout -- that file)."
        ) from None


def line_ending(text: str) -> str:
    """The file's own line ending: CRLF where its first line ends so, else LF."""
    first = text.find("\n")
    return "\r\n" if first > 0 and text[first - 1] == "\r" else "\n"


def _in_ending(lines: str, ending: str) -> str:
    return lines.replace("\n", ending)


def plan_patch(repo: str | Path) -> list[FilePatch]:
    """The new text of both files (``changed`` False where the lines are already there).

    Raises :class:`UnrecognizedCheckoutError` where an anchor or a name the inserted lines read
    is missing or ambiguous, or where the checkout exposes the maps in its own way already.
    """
    repo = Path(repo)
    texts = {insertion.path: _read(repo, insertion.path) for insertion in INSERTIONS}
    applied = [_in_ending(insertion.lines, line_ending(texts[insertion.path])) in
               texts[insertion.path] for insertion in INSERTIONS]
    if all(applied):
        return [FilePatch(path, text, text) for path, text in texts.items()]
    if not any(applied) and exposes_maps(repo):
        raise UnrecognizedCheckoutError(
            f"{repo} already writes coarse_mv_depth and mono_depth in its own code, so there is "
            "nothing to patch; run dsviewer with --depthsplat-repo directly."
        )
    patches = []
    for insertion, done in zip(INSERTIONS, applied):
        text = texts[insertion.path]
        anchor = _in_ending(insertion.anchor, line_ending(text))
        if done:
            patches.append(FilePatch(insertion.path, text, text))
            continue
        problems = [f"the line {line!r} is missing"
                    for line in insertion.requires if line not in text]
        count = text.count(anchor)
        if count != 1:
            problems.append(
                f"the anchor line {insertion.anchor.strip()!r} occurs {count} times (needs once)"
            )
        if problems:
            raise UnrecognizedCheckoutError(
                f"{repo / insertion.path} does not look like DepthSplat's file: "
                + "; ".join(problems)
                + ". dsviewer changed nothing. Update the checkout to cvg/depthsplat's "
                "layout, or add the exposure by hand where your code computes these maps.\n\n"
                + exposure_instructions(repo, by_hand=True)
            )
        new = text.replace(anchor, anchor + _in_ending(insertion.lines, line_ending(text)))
        patches.append(FilePatch(insertion.path, text, new))
    return patches


def apply_patch(repo: str | Path, patches: list[FilePatch]) -> list[Path]:
    """Write the changed files atomically; the paths written."""
    from dsviewer.io.atomic import atomic_write

    written = []
    for patch in patches:
        if patch.changed:
            with atomic_write(Path(repo) / patch.path) as handle:
                handle.write(patch.new.encode())
            written.append(patch.path)
    return written


def exposure_instructions(repo: str | Path, by_hand: bool = False) -> str:
    """What to add to a checkout that does not expose the maps, in a few sentences and code
    (``by_hand``: only the lines, for when the patch itself cannot place them)."""
    parts = ["The lines to add:"] if by_hand else [
        (
            f"The DepthSplat checkout {repo} does not put coarse_mv_depth and mono_depth (the "
            "cost volume's inverse depth and the monocular residual) into visualization_dump, "
            f"which dsviewer reads. Run `dsviewer patch-depthsplat {repo}` to add the lines "
            "below (it shows the diff and touches only these two files), or add them by hand:"
        )
    ]
    for insertion in INSERTIONS:
        parts.append(
            f"\nIn {insertion.path.as_posix()}, after the line `{insertion.anchor.strip()}`:\n"
            + insertion.lines
        )
    return "\n".join(parts)
