"""ScintiSeg: thyroid scintigraphy segmentation to DICOM-SEG.

The package is a pure core (numpy, pydicom, highdicom, onnxruntime); only the
Orthanc entry script ``plugin/scintiseg_plugin.py`` imports ``orthanc``.
"""

__version__ = "0.1.0"
