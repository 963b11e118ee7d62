"""The local anonymized database's loop: studies pseudonymized in, physician labels in, datasets out.

Holds the pseudonymization step (:mod:`~scintiseg.intake.anonymize`), the intake of the
physicians' label objects with the AI agreement (:mod:`~scintiseg.intake.labels`) and the
export of image-mask couples as an nnU-Net raw dataset (:mod:`~scintiseg.intake.datasets`).

May import: :mod:`scintiseg.work`, :mod:`scintiseg.pipeline`, :mod:`scintiseg.models`,
:mod:`scintiseg.dicom`, :mod:`scintiseg.core`.
"""
