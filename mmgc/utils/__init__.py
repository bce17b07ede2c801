"""Run-time helpers used by mmgc's tools."""
from .cpu_dist import adapt_dist_cfg_to_device, init_cpu_process_group
from .tool_config import load_tool_config, prepare_launch

__all__ = [
    'adapt_dist_cfg_to_device', 'init_cpu_process_group', 'load_tool_config',
    'prepare_launch'
]
