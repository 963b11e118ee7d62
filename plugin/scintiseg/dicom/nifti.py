"""Just enough NIfTI-1 for 2-D image-mask couples: write and read ``.nii.gz`` with numpy.

nnU-Net v2 and MONAI read NIfTI; a planar scintigraphy frame is a ``(rows, cols)`` array,
written as a volume ``x = columns, y = rows, z = 1`` with the pixel spacing in ``pixdim`` and
a matching ``sform`` (scanner coordinates in mm, code 1). Files are deterministic (gzip
header without time stamp or name). Only what this project writes is read back: uncompressed
data types uint8, int16, uint16, float32, single file (``n+1``).
"""

from __future__ import annotations

import gzip
import io
import struct
from typing import Any

import numpy as np

__all__ = ["read_nifti", "write_nifti"]

#: NIfTI-1 header layout (little endian), 348 bytes.
_HEADER = struct.Struct("<i10s18sihsb8h3f4h8f3fh2b4f2i80s24s2h6f4f4f4f16s4s")
assert _HEADER.size == 348
#: numpy dtype -> NIfTI datatype code.
DATATYPES: dict[np.dtype[Any], int] = {
    np.dtype("uint8"): 2, np.dtype("int16"): 4, np.dtype("float32"): 16, np.dtype("uint16"): 512,
}
_BY_CODE: dict[int, np.dtype[Any]] = {code: dtype for dtype, code in DATATYPES.items()}
VOX_OFFSET = 352  # header + the 4-byte extension flag


def write_nifti(image: np.ndarray, spacing_mm: tuple[float, float] = (1.0, 1.0), description: str = "") -> bytes:
    """A gzipped NIfTI-1 file of a 2-D ``(rows, cols)`` array; spacing is (row, column) in mm."""
    arr = np.ascontiguousarray(image)
    if arr.ndim != 2:
        raise ValueError(f"a 2-D (rows, cols) array is needed, got shape {arr.shape}")
    if arr.dtype not in DATATYPES:
        raise ValueError(f"unsupported data type {arr.dtype} (use {', '.join(map(str, DATATYPES))})")
    rows, cols = arr.shape
    dr, dc = float(spacing_mm[0]), float(spacing_mm[1])
    header = _HEADER.pack(
        348, b"", b"", 0, 0, b"r", 0,
        3, cols, rows, 1, 1, 1, 1, 1,  # dim
        0.0, 0.0, 0.0,  # intent_p1..3
        0, DATATYPES[arr.dtype], arr.dtype.itemsize * 8, 0,  # intent_code, datatype, bitpix, slice_start
        1.0, dc, dr, 1.0, 0.0, 0.0, 0.0, 0.0,  # pixdim (qfac 1)
        float(VOX_OFFSET), 0.0, 0.0,  # vox_offset, scl_slope (0: none), scl_inter
        0, 0, 2,  # slice_end, slice_code, xyzt_units (mm)
        0.0, 0.0, 0.0, 0.0, 0, 0,  # cal_max, cal_min, slice_duration, toffset, glmax, glmin
        description.encode("ascii", "replace")[:79], b"",
        0, 1,  # qform_code, sform_code
        0.0, 0.0, 0.0, 0.0, 0.0, 0.0,  # quaternion, offsets
        dc, 0.0, 0.0, 0.0,
        0.0, dr, 0.0, 0.0,
        0.0, 0.0, 1.0, 0.0,
        b"", b"n+1\0",
    )
    raw = header + b"\0\0\0\0" + arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw)
    return buf.getvalue()


def read_nifti(data: bytes) -> tuple[np.ndarray, tuple[float, float]]:
    """A 2-D NIfTI written by :func:`write_nifti` (or alike): ``(rows, cols)`` array and spacing."""
    raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    fields = _HEADER.unpack_from(raw)
    if fields[0] != 348 or fields[-1][:3] != b"n+1":
        raise ValueError("not a single-file NIfTI-1 image")
    dim = fields[7:15]
    datatype = fields[19]
    pixdim = fields[22:30]
    offset = int(fields[30])
    if datatype not in _BY_CODE:
        raise ValueError(f"unsupported NIfTI datatype {datatype}")
    cols, rows = int(dim[1]), int(dim[2])
    if dim[0] >= 3 and int(dim[3]) != 1:
        raise ValueError(f"a single slice is expected, got {dim[3]}")
    stored: np.dtype[Any] = _BY_CODE[datatype].newbyteorder("<")
    arr = np.frombuffer(raw, dtype=stored, count=rows * cols, offset=offset).reshape(rows, cols)
    return arr.astype(_BY_CODE[datatype], copy=True), (float(pixdim[2]), float(pixdim[1]))
