"""The non-local analysis of a study's trained models (GCNet paper, §3).

For every variant whose backbone has GC or NL blocks, the first seed's
trained checkpoint goes through ``tools/analysis_tools/attention_maps.py``
on a few validation images: per block, the mean cosine distance between
the attention maps of different query positions (0 = the same map for
every query) and between the block's inputs, outputs and output - input
at different positions, plus the attention pictures. The results are
collected into ``<study>/attention.json`` and ``attention.md`` (linked
from ``study.md``); the pictures stay in ``<study>/attention/<variant>/``.
"""
import json
import os
import os.path as osp
import subprocess
from typing import Dict, List, Optional

from mmengine.config import Config
from mmengine.logging import print_log

from ..engine.atomic_io import atomic_write
from .attention import STATS_FILE
from .study_table import write_json

#: Block types whose attention the analysis reads.
ANALYSED_TYPES = ('GCBlock', 'NLBlock')


def analysed_types(cfg: Config) -> List[str]:
    """The GC/NL plugin types of a config's backbone."""
    plugins = cfg.model.backbone.get('plugins') or []
    return sorted({
        p['cfg']['type']
        for p in plugins if p['cfg']['type'] in ANALYSED_TYPES
    })


def val_images(cfg: Config, num: int) -> List[str]:
    """The first ``num`` images of the config's test set.

    Args:
        cfg (Config): A detector config with a COCO-style test dataset.
        num (int): Images wanted.

    Returns:
        list[str]: Image paths (existing files).
    """
    dataset = cfg.test_dataloader.dataset
    root = dataset.get('data_root', '') or ''
    ann_file = osp.join(root, dataset.ann_file)
    prefix = osp.join(root, dataset.get('data_prefix', {}).get('img', ''))
    with open(ann_file) as f:
        images = json.load(f)['images']
    paths = [osp.join(prefix, img['file_name']) for img in images[:num]]
    missing = [p for p in paths if not osp.isfile(p)]
    if missing:
        raise FileNotFoundError(f'test images not found: {missing}')
    return paths


def analyse_study(runner,
                  num_images: int = 4,
                  num_positions: int = 64) -> Dict[str, dict]:
    """Run the attention statistics on the study's trained GC/NL models.

    Args:
        runner (StudyRunner): A runner whose study has run.
        num_images (int): Test images per model.
        num_positions (int): Positions per map for the distances.

    Returns:
        dict: ``{variant: {'seed', 'checkpoint', 'blocks': {...}}}`` as in
        ``attention.json`` (``blocks`` is attention_maps.py's per-block
        output).
    """
    from .study import tool_path
    results: Dict[str, dict] = {}
    out_root = osp.join(runner.work_dir, 'attention')
    for variant in runner.variants:
        cfg = Config.fromfile(runner.config_path(variant))
        if not analysed_types(cfg):
            continue
        seed = next(
            (s for s in runner.seeds if runner.is_finished(variant, s)), None)
        if seed is None:
            print_log(
                f'[study] attention: {variant} has no finished run',
                logger='current')
            continue
        record = runner.load_record(variant, seed)
        # relative to the work dir (absolute in records of older versions)
        checkpoint = osp.join(runner.work_dir, record['checkpoint'])
        out_dir = osp.join(out_root, variant)
        stats = _read(osp.join(out_dir, STATS_FILE))
        if stats is None or stats.get('checkpoint') != checkpoint:
            os.makedirs(out_dir, exist_ok=True)
            command = [
                runner.python,
                tool_path('analysis_tools', 'attention_maps.py'),
                runner.config_path(variant), checkpoint
            ] + val_images(cfg, num_images) + [
                '--out-dir', out_dir, '--num-positions',
                str(num_positions)
            ]
            print_log(
                f'[study] attention statistics of {variant} seed '
                f'{seed}',
                logger='current')
            with open(osp.join(out_dir, 'attention_maps.log'), 'w') as log:
                subprocess.run(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=runner.env(),
                    check=True)
            stats = _read(osp.join(out_dir, STATS_FILE))
        results[variant] = dict(
            seed=seed,
            checkpoint=record['checkpoint'],
            images=stats['images'],
            blocks=stats['blocks'])
    write_json(osp.join(runner.work_dir, 'attention.json'), results)
    atomic_write(
        osp.join(runner.work_dir, 'attention.md'),
        attention_markdown(results, runner.work_dir))
    _link_from_study(runner.work_dir)
    return results


def _read(path: str) -> Optional[dict]:
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def attention_markdown(results: Dict[str, dict], work_dir: str) -> str:
    """The statistics as a Markdown table (one row per block) and the
    pictures (paths relative to ``work_dir``)."""

    def fmt(value: Optional[float]) -> str:
        # significant digits: an almost query-independent map's distance
        # can be far below 1e-4
        return '-' if value is None else f'{value:.4g}'

    lines = [
        '# Attention statistics of the trained models', '',
        'Mean cosine distance between the attention maps of different '
        'query positions (0: one map for every query) and between the '
        "block's input, output and output - input vectors at different "
        'positions (GCNet paper, §3; tools/analysis_tools/attention_maps.py'
        '), averaged over the images.', '',
        '| variant | block | type | map | attention | input | output | '
        'out - in |', '|---|---|---|---|---:|---:|---:|---:|'
    ]
    pictures = []
    for variant, result in results.items():
        # pictures of each stage's last analysed block (first image)
        last = {name.rsplit('.', 2)[0]: name for name in result['blocks']}
        for name, entry in result['blocks'].items():
            dist = entry['cos_dist']
            height, width = entry['map_size']
            lines.append(
                f"| {variant} | {name} | {entry['type']} | {height}x{width}"
                f" | {fmt(dist['attention'])} | {fmt(dist['input'])} | "
                f"{fmt(dist['output'])} | {fmt(dist['delta'])} |")
            for path in (entry.get('files', [])[:1]
                         if name in last.values() else []):
                pictures.append(f'![{variant} {name}]'
                                f'({osp.relpath(path, work_dir)})')
    return '\n'.join(lines + [''] + pictures) + '\n'


def _link_from_study(work_dir: str) -> None:
    path = osp.join(work_dir, 'study.md')
    if not osp.isfile(path):
        return
    with open(path) as f:
        text = f.read()
    link = '\nAttention statistics: [attention.md](attention.md)\n'
    if link not in text:
        atomic_write(path, text + link)
