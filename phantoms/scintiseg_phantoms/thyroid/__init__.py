"""The training phantom family: synthetic anterior-neck thyroid scintigraphies with ground truth.

Pure numpy/scipy. Each case kind's parameters are one row of
:data:`scintiseg_phantoms.thyroid.kinds.KINDS`; the steps are in
:mod:`scintiseg_phantoms.thyroid.scan`; ranges and case mix in ``docs/synthetic-data.md``.

>>> from scintiseg_phantoms.thyroid import generate_scan
>>> scan = generate_scan(0)
>>> scan.counts.dtype, scan.gland.dtype
(dtype('uint16'), dtype('bool'))
"""

from ..record import Scan
from .acquisition import COLLIMATORS, IMAGING, ISOTOPE_SPECS, ISOTOPES, MATRIX_WEIGHTS
from .kinds import CASE_KINDS, KIND_WEIGHTS, KINDS, KindSpec
from .scan import generate_scan

__all__ = [
    "CASE_KINDS",
    "COLLIMATORS",
    "IMAGING",
    "ISOTOPES",
    "ISOTOPE_SPECS",
    "KINDS",
    "KIND_WEIGHTS",
    "MATRIX_WEIGHTS",
    "KindSpec",
    "Scan",
    "generate_scan",
]
