"""The Viser GUI: one module per folder of the panel, wired by :mod:`dsviewer.viewer.gui.app`."""
