"""Run-time helpers used by mmgc's tools."""
from .cpu_dist import adapt_dist_cfg_to_device, init_launcher_process_group
from .data_location import (add_data_args, apply_data_args, parse_classes,
                            set_data_location)
from .known_warnings import KnownLogMessageFilter, filter_third_party_warnings
from .package import get_config_path, package_root, shipped_path
from .process_group import (destroy_default_group, exit_process,
                            released_process_group)
from .progress import ProgressBar
from .random_init import randomize_
from .tool_config import (add_cfg_options_arg, add_config_and_launch_args,
                          add_shape_arg, build_runner, build_test_config,
                          build_test_parser, build_train_config,
                          build_train_parser, image_shape, load_tool_config,
                          parse_tool_args, prepare_launch)

__all__ = [
    'adapt_dist_cfg_to_device', 'init_launcher_process_group', 'add_data_args',
    'apply_data_args', 'parse_classes', 'set_data_location',
    'KnownLogMessageFilter', 'filter_third_party_warnings', 'get_config_path',
    'package_root', 'shipped_path', 'destroy_default_group', 'exit_process',
    'released_process_group', 'ProgressBar', 'randomize_',
    'add_cfg_options_arg', 'add_config_and_launch_args', 'add_shape_arg',
    'build_runner', 'build_test_config', 'build_test_parser',
    'build_train_config', 'build_train_parser', 'image_shape',
    'load_tool_config', 'parse_tool_args', 'prepare_launch'
]
