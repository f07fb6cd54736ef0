"""Geometry over training: a training's checkpoint folder as steps, and one step's metrics.

=====================  =========================================================================
``checkpoints.py``     a folder of checkpoints polled into steps (complete files only, notes on
                       the rest)
``step_metrics.py``    one step on one scene -> a row of eval's columns plus step and checkpoint
``engine.py``          ``dsviewer watch``'s thread: steps run on the scenes, rows and runs kept
``step_runs.py``       a step is a run: the watch's RunLoader for the viewer's own machinery
``live.py``            the engine in the live viewer: the Timeline and Curves folders wired
=====================  =========================================================================
"""
