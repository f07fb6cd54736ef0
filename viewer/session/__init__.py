"""The session layer: runs, model sessions and loaded scenes, between the commands and the views.

``specs.py``   :class:`RunSpec` (a run's definition) and :class:`SessionSettings` (how models
               open, where scenes are found): plain and light, what the commands build
``model.py``   :class:`ModelSession`: one checkpoint opened once; the one loader path
               (open, ``views``, ``run``)
``loaded.py``  :class:`LoadedScene`: one run on one scene and its caches, shared by the GUI,
               the exports and the evaluation
``runs.py``    :class:`Run`, :class:`RunLoader`: the runs of a shown scene, each model once

Dependencies flow one way (specs, loaded) <- model <- runs; nothing here imports a command,
the GUI, the exports, the evaluation or the comparisons (``tests/test_import_graph.py``).
"""
