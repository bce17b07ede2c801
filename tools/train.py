"""Train a detector with mmgc blocks (MMDetection's tools/train.py).

Usage:
    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--data-root DIR] [--{train,val,test}-ann FILE]
        [--{train,val,test}-img PREFIX] [--classes NAME ... | from_file]
        [--progress] [--cfg-options k=v ...] [--launcher ...]
"""
import mmgc  # noqa: F401  (registers blocks, checkpoint allow-list)
from mmgc.utils import (build_runner, build_train_config, build_train_parser,
                        parse_tool_args, released_process_group)


def main() -> None:
    args = parse_tool_args(build_train_parser())
    cfg = build_train_config(args)
    runner = build_runner(cfg, args.progress)
    with released_process_group(exit_process_after=True):
        runner.train()


if __name__ == '__main__':
    main()
