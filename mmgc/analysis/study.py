"""The study runner: train every variant of a study for N seeds through the
project's launchers, evaluate each with ``tools/test.py`` and write one
table (Markdown, JSON, PNG).

Layout of a study's work dir::

    <work_dir>/configs/<variant>.py        the variant's full config
    <work_dir>/runs/<variant>/seed<S>/     the run's mmengine work dir
        metrics.json                       tools/test.py --metrics-out
        run.json                           the run's record (table input;
                                           its checkpoint path is relative
                                           to the study's work dir, so the
                                           records can move with it)
    <work_dir>/complexity.json             params/FLOPs per variant
    <work_dir>/study.{md,json,png}         the table and chart

A run is *finished* when its ``metrics.json`` exists (written atomically
after a successful test); finished runs are reused, never retrained or
overwritten. A run with a checkpoint but no metrics is resumed with
``tools/train.py --resume`` (the project's bit-identical resume), so a
study can be spread over several sittings. The seed goes to every run as
``--cfg-options randomness.seed=<S>``. A variant whose config changed
between sittings (other base config, ``--cfg-options`` or study
definition) is refused with the path of the config it was started with.
"""
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.config import Config
from mmengine.logging import print_log

from ..engine.atomic_io import atomic_write
from ..utils.complexity import (backbone_neck_flops, build_detector,
                                count_params, load_config)
from ..utils.package import shipped_path
from .study_table import (AP_KEYS, aggregate, markdown_per_seed,
                          markdown_table, plot_chart, write_json)

#: Directory that holds the imported mmgc package (a checkout or
#: site-packages): the launched tools import the same mmgc.
PACKAGE_PARENT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LAUNCHERS = ('none', 'pytorch', 'slurm')
METRICS_FILE = 'metrics.json'
RECORD_FILE = 'run.json'
SEGMENTS_FILE = 'train_segments.json'


def tool_path(*parts: str) -> str:
    """Path of one of mmgc's shipped tools, e.g. ``tool_path('train.py')``.
    """
    return shipped_path('tools', *parts)


def format_duration(seconds: float) -> str:
    """``h:mm:ss``."""
    seconds = int(round(seconds))
    return f'{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'


def eta_seconds(durations: Sequence[float], remaining: int) -> Optional[float]:
    """Remaining time: mean duration of the runs done in this sitting times
    the runs left (None before the first one finishes)."""
    if not durations:
        return None
    return sum(durations) / len(durations) * remaining


def image_shape_of(cfg: Config) -> Tuple[int, int]:
    """``(H, W)`` of the config's test ``Resize`` scale (mmdet's
    ``scale=(W, H)``), for the FLOPs count; ``(800, 1333)`` without one."""
    pipeline = cfg.get('test_dataloader', {}).get('dataset', {}).get(
        'pipeline', []) or cfg.get('test_pipeline', [])
    for step in pipeline:
        scale = step.get('scale') if step.get('type') == 'Resize' else None
        if scale is not None:
            return (scale,
                    scale) if isinstance(scale, int) else (int(scale[1]),
                                                           int(scale[0]))
    return (800, 1333)


