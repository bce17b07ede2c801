"""Third-party warnings a progress console hides, each matched narrowly by
its message, category and the module that issues it (never a blanket
filter: any other warning still shows)."""
import logging
import re
import warnings
from typing import Tuple, Type

# (message regex, matched from the start; category; module regex)
KNOWN_WARNINGS: Tuple[Tuple[str, Type[Warning], str], ...] = (
    # setuptools < 81 announces pkg_resources' removal; mmengine and mmcv
    # import it (and need it) on this stack; mmengine's package_utils also
    # reloads it with importlib.reload, which the warning then names
    (r'pkg_resources is deprecated as an API', UserWarning,
     r'(mmengine|mmcv|mmdet|pkg_resources|importlib)(\..*)?$'), )


def filter_third_party_warnings() -> None:
    """Ignore the :data:`KNOWN_WARNINGS` in this process."""
    for message, category, module in KNOWN_WARNINGS:
        warnings.filterwarnings(
            'ignore', message=message, category=category, module=module)


# (logger-name regex, message regex matched from the start): deprecation
# notices mmengine logs through its own logger about its own internals
KNOWN_LOG_MESSAGES: Tuple[Tuple[str, str], ...] = (
    (r'mmengine$|.*_\d{8}_\d{6}$',
     r'"FileClient" will be deprecated in future'),
    (r'mmengine$|.*_\d{8}_\d{6}$',
     r'"HardDiskBackend" is the alias of "LocalBackend"'),
    # mmdet's DumpDetResults (tools/test.py --out) has no metric prefix
    (r'mmengine$|.*_\d{8}_\d{6}$',
     r'The prefix is not set in metric class DumpDetResults'),
    # an iteration-based loop over a finite sampler restarts it each pass
    # by design (the resumable loop counts passes for the exact resume)
    (r'mmengine$|.*_\d{8}_\d{6}$',
     r'Reach the end of the dataloader, it will be restarted'),
)


class KnownLogMessageFilter(logging.Filter):
    """A logging filter that drops the :data:`KNOWN_LOG_MESSAGES`.

    mmengine logs them through its ``MMLogger`` (the default ``mmengine``
    logger or a runner's ``<experiment>_<timestamp>`` logger) at WARNING
    level; add this filter to a console handler only, so the log file
    keeps them.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(
            re.match(name, record.name) and re.match(text, message)
            for name, text in KNOWN_LOG_MESSAGES)
