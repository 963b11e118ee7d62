"""DICOM in and out, as pure functions of datasets and arrays.

Holds NM reading (:mod:`~scintiseg.dicom.nm`), the common modules every written
dataset carries (:mod:`~scintiseg.dicom.builder`), the SEG writer and its codes
(:mod:`scintiseg.dicom.seg`), physician label objects read back
(:mod:`~scintiseg.dicom.labels`: SEG, RTSTRUCT), contours (:mod:`~scintiseg.dicom.contours`)
and NIfTI (:mod:`~scintiseg.dicom.nifti`).

May import: :mod:`scintiseg.core`; numpy, pydicom, highdicom.
"""
