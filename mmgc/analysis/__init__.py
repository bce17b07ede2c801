"""Experiment tooling: ablation studies over attention-block variants
(:mod:`.studies` definitions, :mod:`.study_table` aggregation and
reports, :mod:`.study` the runner, :mod:`.study_attention` the non-local
analysis of trained models) and the attention statistics behind it
(:mod:`.attention`).

Imported explicitly (``from mmgc.analysis import study``); ``import mmgc``
does not load it.
"""
