"""Pieces shared by several mmgc blocks; each lives here once."""
from .implementation import IMPLS, SelectableImpl, set_impl
from .validation import (ArgumentError, ArgumentKeyError, check_choice,
                         check_odd, check_positive, check_positive_int,
                         check_reduced_channels, to_int_pair)
from .zero_init import OwnInitAfterParent, zero_init_last_layer

__all__ = [
    'IMPLS', 'SelectableImpl', 'set_impl', 'ArgumentError', 'ArgumentKeyError',
    'check_choice', 'check_odd', 'check_positive', 'check_positive_int',
    'check_reduced_channels', 'to_int_pair', 'OwnInitAfterParent',
    'zero_init_last_layer'
]
