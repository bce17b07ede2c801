"""mmgc: attention plugin blocks (GC, NL, SE, SASA) for MMDetection 3.x.

Install through ``make setup`` (tools/setup_env.sh): torch and mmcv with
compiled ops must be in place before this package, which plain
``pip install -e .`` cannot order.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r"__version__ = '([^']+)'",
                    (HERE / 'mmgc' / 'version.py').read_text()).group(1)

setup(
    name='mmgc',
    version=VERSION,
    description='Global-context, non-local, squeeze-excitation and local '
    'self-attention blocks for MMDetection 3.x',
    long_description=(HERE / 'README.md').read_text()
    if (HERE / 'README.md').exists() else '',
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
    zip_safe=False,
)
