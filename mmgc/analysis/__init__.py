"""Experiment tooling behind the tools in ``tools/``: ablation studies over
attention-block variants (:mod:`.studies` definitions, :mod:`.study_table`
aggregation and reports, :mod:`.study` the runner, :mod:`.study_attention`
the non-local analysis of trained models), attention statistics
(:mod:`.attention`), the main job (:mod:`.demo`), training logs
(:mod:`.log_analysis`), parameters and FLOPs of configs
(:mod:`.config_cost`) and detector timing (:mod:`.detector_benchmark`).

Imported explicitly (``from mmgc.analysis import study``); ``import mmgc``
does not load it.
"""
