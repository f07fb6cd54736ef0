"""``dsviewer patch-depthsplat PATH``: add the visualization_dump exposure to a DepthSplat checkout.

Shows the diff, then writes it (``--dry-run``: shows only). Idempotent: a patched checkout is
left as it is. Touches only ``src/model/encoder/encoder_depthsplat.py`` and
``src/model/encoder/unimatch/mv_unimatch.py``; refuses, changing nothing, on a folder whose files
it does not recognise. Only the standard library is imported before parsing, so ``--help`` is
instant. Runs behind the same error boundary as every other command: a folder it cannot patch
is one paragraph and exit status 2, a bug a log file and exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK = 0


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
    from dsviewer.viewer.errors import run_entry_point

    args = parser().parse_args(argv)
    return run_entry_point("dsviewer patch-depthsplat", lambda: patch(args.repo, args.dry_run))


def patch(repo: Path, dry_run: bool) -> int:
    """Show the diff for ``repo`` and write it (unless ``dry_run``); the exit status."""
    from dsviewer.backends.depthsplat_patch import apply_patch, plan_patch
    from dsviewer.errors import InputError

    if not repo.is_dir():
        raise InputError(f"{repo} is not a folder. Pass the root of your DepthSplat checkout.")
    patches = plan_patch(repo)
    changed = [p for p in patches if p.changed]
    if not changed:
        print(f"{repo} already has the exposure; nothing changed.")
        return EXIT_OK
    for file_patch in changed:
        print(file_patch.diff(), end="")
    if dry_run:
        print(f"\n--dry-run: nothing written ({len(changed)} file(s) would change).")
        return EXIT_OK
    written = apply_patch(repo, patches)
    names = ", ".join(p.as_posix() for p in written)
    print(f"\nPatched {len(written)} file(s) in {repo}: {names}.")
    return EXIT_OK


def entrypoint() -> None:
    from dsviewer.viewer.errors import exit_process

    exit_process(main(sys.argv[1:]))


if __name__ == "__main__":
    entrypoint()
