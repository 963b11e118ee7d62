"""OHIF, served by Orthanc, shows ScintiSeg's SEG over the NM image (headless Chromium)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from support.e2e_harness import CHROMIUM, E2E, ROOT, ProcessedStudy, Server

from scintiseg.dicom.seg import GLAND_RGB, NODULE_RGB
from scintiseg.orthanc.ohif import viewer_url

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: ``SCINTISEG_SAVE_SCREENSHOT=docs/img/ohif.png`` keeps the screenshot (the README's picture).
SAVE_AS = os.environ.get("SCINTISEG_SAVE_SCREENSHOT")


def open_in_ohif(url: str, out: Path, timeout: int = 90) -> dict[str, Any]:
    """Run ``ohif_screenshot.mjs``; its JSON report."""
    proc = subprocess.run(
        ["node", str(E2E / "ohif_screenshot.mjs"), "--url", url, "--out", str(out),
         "--timeout", str(timeout), "--chromium", CHROMIUM],
        capture_output=True, text=True, timeout=timeout + 60, cwd=E2E, check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no report from the browser script:\n{proc.stdout}\n{proc.stderr}"
    report: dict[str, Any] = json.loads(lines[-1])
    return report


def near(rgb: np.ndarray, colour: list[float], tolerance: int = 40) -> np.ndarray:
    return np.all(np.abs(rgb.astype(int) - np.array(colour[:3], dtype=int)) <= tolerance, axis=-1)


def seg_in_ohif(server: Server, study_uid: str, shot: Path) -> tuple[dict[str, Any], np.ndarray, np.ndarray, dict]:
    """Open the study with its SEG; (the segmentation OHIF loaded, screenshot, image area, its box)."""
    report = open_in_ohif(server.url + viewer_url(study_uid, with_seg=True), shot)
    assert report["ok"], json.dumps(report, indent=2)
    # OHIF loaded our SEG: one segmentation with the gland and nodule segments
    (segmentation,) = report["state"]["segmentations"]
    labels = [s["label"] for s in segmentation["segments"]]
    assert labels == ["Thyroid gland", "Cold nodule"], labels
    rgb = np.asarray(Image.open(shot).convert("RGB"))
    box = report["state"]["viewport"]
    assert box and box["width"] > 200 and box["height"] > 200, box
    image = rgb[box["y"] : box["y"] + box["height"], box["x"] : box["x"] + box["width"]]
    return segmentation, rgb, image, box


def test_seg_overlay_in_ohif(server: Server, processed_study: ProcessedStudy, tmp_path: Path) -> None:
    shot = tmp_path / "ohif.png"
    segmentation, rgb, image, box = seg_in_ohif(server, processed_study.study_uid, shot)

    # OHIF drew it: the gland's colour is in the image area of the screenshot
    gland_colour = segmentation["segments"][0]["color"]
    assert gland_colour, segmentation
    drawn = near(image, gland_colour)
    assert drawn.sum() > 300, f"gland colour {gland_colour[:3]} on {drawn.sum()} pixels only"
    # outside the image area (OHIF's panels) the colour is not a coincidence of the theme
    frame = np.count_nonzero(near(rgb[:, : max(1, box["x"] - 5)], gland_colour))
    assert frame < drawn.sum() / 10

    nodules = sum(
        f["labels"]["nodule"]["count"]
        for image_result in processed_study.result["images"].values()
        for f in image_result.get("frames", [])
    )
    # OHIF took the colours from the SEG (Recommended Display CIELab Value), not its own palette
    assert near(np.array([gland_colour[:3]]), list(GLAND_RGB), tolerance=3).all(), gland_colour
    nodule_colour = segmentation["segments"][1]["color"]
    assert near(np.array([nodule_colour[:3]]), list(NODULE_RGB), tolerance=3).all(), nodule_colour
    if nodules:
        # nodules lie inside the gland, so their magenta blends with the gland's green fill:
        # look for magenta hues (red and blue well above green), which grey NM pixels and the
        # green gland never have
        r, g, b = (image[..., k].astype(int) for k in range(3))
        magenta = (r - g > 40) & (b - g > 40)
        assert magenta.sum() > 200, f"{magenta.sum()} magenta pixels for {nodules} nodule(s)"

    if SAVE_AS:
        shutil.copyfile(shot, ROOT / SAVE_AS)


def test_viewer_routes_reload(server: Server, processed_study: ProcessedStudy) -> None:
    """A bookmarked viewer URL (client-side route) is answered with OHIF's page."""
    assert server.status(viewer_url(processed_study.study_uid)) == 200
    assert server.status("/ohif/app-config.js") == 200
    assert server.status("/ohif/no-such-chunk.js") == 404


def test_multiframe_seg_overlay_in_ohif(server: Server, processed_multiframe: ProcessedStudy, tmp_path: Path) -> None:
    shot = tmp_path / "ohif-multiframe.png"
    _, _, image, _ = seg_in_ohif(server, processed_multiframe.study_uid, shot)
    assert near(image, list(GLAND_RGB)).sum() > 300
    if os.environ.get("SCINTISEG_SAVE_MULTIFRAME"):
        shutil.copyfile(shot, ROOT / os.environ["SCINTISEG_SAVE_MULTIFRAME"])


def test_explorer_study_page_shows_the_scintiseg_panel(
    server: Server, processed_study: ProcessedStudy, tmp_path: Path
) -> None:
    shot = tmp_path / "explorer.png"
    url = f"{server.url}/app/explorer.html#study?uuid={processed_study.study_id}"
    proc = subprocess.run(
        ["node", str(E2E / "explorer_panel.mjs"), "--url", url, "--out", str(shot), "--chromium", CHROMIUM],
        capture_output=True, text=True, timeout=120, cwd=E2E, check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no report from the browser script:\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(lines[-1])
    assert report["ok"], json.dumps(report, indent=2)
    text = "\n".join(report["state"]["lines"])
    assert "Status: done" in text and "gland" in text and "mm\u00b2" in text, text
    assert "Models: scintiseg-gland@" in text, text
    links = {link["text"]: link["href"] for link in report["state"]["links"]}
    assert links["Preview (PNG)"].endswith(f"/scintiseg/studies/{processed_study.study_id}/preview.png")
    # a processed study opens with its SEG over the image
    assert links["Open in OHIF viewer"].endswith(viewer_url(processed_study.study_uid, with_seg=True))
    # the links work
    assert server.status(links["Preview (PNG)"].replace(server.url, "")) == 200
    assert server.status(links["Open in OHIF viewer"].replace(server.url, "")) == 200
    if os.environ.get("SCINTISEG_SAVE_EXPLORER"):
        shutil.copyfile(shot, ROOT / os.environ["SCINTISEG_SAVE_EXPLORER"])
