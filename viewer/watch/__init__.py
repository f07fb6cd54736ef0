"""Geometry over training: a training's checkpoint folder as steps, and one step's metrics.

=====================  =========================================================================
``checkpoints.py``     a folder of checkpoints polled into steps (complete files only, notes on
                       the rest)
``step_metrics.py``    one step on one scene -> a row of eval's columns plus step and checkpoint
=====================  =========================================================================
"""
