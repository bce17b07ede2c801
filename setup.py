"""mmgc: attention plugin blocks (GC, NL, SE, SASA) for MMDetection 3.x.

Install through ``make setup`` (tools/setup_env.sh): torch and mmcv with
compiled ops must be in place before this package, which plain
``pip install -e .`` cannot order. Into an environment that has them,
``pip install .`` installs a self-contained package: configs, tools and
model-index.yml go to ``mmgc/.mim/`` (see :class:`BuildPyWithMim`).
"""
import os
import re
import shutil
from pathlib import Path
from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
#: Shipped in mmgc/.mim/: OpenMMLab's layout, which ``mim`` and
#: ``mmgc.utils.package_root()`` read.
MIM_FILES = ('configs', 'tools', 'model-index.yml')
VERSION = re.search(r"__version__ = '([^']+)'",
                    (HERE / 'mmgc' / 'version.py').read_text()).group(1)


class BuildPyWithMim(build_py):
    """``build_py`` that adds ``mmgc/.mim/`` (MMDetection's
    ``add_mim_extension``): a wheel (``pip install .``, ``pip wheel``) gets
    copies of :data:`MIM_FILES`; an editable install gets links to them in
    the source tree, so edits show without reinstalling."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            self._link(HERE / 'mmgc' / '.mim')
        else:
            self._copy(Path(self.build_lib) / 'mmgc' / '.mim')

    @staticmethod
    def _sources():
        for name in MIM_FILES:
            source = HERE / name
            if not source.exists():
                raise FileNotFoundError(
                    f'{source} is missing: mmgc/.mim/ needs {MIM_FILES}')
            yield name, source

    @staticmethod
    def _clear(target: Path) -> None:
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)

    def _copy(self, mim: Path) -> None:
        mim.mkdir(parents=True, exist_ok=True)
        for name, source in self._sources():
            target = mim / name
            self._clear(target)
            if source.is_dir():
                shutil.copytree(
                    source,
                    target,
                    ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
            else:
                shutil.copyfile(source, target)

    def _link(self, mim: Path) -> None:
        mim.mkdir(parents=True, exist_ok=True)
        for name, source in self._sources():
            target = mim / name
            self._clear(target)
            os.symlink(os.path.relpath(source, mim), target)


setup(
    name='mmgc',
    version=VERSION,
    description='Global-context, non-local, squeeze-excitation and local '
    'self-attention blocks for MMDetection 3.x',
    long_description=(HERE / 'README.md').read_text() if
    (HERE / 'README.md').exists() else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmgc', 'mmgc.*']),
    python_requires='>=3.8',
    install_requires=[
        'torch>=1.8',
        'mmengine==0.10.7',
        'mmcv>=2.0.0rc4,<2.2.0',
        'mmdet>=3.0.0,<3.4.0',
        'pycocotools',
    ],
    license='Apache-2.0',
    cmdclass={'build_py': BuildPyWithMim},
    zip_safe=False,
)
