"""Several real Orthanc nodes with the plugin on one real PostgreSQL database.

:class:`OrthancCluster` starts nodes through the same ``scripts/run-orthanc.sh``
as ``make run``, each with its own ports and data folder, all with the same
``SCINTISEG_POSTGRESQL`` (the index) and ``SCINTISEG_STORAGE`` (one shared
folder for the DICOM files), exactly as a user builds a cluster. The lease is
short (``LEASE_S``) so that a takeover fits in a test. Used by the cluster
tests and by ``bench/bench_cluster.py``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scintiseg.app.config import strip_json_comments

from .orthanc_harness import ROOT, OrthancServer, wait_for

#: The cluster tests' lease (seconds): a dead node's study is taken over this long after.
LEASE_S = 4


def scintiseg_section(**overrides: Any) -> dict[str, Any]:
    """The repository's ``ScintiSeg`` section with some options changed."""
    config = json.loads(strip_json_comments((ROOT / "orthanc.json").read_text()))
    return {**config["ScintiSeg"], **overrides}


@dataclass
class OrthancCluster:
    """Nodes named ``node1``, ``node2``, … sharing ``uri`` and ``storage``."""

    uri: str
    folder: Path
    models: Path
    lease_s: float = LEASE_S
    stable_age: int = 1
    nodes: list[OrthancServer] = field(default_factory=list)
    #: extra environment of every node (e.g. taskset is done by the caller, not here)
    section: dict[str, Any] = field(default_factory=dict)

    @property
    def storage(self) -> Path:
        return self.folder / "storage"

    def add_node(self, start: bool = True) -> OrthancServer:
        name = f"node{len(self.nodes) + 1}"
        node = OrthancServer(
            data=self.folder / name,
            models=self.models,
            stable_age=self.stable_age,
            extra_config={
                "ScintiSeg": scintiseg_section(
                    ClusterLeaseSeconds=self.lease_s, ClusterNodeName=name, **self.section
                ),
            },
            extra_env={"SCINTISEG_POSTGRESQL": self.uri, "SCINTISEG_STORAGE": str(self.storage)},
        )
        self.nodes.append(node)
        if start:
            node.start()
        return node

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    # -- what the cluster did ---------------------------------------------------------------
    def queue(self, node: int = 0) -> dict[str, Any]:
        return dict(self.nodes[node].get("/scintiseg/queue"))

    def wait_results(
        self, node: OrthancServer, study_uids: Sequence[str], timeout: float,
        statuses: Sequence[str] = ("done",),
    ) -> dict[str, dict[str, Any]]:
        """Each study's final result as ``node`` reads it (the index is shared)."""
        results: dict[str, dict[str, Any]] = {}

        def probe() -> bool:
            for uid in study_uids:
                if uid in results:
                    continue
                sid = node.study_id(uid)
                res = node.result(sid) if sid else None
                if res and res["status"] in statuses:
                    results[uid] = res
            return len(results) == len(study_uids)

        wait_for(f"{len(study_uids)} final results", probe, timeout, every=0.25)
        return results

    def wait_drained(self, node: OrthancServer, timeout: float) -> dict[str, Any]:
        """Until nothing waits or runs in the whole cluster; returns the last queue."""
        last: dict[str, Any] = {}

        def probe() -> bool:
            nonlocal last
            last = node.get("/scintiseg/queue")
            return not last["pending"] and not last["running"]

        wait_for("the cluster's queue to drain", probe, timeout, every=0.25)
        return last

    def segs_per_source(self, node: OrthancServer, study_id: str) -> dict[str, int]:
        """Source SOP Instance UID -> how many SEG instances reference it in the study."""
        counts: dict[str, int] = {}
        for s in node.get(f"/studies/{study_id}/series"):
            if s["MainDicomTags"].get("Modality") != "SEG":
                continue
            for iid in s["Instances"]:
                ds = node.instance(iid)
                for ref in ds.ReferencedSeriesSequence:
                    for inst in ref.ReferencedInstanceSequence:
                        uid = str(inst.ReferencedSOPInstanceUID)
                        counts[uid] = counts.get(uid, 0) + 1
        return counts
