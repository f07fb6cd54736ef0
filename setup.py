"""Package layout: one import name, ``dsviewer``, over the project's folders.

The folders keep the reference's layout (``src/model/encoder/...``) and the project's design
(``viewer/``, ``configs/``); only the installed names change:

    src/      -> dsviewer            (the model, data, geometry, I/O)
    viewer/   -> dsviewer.viewer     (the command line, the Viser GUI, exports, eval)
    configs/  -> dsviewer.configs    (YAML presets, package data)

Nothing named ``src`` or ``viewer`` is installed, so dsviewer can sit beside (or inside) a
DepthSplat, MVSplat or pixelSplat checkout whose own package is called ``src``. Everything
else is declared in ``pyproject.toml``.
"""

from setuptools import find_packages, setup

FOLDERS = {"dsviewer": "src", "dsviewer.viewer": "viewer", "dsviewer.configs": "configs"}


def packages_under(name: str, folder: str) -> list[str]:
    return [name, *(f"{name}.{sub}" for sub in find_packages(folder))]


setup(
    package_dir=FOLDERS,
    packages=[package for name, folder in FOLDERS.items()
              for package in packages_under(name, folder)],
)
