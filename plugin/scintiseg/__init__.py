"""ScintiSeg: thyroid scintigraphy segmentation to DICOM-SEG.

The package is a pure core (numpy, pydicom, highdicom, onnxruntime); only the
Orthanc entry script ``plugin/scintiseg_plugin.py`` imports ``orthanc``.
"""

#: The one version number: ``pyproject.toml`` reads it at build time
#: (``[tool.setuptools.dynamic]``), so the wheel, ``scintiseg --version`` and the
#: software versions written into DICOM agree.
__version__ = "0.1.0"
