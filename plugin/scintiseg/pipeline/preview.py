"""A picture of the result: the scan with each label's outline, as PNG or DICOM.

:func:`render_preview` draws what a physician checks at a glance: the
scintigraphy (counts windowed to the 99.5th percentile, grey or an NM-like
"hot" colour map, upscaled to at least 512 pixels), one outline per label
(:class:`Layer`) in the label's display colour (the thyroid in green, cold
nodules in magenta for the shipped models), the components of numbered labels
numbered as measured, a legend with one entry per label (and the count of
numbered ones), the image's quality flag codes, and the model versions that
produced the outlines. A multi-frame
image gives one panel per frame, side by side. No patient identity is drawn
(only the caller's ``title``), so the picture can be shown or stored freely.

:func:`preview_secondary_capture` wraps such a picture (RGB pixels) into a
Secondary Capture Image Storage instance in the source's study, so that any
PACS viewer shows it next to the images. It is deterministic like the SEG:
UIDs are passed in, dates are the segmented image's.

Pure: numpy, scipy, Pillow and pydicom only.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom import Dataset
from scipy import ndimage

from scintiseg import __version__
from scintiseg.dicom.builder import (
    Equipment,
    GeneralImage,
    Series,
    add_equipment,
    add_general_image,
    add_series,
    derived_instance,
    image_reference,
)
from scintiseg.dicom.nm import nm_frames
from scintiseg.dicom.seg.content import GLAND_RGB, NODULE_RGB
from scintiseg.dicom.seg.writer import source_content_datetime

__all__ = [
    "COLORMAPS",
    "Layer",
    "GLAND_RGB",
    "NODULE_RGB",
    "SECONDARY_CAPTURE_STORAGE",
    "masks_from_seg",
    "png_to_rgb",
    "preview_from_seg",
    "preview_secondary_capture",
    "render_preview",
    "render_preview_rgb",
    "stack_pngs",
]

SECONDARY_CAPTURE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
FLAG_RGB = (255, 190, 40)

BACKGROUND_RGB = (12, 14, 18)
TEXT_RGB = (230, 232, 236)
MUTED_RGB = (150, 155, 165)

MIN_PANEL = 512
WINDOW_PERCENTILE = 99.5
COLORMAPS = ("grey", "hot")


def _colormap(name: str) -> np.ndarray:
    """A 256x3 uint8 lookup table."""
    x = np.linspace(0.0, 1.0, 256)
    if name == "grey":
        rgb = np.stack([x, x, x], axis=1)
    elif name == "hot":  # black-red-yellow-white, the classic nuclear-medicine "hot iron"
        rgb = np.stack(
            [np.clip(x * 2.5, 0, 1), np.clip(x * 2.5 - 1.0, 0, 1), np.clip(x * 3.0 - 2.0, 0, 1)],
            axis=1,
        )
    else:
        raise ValueError(f"colormap must be one of {COLORMAPS}, got {name!r}")
    return np.round(rgb * 255).astype(np.uint8)


def _as_stack(a: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.ndim != 3 or 0 in arr.shape:
        raise ValueError(f"{what} must be (rows, cols) or (frames, rows, cols), got {np.shape(a)}")
    return arr


def _window(counts: np.ndarray) -> np.ndarray:
    """Counts to [0, 1]: zero to the 99.5th percentile (hot spots saturate, as on a camera)."""
    c = counts.astype(np.float64)
    hi = float(np.percentile(c, WINDOW_PERCENTILE)) if c.size else 0.0
    if not np.isfinite(hi) or hi <= 0:
        hi = float(c.max()) if c.size and c.max() > 0 else 1.0
    return np.clip(c / hi, 0.0, 1.0)


def _outline(mask: np.ndarray, width: int) -> np.ndarray:
    """The ring of ``width`` pixels just inside each region's border."""
    if not mask.any():
        return mask
    inner = ndimage.binary_erosion(mask, iterations=width, border_value=0)
    return mask & ~inner


_ASCII_PUNCTUATION = str.maketrans({"\u2014": "-", "\u2013": "-", "\u2018": "'", "\u2019": "'",
                                    "\u201c": '"', "\u201d": '"', "\u2026": "..."})


def _printable(text: str) -> str:
    """``text`` with the punctuation the bundled font lacks replaced by ASCII."""
    return text.translate(_ASCII_PUNCTUATION)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow's bundled font: the same glyphs on every machine (determinism)
    return ImageFont.load_default(size=size)


def _upscale_mask(mask: np.ndarray, scale: int) -> np.ndarray:
    """Mask at ``scale`` times the size, with smooth (not staircase) borders."""
    if scale == 1 or not mask.any():
        return np.kron(mask, np.ones((scale, scale), dtype=bool))
    rows, cols = mask.shape
    small = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
    big = small.resize((cols * scale, rows * scale), Image.Resampling.BILINEAR)  # pixel-centre aligned
    return np.asarray(big) > 127


