"""Which instances of a stable study are worth segmenting (the ``ScintiSeg`` selection rules)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pydicom

from scintiseg.dicom.nm import NM_IMAGE_STORAGE, NM_IMAGE_STORAGE_RETIRED


@dataclass(frozen=True)
class Selection:
    """Which instances of a stable study are worth segmenting.

    A study is looked at series by series: a series qualifies when its
    Modality is in ``modalities`` and, if a rule is set, its Series
    Description matches ``series_description`` (``re.search``). An instance
    of a qualifying series qualifies when its SOP Class is in
    ``sop_classes`` and, if a rule is set, the radiopharmaceutical text of
    its header (:func:`radiopharmaceutical_text`) matches ``radiopharmaceutical``.
    """

    modalities: tuple[str, ...] = ("NM",)
    sop_classes: tuple[str, ...] = (NM_IMAGE_STORAGE, NM_IMAGE_STORAGE_RETIRED)
    series_description: re.Pattern[str] | None = None
    radiopharmaceutical: re.Pattern[str] | None = None


def radiopharmaceutical_text(ds: pydicom.Dataset) -> str:
    """The radiopharmaceutical and radionuclide names of an NM header, joined."""
    parts: list[str] = []
    for item in ds.get("RadiopharmaceuticalInformationSequence", None) or []:
        if item.get("Radiopharmaceutical"):
            parts.append(str(item.Radiopharmaceutical))
        for keyword in ("RadiopharmaceuticalCodeSequence", "RadionuclideCodeSequence"):
            for code in item.get(keyword, None) or []:
                if code.get("CodeMeaning"):
                    parts.append(str(code.CodeMeaning))
    return " | ".join(parts)
