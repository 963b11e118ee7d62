"""The training phantom family: synthetic anterior-neck thyroid scintigraphies with ground truth.

Pure numpy/scipy. See :mod:`scintiseg_phantoms.thyroid.scan` (and ``docs/synthetic-data.md``)
for every parameter range and the case mix.

>>> from scintiseg_phantoms.thyroid import generate_scan
>>> scan = generate_scan(0)
>>> scan.counts.dtype, scan.gland.dtype
(dtype('uint16'), dtype('bool'))
"""

from ..record import Scan
from .acquisition import COLLIMATORS, ISOTOPE_SPECS, ISOTOPES
from .scan import CASE_KINDS, KIND_WEIGHTS, MATRIX_WEIGHTS, generate_scan

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