def _nodule_labels(nodules: np.ndarray) -> list[tuple[int, float, float, float]]:
    """(number, top row, right column, centre row) of each nodule, numbered as measured.

    The numbering is :func:`scintiseg.models.measurements.measure_frame`'s (8-connected
    components in scan order), so "nodule 2" in the picture is ``nodules[1]``
    of the measurements.
    """
    labels, n = ndimage.label(nodules, structure=np.ones((3, 3), dtype=bool))
    out = []
    for i, box in enumerate(ndimage.find_objects(labels), 1):
        if box is not None:
            out.append((i, float(box[0].start), float(box[1].stop), (box[0].start + box[0].stop) / 2))
    return out[:n]


@dataclass(frozen=True)
class Layer:
    """One label drawn on the preview: its name, colour and mask(s); ``numbered`` labels
    (nodules) have their components numbered and counted in the legend."""

    name: str
    colour: tuple[int, int, int]
    mask: np.ndarray
    numbered: bool = False


def _panel(counts: np.ndarray, layers: Sequence[tuple[Layer, np.ndarray]], scale: int,
           lut: np.ndarray) -> Image.Image:
    rows, cols = counts.shape
    size = (cols * scale, rows * scale)
    grey = Image.fromarray(np.round(_window(counts) * 255).astype(np.uint8), mode="L")
    grey = grey.resize(size, Image.Resampling.BILINEAR)
    rgb = lut[np.asarray(grey)]
    width = max(2, scale // 2)
    for layer, mask in layers:
        rgb[_outline(_upscale_mask(mask, scale), width)] = layer.colour
    image = Image.fromarray(rgb, mode="RGB")
    draw = ImageDraw.Draw(image)
    font = _font(19)
    for layer, mask in layers:
        if not layer.numbered:
            continue
        for number, top, right, _ in _nodule_labels(mask):
            x, y = min(right * scale + 3, size[0] - 12), max(0.0, top * scale - 18)
            draw.text((x, y), str(number), fill=layer.colour, font=font, stroke_width=1,
                      stroke_fill=(0, 0, 0))
    return image


def _count_components(mask: np.ndarray) -> int:
    return int(ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))[1]) if mask.any() else 0


def render_preview(
    frame: np.ndarray,
    layers: Sequence[Layer],
    *,
    models: Sequence[str],
    title: str | None = None,
    colormap: str = "grey",
    flags: Sequence[str] = (),
) -> bytes:
    """PNG bytes: the scan(s) with each layer's outline, a legend, flags and the model versions.

    ``frame`` holds counts, ``(rows, cols)`` or ``(frames, rows, cols)``; each
    layer's mask is boolean of the same shape. Each frame is one panel,
    upscaled by an integer factor to at least 512 pixels; ``flags`` are the
    image's quality flag codes. The same arguments always give the same bytes.
    """
    canvas = _render(frame, layers, models=models, title=title, colormap=colormap, flags=flags)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def render_preview_rgb(
    frame: np.ndarray,
    layers: Sequence[Layer],
    *,
    models: Sequence[str],
    title: str | None = None,
    colormap: str = "grey",
    flags: Sequence[str] = (),
) -> np.ndarray:
    """The picture of :func:`render_preview` as ``(rows, cols, 3)`` uint8 (no PNG round trip)."""
    canvas = _render(frame, layers, models=models, title=title, colormap=colormap, flags=flags)
    return np.asarray(canvas, dtype=np.uint8).copy()


