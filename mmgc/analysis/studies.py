"""Study definitions: which backbone variants a study trains.

A study is a small dict (the built-in ones below are data; a custom one is
a Python config file with a ``study = dict(...)`` of the same form)::

    study = dict(
        name='my-study',
        baseline='baseline',          # the variant deltas are taken against
        variants=dict(                # name -> overrides of model.backbone
            baseline=dict(plugins=None),
            gc_r16=dict(plugins=[dict(cfg=dict(type='GCBlock', ratio=1/16),
                                      stages=(False, True, True, True),
                                      position='after_conv3')]),
        ))

Each variant's dict is merged into the base config's ``model.backbone``
(mmengine merge: dicts merge key by key, lists and ``None`` replace), so
``plugins=None`` removes the base config's plugins and a ``plugins`` list
replaces them. The base config's backbone must be ``PluginResNet`` (or
``PluginResNeXt``) for per-block placement (``blocks``), the
``'after_block'`` position and SASA (``sasa``/``stage_with_sasa``); the
shipped demo config's is.
"""
import copy
import os.path as osp
import re
from typing import Dict, List, Optional, Tuple

from mmengine.config import Config

#: A variant name becomes a directory name.
NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]*$')
ALL_STAGES = (True, True, True, True)
C3_C5 = (False, True, True, True)
C2_C5 = ALL_STAGES
C5 = (False, False, False, True)


def gc(ratio: float = 1 / 16,
       stages: Tuple[bool, ...] = C3_C5,
       position: str = 'after_conv3',
       **block) -> dict:
    """Backbone overrides placing one ``GCBlock`` in every block of
    ``stages`` (the GCNet paper's default: r16, c3-c5, after conv3)."""
    return dict(
        plugins=[
            dict(
                cfg=dict(type='GCBlock', ratio=ratio, **block),
                stages=stages,
                position=position)
        ],
        sasa=None,
        stage_with_sasa=(False, False, False, False))


BASELINE = dict(
    plugins=None, sasa=None, stage_with_sasa=(False, False, False, False))

#: The GCNet paper's block comparison (Table 2 style, one detector).
BLOCKS_STUDY = dict(
    name='blocks',
    baseline='baseline',
    variants=dict(
        baseline=BASELINE,
        se_r16=dict(
            BASELINE,
            plugins=[
                # as configs/se_r50_mask.py (SE-ResNet): every block of c2-c5
                dict(
                    cfg=dict(type='SEBlock', ratio=1 / 16),
                    stages=C2_C5,
                    position='after_conv3')
            ]),
        # simplified non-local: GC's query-independent pooling with a
        # plain 1x1 transform instead of the bottleneck
        snl=gc(transform='conv1x1'),
        # one non-local block in c4, before its last residual block
        nl=dict(
            BASELINE,
            plugins=[
                dict(
                    cfg=dict(type='NLBlock'),
                    stages=(False, False, True, False),
                    blocks=(None, None, (-2, ), None),
                    position='after_block')
            ]),
        gc_r16=gc(1 / 16),
        gc_r4=gc(1 / 4),
        sasa=dict(
            BASELINE,
            sasa=dict(type='SASAConv', kernel_size=7, num_heads=8),
            stage_with_sasa=(False, False, True, True)),
    ))

#: The GCNet paper's design ablation (Table 4 style): GC r16 c3-c5 after
#: conv3 with att pooling and add fusion is the reference, each group
#: changes one choice.
GC_DESIGN_STUDY = dict(
    name='gc-design',
    baseline='baseline',
    variants=dict(
        baseline=BASELINE,
        att_add=gc(),
        att_mul=gc(fusion_types=('channel_mul', )),
        avg_add=gc(pooling_type='avg'),
        avg_mul=gc(pooling_type='avg', fusion_types=('channel_mul', )),
        ratio_r4=gc(1 / 4),
        stages_c2_c5=gc(stages=C2_C5),
        stages_c5=gc(stages=C5),
        after_conv1=gc(position='after_conv1'),
        after_conv2=gc(position='after_conv2'),
        after_block=gc(position='after_block'),
    ))

#: Built-in studies by name (``--study NAME``).
BUILTIN_STUDIES: Dict[str, dict] = {
    s['name']: s
    for s in (BLOCKS_STUDY, GC_DESIGN_STUDY)
}


def check_study(study: dict, source: str = 'study') -> dict:
    """Validate a study dict; errors name the bad value and what is
    allowed.

    Args:
        study (dict): ``name``, ``variants`` and optional ``baseline``.
        source (str): Where it came from, for the messages.

    Returns:
        dict: A deep copy with ``baseline`` filled in (default: the first
        variant).
    """
    if not isinstance(study, dict):
        raise TypeError(f'{source}: a study must be a dict, got '
                        f'{type(study).__name__}')
    unknown = set(study) - {'name', 'baseline', 'variants'}
    if unknown:
        raise ValueError(f'{source}: unknown study keys {sorted(unknown)}; '
                         "allowed: 'name', 'baseline', 'variants'")
    name = study.get('name')
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f'{source}: name={name!r} must be a non-empty '
                         'string of letters, digits, "_", "-" or "."')
    variants = study.get('variants')
    if not isinstance(variants, dict) or not variants:
        raise ValueError(f'{source}: variants={variants!r} must be a '
                         'non-empty dict of name -> backbone overrides')
    for key, overrides in variants.items():
        if not isinstance(key, str) or not NAME_RE.match(key):
            raise ValueError(
                f'{source}: variant name {key!r} must be letters, digits, '
                '"_", "-" or "." (it names a directory)')
        if not isinstance(overrides, dict):
            raise ValueError(f'{source}: variant {key!r} must be a dict of '
                             f'model.backbone overrides, got {overrides!r}')
    baseline = study.get('baseline', next(iter(variants)))
    if baseline not in variants:
        raise ValueError(f'{source}: baseline={baseline!r} is not a '
                         f'variant; variants: {list(variants)}')
    checked = copy.deepcopy(dict(study))
    checked['baseline'] = baseline
    checked['variants'] = {k: dict(v) for k, v in variants.items()}
    return checked


def load_study(spec: str, only: Optional[List[str]] = None) -> dict:
    """A built-in study by name, or a custom one from a Python file.

    Args:
        spec (str): A name of :data:`BUILTIN_STUDIES` or the path of a
            ``.py`` file defining ``study = dict(...)``.
        only (list[str], optional): Keep only these variants (the
            baseline is always kept).

    Returns:
        dict: The checked study.
    """
    if spec in BUILTIN_STUDIES:
        study = check_study(BUILTIN_STUDIES[spec], f'study {spec!r}')
    elif spec.endswith('.py'):
        if not osp.isfile(spec):
            raise FileNotFoundError(f'--study file not found: {spec!r}')
        cfg = Config.fromfile(spec)
        if 'study' not in cfg:
            raise ValueError(f'--study {spec!r} defines no `study = dict('
                             'name=..., variants=...)`')
        study = check_study(cfg.to_dict()['study'], spec)
    else:
        raise ValueError(f'--study {spec!r}: expected one of '
                         f'{sorted(BUILTIN_STUDIES)} or a .py file')
    if only:
        missing = [v for v in only if v not in study['variants']]
        if missing:
            raise ValueError(f'--variants {missing}: not in study '
                             f"{study['name']!r}; variants: "
                             f"{list(study['variants'])}")
        keep = [study['baseline']
                ] + [v for v in only if v != study['baseline']]
        study['variants'] = {v: study['variants'][v] for v in keep}
    return study
