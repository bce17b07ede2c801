"""Draw the ground truth of a config's training set after its pipeline.

MMDetection's ``tools/analysis_tools/browse_dataset.py``: every training
sample goes through the train pipeline (resize, flip, ...) and is drawn with
the config's visualizer (mmdet's ``DetLocalVisualizer``: boxes, masks,
class names; the demo config's ``DetComparisonVisualizer`` adds a title,
one colour per class and a legend); shown in a window and/or written as
PNGs.

Usage:
    python tools/browse_dataset.py CONFIG [--output-dir DIR] [--not-show]
        [--show-interval 2] [--max-images N] [--data-root DIR]
        [--train-ann FILE] [--train-img PREFIX] [--classes ...]
        [--cfg-options k=v ...]
"""
import argparse
import os
import os.path as osp

from mmengine.registry import init_default_scope
from mmengine.utils import ProgressBar

import mmgc  # noqa: F401  (registers mmgc's modules)
from mmgc.utils import (add_cfg_options_arg, add_data_args, apply_data_args,
                        load_tool_config)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Browse a dataset')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--output-dir',
        default=None,
        type=str,
        help='write the drawings here (e.g. without a display)')
    parser.add_argument(
        '--not-show',
        default=False,
        action='store_true',
        help='do not open a window')
    parser.add_argument(
        '--show-interval',
        type=float,
        default=2,
        help='the interval of show (s)')
    parser.add_argument(
        '--max-images',
        type=int,
        default=None,
        help='stop after this many samples (default: the whole set)')
    add_data_args(parser)
    add_cfg_options_arg(
        parser, example='train_dataloader.dataset.data_root=data/synthetic/')
    args = parser.parse_args()
    if args.max_images is not None and args.max_images < 1:
        parser.error(f'--max-images={args.max_images}: must be at least 1')
    if args.show_interval < 0:
        parser.error(f'--show-interval={args.show_interval}: must be >= 0')
    return args


def main() -> None:
    args = parse_args()
    cfg = load_tool_config(args.config, cfg_options=args.cfg_options)
    apply_data_args(cfg, args)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    from mmdet.models.utils import mask2ndarray
    from mmdet.registry import DATASETS, VISUALIZERS
    from mmdet.structures.bbox import BaseBoxes

    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    # drawings go to out_file; no storage backend (it would want a save_dir)
    visualizer = VISUALIZERS.build(dict(cfg.visualizer, vis_backends=None))
    visualizer.dataset_meta = dataset.metainfo
    if args.output_dir is not None:
        os.makedirs(args.output_dir, exist_ok=True)

    total = len(dataset) if args.max_images is None else min(
        len(dataset), args.max_images)
    progress_bar = ProgressBar(total)
    for index in range(total):
        item = dataset[index]
        img = item['inputs'].permute(1, 2, 0).numpy()[..., [2, 1, 0]]  # RGB
        data_sample = item['data_samples'].numpy()
        gt_instances = data_sample.gt_instances
        name = osp.basename(data_sample.img_path)
        if isinstance(gt_instances.get('bboxes', None), BaseBoxes):
            gt_instances.bboxes = gt_instances.bboxes.tensor
        if gt_instances.get('masks', None) is not None:
            gt_instances.masks = mask2ndarray(gt_instances.masks).astype(bool)
        data_sample.gt_instances = gt_instances
        visualizer.add_datasample(
            name,
            img,
            data_sample,
            draw_pred=False,
            show=not args.not_show,
            wait_time=args.show_interval,
            out_file=(osp.join(args.output_dir, name)
                      if args.output_dir is not None else None))
        progress_bar.update()


if __name__ == '__main__':
    main()