def stack_pngs(pngs: Sequence[bytes]) -> bytes:
    """Several previews (one per image of a study) one above the other, as one PNG."""
    if len(pngs) == 1:
        return pngs[0]
    images = [Image.open(io.BytesIO(p)).convert("RGB") for p in pngs]
    width = max(i.width for i in images)
    canvas = Image.new("RGB", (width, sum(i.height for i in images)), BACKGROUND_RGB)
    y = 0
    for image in images:
        canvas.paste(image, (0, y))
        y += image.height
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _render(
    frame: np.ndarray,
    layers: Sequence[Layer],
    *,
    models: Sequence[str],
    title: str | None,
    colormap: str,
    flags: Sequence[str] = (),
) -> Image.Image:
    counts = _as_stack(frame, "frame")
    stacks = [_as_stack(layer.mask, layer.name).astype(bool) for layer in layers]
    for layer, stack in zip(layers, stacks, strict=True):
        if stack.shape != counts.shape:
            raise ValueError(f"mask {layer.name!r} {stack.shape} must have the frame's shape {counts.shape}")
    if colormap not in COLORMAPS:
        raise ValueError(f"colormap must be one of {COLORMAPS}, got {colormap!r}")
    lut = _colormap(colormap)
    n_frames, rows, cols = counts.shape
    scale = max(1, -(-MIN_PANEL // max(rows, cols)))  # ceil
    panels = [
        _panel(counts[i], [(layer, stack[i]) for layer, stack in zip(layers, stacks, strict=True)], scale, lut)
        for i in range(n_frames)
    ]
    pw, ph = panels[0].size

    margin, gap = 16, 12
    width = margin * 2 + n_frames * pw + (n_frames - 1) * gap
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    big, normal, small = _font(24), _font(18), _font(15)
    # legend entries, wrapped into rows that fit the picture's width
    entries = []
    for layer, stack in zip(layers, stacks, strict=True):
        text = layer.name
        if layer.numbered:
            text += f" ({sum(_count_components(stack[i]) for i in range(n_frames))})"
        entries.append((layer.colour, _printable(text), 32 + int(probe.textlength(_printable(text), font=normal)) + 36))
    legend_rows: list[list[tuple[tuple[int, int, int], str, int]]] = [[]]
    used = 0
    for entry in entries:
        if legend_rows[-1] and used + entry[2] > width - 2 * margin:
            legend_rows.append([])
            used = 0
        legend_rows[-1].append(entry)
        used += entry[2]

    title_h = 44 if title else 0
    label_h = 26 if n_frames > 1 else 0
    flags_h = 24 if flags else 0
    legend_h = 60 + 32 * len(legend_rows) + flags_h
    height = margin + title_h + label_h + ph + legend_h
    canvas = Image.new("RGB", (width, height), BACKGROUND_RGB)
    draw = ImageDraw.Draw(canvas)

    y = margin
    if title:
        draw.text((margin, y), _printable(title), fill=TEXT_RGB, font=big)
        y += title_h
    for i, panel in enumerate(panels):
        x = margin + i * (pw + gap)
        if n_frames > 1:
            draw.text((x, y), f"Frame {i + 1}", fill=MUTED_RGB, font=small)
        canvas.paste(panel, (x, y + label_h))
        draw.rectangle((x - 1, y + label_h - 1, x + pw, y + label_h + ph), outline=(60, 64, 72))
    y += label_h + ph + 14

    for row in legend_rows:
        x = margin
        for colour, text, advance in row:
            draw.rectangle((x, y + 3, x + 22, y + 19), outline=colour, width=3)
            draw.text((x + 32, y), text, fill=TEXT_RGB, font=normal)
            x += advance
        y += 32
    if flags:
        draw.text((margin, y), _printable("Flags: " + ", ".join(flags)), fill=FLAG_RGB, font=small)
        y += flags_h
    model_text = _printable("Models: " + (", ".join(models) if models else "unknown"))
    draw.text((margin, y), model_text, fill=MUTED_RGB, font=small)
    note = f"ScintiSeg {__version__} - automatic segmentation, to be reviewed"
    draw.text((margin, y + 22), note, fill=MUTED_RGB, font=small)
    return canvas


def png_to_rgb(png: bytes) -> np.ndarray:
    """Decode PNG bytes to an ``(rows, cols, 3)`` uint8 array."""
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB")).copy()


def preview_secondary_capture(
    source_nm: Dataset,
    png_rgb: np.ndarray,
    *,
    series_uid: str,
    sop_uid: str,
    series_number: int,
    series_description: str,
    instance_number: int = 1,
) -> Dataset:
    """A Secondary Capture Image Storage instance holding ``png_rgb`` in ``source_nm``'s study.

    ``png_rgb`` is ``(rows, cols, 3)`` uint8 (see :func:`png_to_rgb`). The
    instance copies the source's patient and study modules, references the
    source image, and takes its dates from the source (never the clock), so
    the same arguments give the same dataset. Modality is ``OT``: the picture
    is not a count image, and ScintiSeg must never try to segment it.
    """
    pixels = np.asarray(png_rgb)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"png_rgb must be (rows, cols, 3) uint8, got {pixels.shape} {pixels.dtype}")
    if not 1 <= pixels.shape[0] <= 65535 or not 1 <= pixels.shape[1] <= 65535:
        raise ValueError(f"picture size {pixels.shape[:2]} is out of range")
    for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        if not source_nm.get(keyword):
            raise ValueError(f"the source has no {keyword}")
    if not 1 <= series_number <= 2**31 - 1 or not 1 <= instance_number <= 2**31 - 1:
        raise ValueError("series_number and instance_number must be positive")
    if len(series_description) > 64 or "\\" in series_description:
        raise ValueError("series_description must be at most 64 characters, without '\\'")

    date, time = source_content_datetime(source_nm)
    ds = derived_instance(source_nm, SECONDARY_CAPTURE_STORAGE, sop_uid)
    if source_nm.get("SpecificCharacterSet"):
        ds.SpecificCharacterSet = source_nm.SpecificCharacterSet
    elif not series_description.isascii() and source_nm.get("SpecificCharacterSet") is None:
        ds.SpecificCharacterSet = "ISO_IR 192"
    # General Series; an unpaired body part, so no Laterality (type 2C, for paired parts only)
    add_series(ds, Series("OT", series_uid, series_number, series_description, date, time, body_part="THYROID"))
    # General Equipment + SC Equipment
    add_equipment(ds, Equipment("ScintiSeg"))
    ds.ConversionType = "WSD"
    ds.SecondaryCaptureDeviceManufacturer = "ScintiSeg"
    ds.SecondaryCaptureDeviceManufacturerModelName = "ScintiSeg preview"
    ds.SecondaryCaptureDeviceSoftwareVersions = f"ScintiSeg {__version__}"
    # General Image + SC Image
    add_general_image(ds, GeneralImage(instance_number, date, time, ["DERIVED", "SECONDARY"]))
    ds.DerivationDescription = "ScintiSeg segmentation preview (label outlines)"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.SourceImageSequence = [image_reference(source_nm)]
    # Image Pixel
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    data = np.ascontiguousarray(pixels).tobytes()
    ds.PixelData = data + (b"\0" if len(data) % 2 else b"")
    return ds


def _seg_models(seg: Dataset) -> list[str]:
    models: list[str] = []
    for item in seg.get("SegmentSequence", None) or []:
        for algo in item.get("SegmentationAlgorithmIdentificationSequence", None) or []:
            ident = f"{algo.get('AlgorithmName', '?')}@{algo.get('AlgorithmVersion', '?')}"
            if ident not in models:
                models.append(ident)
    return models


def _segment_colour(item: Dataset) -> tuple[int, int, int]:
    from highdicom.color import CIELabColor

    value = item.get("RecommendedDisplayCIELabValue", None)
    if value is None:
        return TEXT_RGB
    r, g, b = CIELabColor.from_dicom_value([int(v) for v in value]).to_rgb(clip=True)
    return (int(r), int(g), int(b))


def masks_from_seg(seg: Dataset, source_nm: Dataset, numbered: Collection[str] = ()) -> list[Layer]:
    """One :class:`Layer` per segment of ``seg``: ``(frames, rows, cols)`` masks of ``source_nm``.

    Layers take the segment's label and recommended display colour; a segment whose
    label is in ``numbered`` is numbered. Frames are placed by their Referenced Frame
    Number, so the result does not depend on the SEG's frame order.
    """
    n_frames = int(source_nm.get("NumberOfFrames") or 1)
    rows, cols = int(source_nm.Rows), int(source_nm.Columns)
    if (int(seg.Rows), int(seg.Columns)) != (rows, cols):
        raise ValueError(f"SEG matrix {seg.Rows}x{seg.Columns} is not the image's {rows}x{cols}")
    items = sorted(seg.get("SegmentSequence", None) or [], key=lambda it: int(it.SegmentNumber))
    stacks = {int(it.SegmentNumber): np.zeros((n_frames, rows, cols), dtype=bool) for it in items}
    pixels = np.asarray(seg.pixel_array).reshape(-1, rows, cols).astype(bool)
    for index, group in enumerate(seg.PerFrameFunctionalGroupsSequence):
        number = int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        if number not in stacks:
            continue
        frame = 1
        for derivation in group.get("DerivationImageSequence", None) or []:
            for ref in derivation.get("SourceImageSequence", None) or []:
                if ref.get("ReferencedSOPInstanceUID") == source_nm.SOPInstanceUID:
                    frame = int(ref.get("ReferencedFrameNumber") or 1)
        if 1 <= frame <= n_frames:
            stacks[number][frame - 1] |= pixels[index]
    return [
        Layer(str(it.SegmentLabel), _segment_colour(it), stacks[int(it.SegmentNumber)],
              str(it.SegmentLabel) in numbered)
        for it in items
    ]


def preview_from_seg(source_nm: Dataset, seg: Dataset, *, title: str | None = None,
                     colormap: str = "grey", numbered: Collection[str] = (),
                     flags: Sequence[str] = ()) -> bytes:
    """The PNG preview of an NM image (with pixels) and the SEG ScintiSeg made of it.

    The model versions are read from the SEG's algorithm identification; ``numbered``
    names the segment labels whose components are numbered (the registry's labels).
    """
    return render_preview(
        nm_frames(source_nm), masks_from_seg(seg, source_nm, numbered), models=_seg_models(seg),
        title=title, colormap=colormap, flags=flags,
    )
