"""Orthanc Explorer's ScintiSeg box shows the physician agreement of a labelled study (headless Chromium)."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pydicom
import pytest
from support.e2e_harness import CHROMIUM, E2E, ProcessedStudy, Server
from support.label_objects import manual_seg
from support.orthanc_harness import wait_for

from scintiseg.pipeline.preview import masks_from_seg

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_explorer_study_page_shows_the_physician_agreement(
    server: Server, processed_study: ProcessedStudy, tmp_path: Path
) -> None:
    sid = processed_study.study_id
    series = json.loads(server.request("GET", f"/studies/{sid}/series"))
    nm_id = next(s["Instances"][0] for s in series if s["MainDicomTags"].get("Modality") == "NM")
    nm = pydicom.dcmread(io.BytesIO(server.request("GET", f"/instances/{nm_id}/file")))
    seg_id = processed_study.result["seg_instance_ids"][0]
    ai = pydicom.dcmread(io.BytesIO(server.request("GET", f"/instances/{seg_id}/file")))
    gland, nodules = (layer.mask for layer in masks_from_seg(ai, nm))  # the physician agrees with the AI
    label = manual_seg(nm, gland[0], nodules[0], tag="explorer")
    buf = io.BytesIO()
    label.save_as(buf, enforce_file_format=True)
    server.request("POST", "/instances", buf.getvalue())

    def accepted() -> bool:
        answer = json.loads(server.request("GET", f"/scintiseg/studies/{sid}/labels"))
        return any(r["status"] == "accepted" and r["images"][0]["agreement"] for r in answer["labels"])

    wait_for("the physician label to be read", accepted, 60)
    shot = tmp_path / "explorer-agreement.png"
    url = f"{server.url}/app/explorer.html#study?uuid={sid}"
    proc = subprocess.run(
        ["node", str(E2E / "explorer_panel.mjs"), "--url", url, "--out", str(shot), "--chromium", CHROMIUM,
         "--wait-for", "Physician agreement"],
        capture_output=True, text=True, timeout=120, cwd=E2E, check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no report from the browser script:\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(lines[-1])
    assert report["ok"], json.dumps(report, indent=2)
    (line,) = [text for text in report["state"]["lines"] if text.startswith("Physician agreement")]
    assert "SEG, DR LABEL" in line and "gland Dice 1.00" in line and "nodule Dice" in line, line
    assert "found by the AI" in line, line
