"""Synthetic scintigraphy phantoms: for training, tests, benchmarks and demos only.

Nothing that the Orthanc plugin serves imports this package; it ships beside
``scintiseg`` so that ``scintiseg generate`` and the training code can use it.

* :mod:`scintiseg_phantoms.thyroid` — the training family (``generate_scan``);
* :mod:`scintiseg_phantoms.independent` — a second family with its own shape and imaging
  models, never trained or tuned on: it measures generalisation only;
* :mod:`scintiseg_phantoms.renal` — Tc-99m DMSA renal studies (posterior and anterior
  views, kidney and scar masks, the true split function): another exam than the thyroid;
* :mod:`scintiseg_phantoms.record` — the :class:`Scan` both thyroid families return;
* :mod:`scintiseg_phantoms.dicom` — a scan as an NM Image Storage instance;
* :mod:`scintiseg_phantoms.montage` — a picture of many scans with their outlines.
"""

from .record import Scan

__all__ = ["Scan"]