def train_log_stats(run_dir: str) -> Dict[str, Optional[float]]:
    """Seconds per training iteration and peak CUDA memory from mmengine's
    ``<run_dir>/<timestamp>/vis_data/scalars.json`` (all sittings).

    ``time`` is mmengine's mean over each logging window; the median over
    the windows is reported (robust to the first, warm-up window).
    ``memory`` is only logged on CUDA (MB of ``max_memory_allocated``).

    Returns:
        dict: ``train_s_per_iter`` and ``cuda_memory_mb`` (None if absent).
    """
    times, memory = [], []
    for path in sorted(
            glob.glob(osp.join(run_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            for line in f:
                entry = json.loads(line)
                if 'lr' in entry and 'time' in entry:  # a training window
                    times.append(float(entry['time']))
                    if 'memory' in entry:
                        memory.append(float(entry['memory']))
    times.sort()
    median = (None if not times else
              (times[len(times) // 2] if len(times) % 2 else
               (times[len(times) // 2 - 1] + times[len(times) // 2]) / 2))
    return dict(
        train_s_per_iter=median,
        cuda_memory_mb=max(memory) if memory else None)


def test_log_time(test_dir: str) -> Optional[float]:
    """Mean seconds per test iteration: the ``time`` mmengine logs with the
    metrics at the end of ``runner.test()``, read from its JSON log
    ``<test_dir>/<timestamp>/<timestamp>.json`` (newest sitting)."""
    paths = sorted(
        p for p in glob.glob(osp.join(test_dir, '*', '*.json'))
        if osp.basename(p) == osp.basename(osp.dirname(p)) + '.json')
    value = None
    for path in paths[-1:]:
        with open(path) as f:
            for line in f:
                entry = json.loads(line)
                if 'time' in entry:
                    value = float(entry['time'])
    return value


class StudyRunner:
    """Runs (or reuses) every ``variant x seed`` of a study and writes its
    table.

    Args:
        config (str): Base config file.
        study (dict): A checked study (:func:`.studies.load_study`).
        seeds (int): Seeds ``0 .. seeds-1`` per variant.
        launcher (str): ``'none'`` (``tools/train.py``), ``'pytorch'``
            (``tools/dist_train.sh`` with ``gpus`` processes) or
            ``'slurm'`` (``tools/slurm_train.sh`` on ``partition``).
        gpus (int): Processes (GPUs) per run for pytorch/slurm.
        work_dir (str, optional): Default
            ``work_dirs/study_<study>_<config name>``.
        cfg_options (dict, optional): ``--cfg-options`` for the base config.
        partition (str, optional): Slurm partition.
        shape (tuple, optional): ``(H, W)`` of the FLOPs count; default the
            test ``Resize`` scale.
        python (str): Interpreter of the tools.
    """

    def __init__(self,
                 config: str,
                 study: dict,
                 seeds: int = 2,
                 launcher: str = 'none',
                 gpus: int = 1,
                 work_dir: Optional[str] = None,
                 cfg_options: Optional[dict] = None,
                 partition: Optional[str] = None,
                 shape: Optional[Tuple[int, int]] = None,
                 python: str = sys.executable) -> None:
        if not osp.isfile(config):
            raise FileNotFoundError(f'config file not found: {config!r}')
        if launcher not in LAUNCHERS:
            raise ValueError(f'--launcher {launcher!r}: expected one of '
                             f'{LAUNCHERS}')
        if launcher == 'slurm' and not partition:
            raise ValueError('--launcher slurm needs --partition')
        if isinstance(seeds, bool) or not isinstance(seeds, int) \
                or seeds < 1:
            raise ValueError(f'--seeds {seeds!r}: must be an integer >= 1')
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
            raise ValueError(f'--gpus {gpus!r}: must be an integer >= 1')
        self.config = osp.abspath(config)
        self.study = study
        self.seeds = list(range(seeds))
        self.launcher = launcher
        self.gpus = gpus
        self.partition = partition
        self.cfg_options = cfg_options or {}
        self.shape = shape
        self.python = python
        name = osp.splitext(osp.basename(config))[0]
        self.work_dir = osp.abspath(
            work_dir or osp.join('work_dirs', f"study_{study['name']}_{name}"))
        self.variants = list(study['variants'])

    # ------------------------------------------------------------ paths --
    def run_dir(self, variant: str, seed: int) -> str:
        return osp.join(self.work_dir, 'runs', variant, f'seed{seed}')

    def config_path(self, variant: str) -> str:
        return osp.join(self.work_dir, 'configs', f'{variant}.py')

    def is_finished(self, variant: str, seed: int) -> bool:
        """A run is finished when its metrics file exists."""
        return osp.isfile(osp.join(self.run_dir(variant, seed), METRICS_FILE))

    # ---------------------------------------------------------- configs --
    def variant_config(self, variant: str) -> Config:
        """Base config + ``--cfg-options`` + the variant's backbone
        overrides."""
        cfg = load_config(self.config, self.cfg_options)
        cfg.merge_from_dict(
            {'model.backbone': self.study['variants'][variant]})
        cfg.work_dir = osp.join(self.work_dir, 'runs', variant)
        return cfg

    def write_configs(self) -> None:
        """Write each variant's config; refuse (before any training) a
        variant whose existing config differs."""
        os.makedirs(osp.join(self.work_dir, 'configs'), exist_ok=True)
        for variant in self.variants:
            path = self.config_path(variant)
            tmp = path + '.new.py'
            self.variant_config(variant).dump(tmp)
            with open(tmp) as f:
                text = f.read()
            os.remove(tmp)
            if osp.isfile(path):
                with open(path) as f:
                    if f.read() != text:
                        raise ValueError(
                            f'variant {variant!r} of this study was started '
                            f'with another config ({path}): the base '
                            'config, --cfg-options or the study definition '
                            'changed. Use another --work-dir, or remove '
                            f'{osp.dirname(path)}/{variant}.py and '
                            f'{osp.join(self.work_dir, "runs", variant)} to '
                            'redo it.')
                continue
            atomic_write(path, text)

    # -------------------------------------------------------- launching --
    def env(self) -> dict:
        """Environment of the launched tools (PYTHON, PYTHONPATH, GPUS)."""
        env = dict(os.environ)
        env['PYTHON'] = self.python
        env['PYTHONPATH'] = PACKAGE_PARENT + os.pathsep + env.get(
            'PYTHONPATH', '')
        if self.launcher == 'slurm':
            env['GPUS'] = str(self.gpus)
            env.setdefault('GPUS_PER_NODE', str(min(self.gpus, 8)))
        return env

    def train_command(self, variant: str, seed: int,
                      resume: bool) -> List[str]:
        """The launcher command training one run."""
        config, run_dir = self.config_path(variant), self.run_dir(
            variant, seed)
        extra = ['--cfg-options', f'randomness.seed={seed}']
        if resume:
            extra.append('--resume')
        if self.launcher == 'none':
            return [
                self.python,
                tool_path('train.py'), config, '--work-dir', run_dir
            ] + extra
        if self.launcher == 'pytorch':
            return [
                'bash',
                tool_path('dist_train.sh'), config,
                str(self.gpus), '--work-dir', run_dir
            ] + extra
        return [
            'bash',
            tool_path('slurm_train.sh'), self.partition, f'{variant}-s{seed}',
            config, run_dir
        ] + extra

    def test_command(self, variant: str, seed: int, checkpoint: str,
                     metrics_out: str) -> List[str]:
        """The launcher command evaluating one run's checkpoint."""
        config = self.config_path(variant)
        extra = [
            '--work-dir',
            osp.join(self.run_dir(variant, seed), 'test'), '--metrics-out',
            metrics_out, '--cfg-options', f'randomness.seed={seed}'
        ]
        if self.launcher == 'none':
            return [self.python,
                    tool_path('test.py'), config, checkpoint] + extra
        if self.launcher == 'pytorch':
            return [
                'bash',
                tool_path('dist_test.sh'), config, checkpoint,
                str(self.gpus)
            ] + extra
        return [
            'bash',
            tool_path('slurm_test.sh'), self.partition,
            f'{variant}-s{seed}-test', config, checkpoint
        ] + extra

    def _call(self, command: List[str], log_file: str) -> Tuple[float, float]:
        """Run ``command`` with its output appended to ``log_file``.

        Returns:
            tuple: Wall seconds and the peak resident memory (MB) of the
            process and its waited-for children (largest single process).
        """
        start = time.perf_counter()
        with open(log_file, 'a') as log:
            log.write('$ ' + ' '.join(command) + '\n')
            log.flush()
            proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=os.getcwd())
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f'{osp.basename(command[1])} failed (exit '
                               f'{proc.returncode}); see {log_file}')
        return time.perf_counter() - start, usage.ru_maxrss / 1024

    def last_checkpoint(self, run_dir: str) -> Optional[str]:
        """The checkpoint ``last_checkpoint`` names (None if absent)."""
        path = osp.join(run_dir, 'last_checkpoint')
        if not osp.isfile(path):
            return None
        with open(path) as f:
            checkpoint = f.read().strip()
        return checkpoint if checkpoint and osp.isfile(checkpoint) else None

    def run_one(self, variant: str, seed: int) -> dict:
        """Train (or resume) and evaluate one run; write its record."""
        run_dir = self.run_dir(variant, seed)
        os.makedirs(run_dir, exist_ok=True)
        log_file = osp.join(run_dir, 'study_launch.log')
        segments_file = osp.join(run_dir, SEGMENTS_FILE)
        segments = []
        if osp.isfile(segments_file):
            with open(segments_file) as f:
                segments = json.load(f)
        if not any(s.get('done') for s in segments):
            resume = self.last_checkpoint(run_dir) is not None
            wall, rss = self._call(
                self.train_command(variant, seed, resume), log_file)
            segments.append(
                dict(wall_s=wall, maxrss_mb=rss, resumed=resume, done=True))
            write_json(segments_file, segments)
        checkpoint = self.last_checkpoint(run_dir)
        if checkpoint is None:
            raise RuntimeError(f'training of {variant} seed {seed} left no '
                               f'checkpoint in {run_dir}')
        metrics_out = osp.join(run_dir, '.metrics.json.tmp')
        self._call(
            self.test_command(variant, seed, checkpoint, metrics_out),
            log_file)
        with open(metrics_out) as f:
            metrics = json.load(f)
        missing = [k for k in AP_KEYS.values() if k not in metrics]
        if missing:
            print_log(
                f'{variant} seed {seed}: metrics lack {missing}',
                logger='current')
        stats = train_log_stats(run_dir)
        test_time = test_log_time(osp.join(run_dir, 'test'))
        test_batch = Config.fromfile(self.config_path(variant)).get(
            'test_dataloader', {}).get('batch_size', 1)
        cuda = stats['cuda_memory_mb']
        rss = [s['maxrss_mb'] for s in segments if s.get('maxrss_mb')]
        record = dict(
            variant=variant,
            seed=seed,
            checkpoint=osp.relpath(checkpoint, self.work_dir),
            metrics=metrics,
            train_s_per_iter=stats['train_s_per_iter'],
            peak_memory_mb=cuda if cuda is not None else
            (max(rss) if rss and self.launcher != 'slurm' else None),
            memory_source='cuda' if cuda is not None else
            ('rss' if rss and self.launcher != 'slurm' else None),
            infer_s_per_img=(None if test_time is None else test_time /
                             max(1, int(test_batch))),
            train_wall_s=sum(s['wall_s'] for s in segments))
        write_json(osp.join(run_dir, RECORD_FILE), record)
        os.replace(metrics_out, osp.join(run_dir, METRICS_FILE))  # finished
        return record

    def load_record(self, variant: str, seed: int) -> dict:
        """A finished run's record (rebuilt from its metrics file if the
        record is missing)."""
        run_dir = self.run_dir(variant, seed)
        path = osp.join(run_dir, RECORD_FILE)
        if osp.isfile(path):
            with open(path) as f:
                return json.load(f)
        with open(osp.join(run_dir, METRICS_FILE)) as f:
            metrics = json.load(f)
        return dict(
            variant=variant,
            seed=seed,
            metrics=metrics,
            **train_log_stats(run_dir))

    # ------------------------------------------------------- complexity --
    def complexity(self) -> Dict[str, dict]:
        """Params and backbone+neck FLOPs per variant (the project's
        counter), cached in ``complexity.json`` per config text."""
        path = osp.join(self.work_dir, 'complexity.json')
        cache = {}
        if osp.isfile(path):
            with open(path) as f:
                cache = json.load(f)
        for variant in self.variants:
            with open(self.config_path(variant)) as f:
                text = f.read()
            if cache.get(variant, {}).get('config_text') == text:
                continue
            cfg = Config.fromfile(self.config_path(variant))
            shape = self.shape or image_shape_of(cfg)
            model = build_detector(cfg)
            cache[variant] = dict(
                params=count_params(model),
                flops=backbone_neck_flops(model, *shape),
                flops_shape=list(shape),
                config_text=text)
            write_json(path, cache)
        return {v: cache[v] for v in self.variants}

    # -------------------------------------------------------------- run --
    def plan(self) -> List[Tuple[str, int]]:
        """The runs in order: the first seed of every variant, then the
        next seed of every variant, so a study cut short after some runs
        already compares every variant it reached on one seed."""
        return [(v, s) for s in self.seeds for v in self.variants]

    def run(self) -> dict:
        """Run the study and write ``study.md``, ``study.json`` and
        ``study.png``.

        Returns:
            dict: The JSON content (``rows``, ``runs``, ...).
        """
        self.write_configs()
        plan = self.plan()
        todo = [r for r in plan if not self.is_finished(*r)]
        name = self.study['name']
        print_log(
            f'[study {name}] {len(plan)} runs, {len(plan) - len(todo)}'
            f' finished (reused), {len(todo)} to run; work dir '
            f'{self.work_dir}',
            logger='current')
        durations: List[float] = []
        for index, (variant, seed) in enumerate(plan, 1):
            if self.is_finished(variant, seed):
                continue
            left = sum(1 for r in todo if not self.is_finished(*r))
            eta = eta_seconds(durations, left)
            resume = (
                self.last_checkpoint(self.run_dir(variant, seed)) is not None)
            print_log(
                f'[study {name}] run {index}/{len(plan)}: {variant} seed '
                f'{seed}' + (' (resuming)' if resume else '') +
                f'; {left} left, ETA ' +
                (format_duration(eta)
                 if eta is not None else 'after the first run') + f'; log: '
                f'{osp.join(self.run_dir(variant, seed), "study_launch.log")}',
                logger='current')
            start = time.perf_counter()
            self.run_one(variant, seed)
            durations.append(time.perf_counter() - start)
        return self.write_report()

    def write_report(self) -> dict:
        """Aggregate the finished runs into the table files."""
        runs = [
            self.load_record(v, s) for v, s in self.plan()
            if self.is_finished(v, s)
        ]
        complexity = self.complexity()
        rows = aggregate(runs, complexity, self.variants,
                         self.study['baseline'])
        content = dict(
            study=self.study['name'],
            config=self.config,
            cfg_options=self.cfg_options,
            launcher=self.launcher,
            seeds=self.seeds,
            baseline=self.study['baseline'],
            spread='sample standard deviation over seeds (ddof=1)',
            complexity={
                v: {
                    k: c[k]
                    for k in ('params', 'flops', 'flops_shape')
                }
                for v, c in complexity.items()
            },
            rows=rows,
            runs=runs)
        write_json(osp.join(self.work_dir, 'study.json'), content)
        table = markdown_table(rows)
        shape = next(iter(complexity.values()))['flops_shape']
        text = (f"# Study `{self.study['name']}`\n\n"
                f'Base config: `{self.config}`; seeds {self.seeds}; '
                f"deltas against `{self.study['baseline']}`. AP: mean ± "
                'sample std over seeds (x100). FLOPs: backbone + neck at '
                f'{shape[0]}x{shape[1]} (mmgc.utils.complexity).\n\n'
                f'{table}\n\nPer seed (AP x100):\n\n'
                f'{markdown_per_seed(rows)}\n\n![chart](study.png)\n')
        atomic_write(osp.join(self.work_dir, 'study.md'), text)
        plot_chart(rows, osp.join(self.work_dir, 'study.png'),
                   f"study {self.study['name']}")
        print(table)
        return content
