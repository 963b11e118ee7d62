"""Synthetic thyroid scintigraphies (anterior neck view) with ground-truth masks.

Pure numpy/scipy. See :mod:`scintiseg.synthetic.scan` (and ``docs/synthetic-data.md``)
for every parameter range and the case mix.

>>> from scintiseg.synthetic import generate_scan
>>> scan = generate_scan(0)
>>> scan.counts.dtype, scan.gland.dtype
(dtype('uint16'), dtype('bool'))
"""

from .acquisition import COLLIMATORS, ISOTOPE_SPECS, ISOTOPES
from .scan import CASE_KINDS, KIND_WEIGHTS, MATRIX_WEIGHTS, Scan, generate_scan

__all__ = [
    "CASE_KINDS",
    "COLLIMATORS",
    "ISOTOPES",
    "ISOTOPE_SPECS",
    "KIND_WEIGHTS",
    "MATRIX_WEIGHTS",
    "Scan",
    "generate_scan",
]
