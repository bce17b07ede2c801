"""Where the files shipped with mmgc (configs, tools, model-index.yml) are.

An installed mmgc (``pip install .``, a wheel, ``mim install``) carries them
in ``mmgc/.mim/``, the OpenMMLab layout that ``mim`` reads; an editable
install links ``mmgc/.mim/`` to the source tree (setup.py does both). Code
run straight from a source checkout (``PYTHONPATH=.``, no install) finds
them next to the package, in the checkout.
"""
import os.path as osp

import mmgc

#: Top-level entries shipped in ``mmgc/.mim``.
SHIPPED = ('configs', 'tools', 'model-index.yml')


def package_root() -> str:
    """Directory holding mmgc's shipped files.

    Returns:
        str: ``mmgc/.mim`` when mmgc was installed, else the root of the
        source checkout mmgc is imported from.

    Raises:
        FileNotFoundError: Neither is there (an install without its data,
            e.g. a package built by other means than setup.py).
    """
    package = osp.dirname(osp.abspath(mmgc.__file__))
    mim = osp.join(package, '.mim')
    if osp.isdir(mim):
        return mim
    checkout = osp.dirname(package)
    if osp.isfile(osp.join(checkout, 'setup.py')) and all(
            osp.exists(osp.join(checkout, name)) for name in SHIPPED):
        return checkout
    raise FileNotFoundError(
        f'mmgc at {package} has neither mmgc/.mim/ (an installed package) '
        f'nor a source checkout around it, so its {", ".join(SHIPPED)} '
        'cannot be found; reinstall it with `pip install <mmgc checkout>` '
        'or `pip install -e <mmgc checkout>`')


def shipped_path(*parts: str) -> str:
    """Path of a shipped file or directory.

    Args:
        *parts (str): Path below the package root, e.g. ``'tools',
            'train.py'``.

    Returns:
        str: The absolute path (not checked for existence).
    """
    return osp.join(package_root(), *parts)


def get_config_path(name: str) -> str:
    """Path of a shipped config.

    Args:
        name (str): Config path below ``configs/``, with or without
            ``.py``, e.g. ``'gc_r50_mask'`` or
            ``'demo/gc_r50_mask_synthetic.py'``.

    Returns:
        str: The config file's absolute path.

    Raises:
        FileNotFoundError: mmgc ships no such config.
    """
    if not name.endswith('.py'):
        name += '.py'
    path = shipped_path('configs', name)
    if not osp.isfile(path):
        raise FileNotFoundError(f'mmgc ships no config {name!r} (looked in '
                                f'{osp.dirname(path)})')
    return path
