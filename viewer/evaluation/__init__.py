"""``dsviewer eval``: every scene of a test set through one model, ranked.

One job per module:

=====================  =========================================================================
``job.py``             what an evaluation is asked (run spec, settings) and rank 0's decisions
``columns.py``         the per-scene metric columns: names, meaning, which direction is worse
``plan.py``            which scenes to run: index / data-root key resolution, shards per rank
``progress.py``        one progress bar (done / total, ETA, failures), shared with exports
``scene_metrics.py``   the only bridge to the viewer pipeline: one scene -> metrics, thumbnails
``loading.py``         planned scenes to views, one chunk read per run of scenes from a chunk
``log_once.py``        the loader's per-scene warnings, shown once per run (rank 0) with a count
``records.py``         one atomically written record per evaluated scene; resume; run identity
``folder.py``          the output folder: claim it for a run, set the run before aside safely
``distributed.py``     torchrun: process group, rank, device and thread pinning, collectives,
                       the whole run's progress counts
``runner.py``          the evaluation loop on one rank, and how errors end it on every rank
``run_log.py``         one log file per rank and run for the tracebacks of bugs
``merge.py``           rank 0's merge of the run's records into the three output files
``tables.py``          ``scenes.csv`` and ``summary.json`` from the merged rows
``report.py``          ``report.html``: offline, sortable, thumbnails, histograms, commands
``steps.py``           ``--ckpt-dir``: a training folder's checkpoints, one evaluation per step
                       in ``OUT/steps/``, then ``steps.csv``
``step_report.py``     ``--ckpt-dir``'s ``report.html``: every metric's curve over the steps
=====================  =========================================================================

``viewer/eval_cli.py`` parses the command line into an :class:`job.EvalJob`; the loop is
:func:`runner.run_evaluation`, which never sees the command line's dataclass.
"""
