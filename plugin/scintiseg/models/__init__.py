"""The models: what an exported ONNX model folder is, and how it runs.

Holds the model card (:mod:`~scintiseg.models.card`, the one contract between training
and serving) and its applicability rules (:mod:`~scintiseg.models.rules`), the pre- and
post-processing steps a card names (:mod:`~scintiseg.models.preprocess`,
:mod:`~scintiseg.models.postprocess`, :mod:`~scintiseg.models.steps`), the measurements
(:mod:`~scintiseg.models.measurements`), the guard on model files
(:mod:`~scintiseg.models.guard`), the registry of model folders
(:mod:`~scintiseg.models.registry`) and the ONNX Runtime sessions
(:mod:`~scintiseg.models.runtime`).

May import: :mod:`scintiseg.dicom`, :mod:`scintiseg.core`; numpy, onnxruntime.
"""
