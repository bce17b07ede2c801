"""Export a detector's backbone + neck, mmgc blocks included, to ONNX and
check the file against PyTorch with onnxruntime (``--help`` for the
options).

The exported graph maps preprocessed images (the data preprocessor's output:
normalised, padded to its ``pad_size_divisor``) ``[1, 3, H, W]`` to the
tuple of neck outputs (``p2`` .. ``p6`` for Mask R-CNN's FPN). The heads
(RPN, RoI, NMS) stay in the deployment framework, as with MMDeploy's
partitioned models. The check runs both on the same random ``N(0, 1)`` input
and fails (exit status 1) if an output differs by more than ``atol + rtol *
max|output|``.
"""
import argparse
import logging
import os
import os.path as osp
import sys
import time
from typing import List, Optional

import mmgc  # noqa: F401  (registers blocks, checkpoint allow-list)
from mmgc.utils import add_cfg_options_arg, load_tool_config
from mmgc.utils.onnx_export import (ATOL, DEFAULT_OPSET, MIN_OPSET, RTOL,
                                    backbone_neck_for_export, check_opset,
                                    check_sizes, default_input_shape,
                                    export_onnx, max_opset, onnx_file_size)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Export the backbone + neck of a detector to ONNX and '
        'compare onnxruntime with PyTorch on a random input')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file (.pth)')
    parser.add_argument(
        '--out',
        help='output .onnx file (default: '
        'work_dirs/<config name>/<config name>.onnx)')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        metavar=('H', 'W'),
        help='input height and width (default: the test pipeline\'s Resize '
        'scale padded to the data preprocessor\'s pad_size_divisor, e.g. '
        '800 1344 for 1333x800)')
    parser.add_argument(
        '--opset',
        type=int,
        default=DEFAULT_OPSET,
        help=f'ONNX opset version, {MIN_OPSET} to {max_opset()} (default: '
        f'{DEFAULT_OPSET}, what the exporter writes natively; '
        f'{MIN_OPSET} is converted from it)')
    parser.add_argument(
        '--dynamic-shape',
        action='store_true',
        help='symbolic input height and width, checked at a second size '
        'as well (GC, SE, NL; SASA picks its query blocks from the input '
        'size in Python and needs a static shape)')
    parser.add_argument(
        '--no-check',
        action='store_true',
        help='skip the onnxruntime comparison with PyTorch')
    parser.add_argument(
        '--atol',
        type=float,
        default=ATOL,
        help=f'absolute part of the allowed difference (default: {ATOL:g})')
    parser.add_argument(
        '--rtol',
        type=float,
        default=RTOL,
        help='part of the allowed difference relative to each output\'s '
        f'largest magnitude (default: {RTOL:g})')
    add_cfg_options_arg(parser, example='"model.backbone.depth=101"')
    args = parser.parse_args(argv)
    try:
        check_opset(args.opset)
    except ValueError as err:
        parser.error(str(err))
    if args.shape is not None and min(args.shape) < 1:
        parser.error(f'--shape {args.shape[0]} {args.shape[1]}: height and '
                     f'width must be positive integers')
    for name in ('atol', 'rtol'):
        value = getattr(args, name)
        if not value >= 0:
            parser.error(f'--{name} {value!r} must be >= 0')
    if args.out is not None and not args.out.endswith('.onnx'):
        parser.error(f'--out {args.out!r}: the file name must end in .onnx')
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    # the exporter logs one line per missing torchvision op and each pass
    logging.getLogger('torch.onnx').setLevel(logging.ERROR)
    cfg = load_tool_config(args.config, cfg_options=args.cfg_options)
    height, width = args.shape or default_input_shape(cfg)
    out = args.out or osp.join(
        cfg.work_dir,
        osp.splitext(osp.basename(args.config))[0] + '.onnx')
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)

    module, inputs, names = backbone_neck_for_export(cfg, args.checkpoint,
                                                     height, width)
    start = time.perf_counter()
    try:
        export_onnx(
            module,
            inputs,
            out,
            args.opset,
            output_names=names,
            dynamic_shape=args.dynamic_shape)
    except Exception as err:
        if not args.dynamic_shape:
            raise
        print(
            f'error: --dynamic-shape: the exporter cannot make the input '
            f'size of {args.config} symbolic (SASA layers choose their '
            f'query blocks from it in Python); export without '
            f'--dynamic-shape at each --shape H W you need.\n'
            f'exporter: {type(err).__name__}: {str(err)[-600:]}',
            file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    shape_text = ('1x3xHxW (H, W symbolic)'
                  if args.dynamic_shape else f'1x3x{height}x{width}')
    print(f'exported backbone + neck of {args.config}\n'
          f'  weights:  {args.checkpoint}\n'
          f'  onnx:     {out} ({onnx_file_size(out) / 2**20:.1f} MiB, '
          f'opset {args.opset}, {seconds:.1f} s)\n'
          f'  input:    input {shape_text} (normalised, padded image)\n'
          f'  outputs:  {", ".join(names)}')
    if args.no_check:
        return 0
    shapes = [(height, width)]
    if args.dynamic_shape:
        shapes.append((height + 32, width + 64))
    all_ok, reports = check_sizes(out, module, names, shapes, args.atol,
                                  args.rtol)
    print('\n' + '\n\n'.join(reports))
    if not all_ok:
        print(
            f'\nerror: onnxruntime\'s outputs of {out} differ from '
            f'PyTorch\'s beyond the tolerance (rows marked NO)',
            file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
