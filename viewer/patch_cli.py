"""``dsviewer patch-depthsplat PATH``: add the visualization_dump exposure to a DepthSplat checkout.

Shows the diff, then writes it (``--dry-run``: shows only). Idempotent: a patched checkout is
left as it is. Touches only ``src/model/encoder/encoder_depthsplat.py`` and
``src/model/encoder/unimatch/mv_unimatch.py``; refuses, changing nothing, on a folder whose files
it does not recognise. Only the standard library is imported before parsing, so ``--help`` is
instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_REFUSED = 0, 2


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="dsviewer patch-depthsplat",
        description=(
            "Make a DepthSplat checkout write coarse_mv_depth and mono_depth (inverse depths), "
            "the matching softmax and its depth candidates into visualization_dump, so that "
            "dsviewer --depthsplat-repo can run it. Shows the diff; idempotent."
        ),
    )
    result.add_argument("repo", type=Path, help="root of the checkout (the folder with src/)")
    result.add_argument(
        "--dry-run", action="store_true", help="show the diff without writing anything"
    )
    return result


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    from dsviewer.backends.depthsplat_patch import (
        UnrecognizedCheckoutError,
        apply_patch,
        plan_patch,
    )

    repo: Path = args.repo
    if not repo.is_dir():
        message = f"{repo} is not a folder. Pass the root of your DepthSplat checkout."
        print(message, file=sys.stderr)
        return EXIT_REFUSED
    try:
        patches = plan_patch(repo)
    except UnrecognizedCheckoutError as error:
        print(str(error), file=sys.stderr)
        return EXIT_REFUSED
    changed = [p for p in patches if p.changed]
    if not changed:
        print(f"{repo} already has the exposure; nothing changed.")
        return EXIT_OK
    for patch in changed:
        print(patch.diff(), end="")
    if args.dry_run:
        print(f"\n--dry-run: nothing written ({len(changed)} file(s) would change).")
        return EXIT_OK
    written = apply_patch(repo, patches)
    names = ", ".join(p.as_posix() for p in written)
    print(f"\nPatched {len(written)} file(s) in {repo}: {names}.")
    return EXIT_OK


def entrypoint() -> None:
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    entrypoint()
