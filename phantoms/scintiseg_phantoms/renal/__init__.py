"""The renal DMSA family: Tc-99m DMSA cortical scintigraphy, posterior and anterior views.

A second kind of exam for the registry's "a new exam is a folder added": two kidneys of
varied size, position, tilt and depth, scars, small, absent, ectopic, horseshoe and duplex
kidneys, liver, spleen, bladder and background, 100 k - 1 M counts, matrices 128 and 256,
with the truth masks (left kidney, right kidney, scars) and the true split function.

* :func:`generate_study` — one study from its seed (:mod:`.study`);
* :data:`KINDS` — the case kinds, one row each (:mod:`.kinds`);
* :func:`write_renal_study` — the views as NM instances (:mod:`.dicom`).
"""

from .dicom import VIEW_CODES, renal_study_uids, view_to_dataset, write_renal_study
from .kinds import KINDS, KidneyKind
from .study import MU_PER_MM, VIEWS, RenalStudy, RenalView, generate_study

__all__ = [
    "KINDS",
    "MU_PER_MM",
    "VIEWS",
    "VIEW_CODES",
    "KidneyKind",
    "RenalStudy",
    "RenalView",
    "generate_study",
    "renal_study_uids",
    "view_to_dataset",
    "write_renal_study",
]
