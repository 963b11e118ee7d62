import pytest
from pydicom.uid import UID

from scintiseg.core.uids import deterministic_uid


def test_same_parts_same_uid_and_valid():
    a = deterministic_uid("series", "1.2.3", "scintiseg-gland@1.0.0")
    assert a == deterministic_uid("series", "1.2.3", "scintiseg-gland@1.0.0")
    assert UID(a).is_valid and len(a) <= 64 and a.startswith("2.25.")


def test_different_parts_different_uid():
    assert deterministic_uid("a", "b") != deterministic_uid("a", "c")
    assert deterministic_uid("ab") != deterministic_uid("a", "b")


def test_needs_parts():
    with pytest.raises(ValueError):
        deterministic_uid()
