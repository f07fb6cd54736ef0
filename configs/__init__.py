"""The YAML presets, installed as package data of ``dsviewer.configs``.

``checkpoints/<file stem>.yaml``: the settings of each released checkpoint; ``datasets/``: the
preprocessing presets they name; ``demo/``: the bundled demo model's.
"""

from pathlib import Path

CONFIG_ROOT = Path(__file__).resolve().parent
