"""Run-time helpers used by mmgc's tools."""
from .cpu_dist import adapt_dist_cfg_to_device, init_cpu_process_group
from .tool_config import (add_config_and_launch_args, load_tool_config,
                          parse_tool_args, prepare_launch)

__all__ = [
    'adapt_dist_cfg_to_device', 'init_cpu_process_group',
    'add_config_and_launch_args', 'load_tool_config', 'parse_tool_args',
    'prepare_launch'
]
