"""One image in; masks, measurements, quality flags and a SEG out.

Holds the per-image pipeline (:mod:`~scintiseg.pipeline.image`: the models a card
plan picks, run, measured, written as a SEG), the preview picture
(:mod:`~scintiseg.pipeline.preview`), the quality flags (:mod:`~scintiseg.pipeline.quality`),
shadow models (:mod:`~scintiseg.pipeline.shadow`) and the AI-vs-physician agreement
(:mod:`~scintiseg.pipeline.agreement`). No store, no thread: a function of a dataset.

May import: :mod:`scintiseg.models`, :mod:`scintiseg.dicom`, :mod:`scintiseg.core`.
"""
