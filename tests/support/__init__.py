"""What the tests share: fakes, fixtures' builders and harnesses, imported as ``support.<module>``.

``tests/`` is on pytest's ``pythonpath`` (``pyproject.toml``); the test folders (``unit/``,
``integration/``, ``e2e/``) import nothing of one another, only from here. The benchmarks
(``bench/``) use the Orthanc harnesses too: run them with ``PYTHONPATH=tests``.

* :mod:`support.fake_gateway`: an in-memory Orthanc store, a stand-in pipeline and the
  service-level fakes (no Orthanc, no models)
* :mod:`support.nm_fixtures`: small standard-conformant NM sources, the ``dciodvfy`` run
* :mod:`support.fake_models`: tiny stand-in ONNX models with their cards
* :mod:`support.label_objects`: physician label objects (MANUAL SEG, label map SEG, RTSTRUCT)
* :mod:`support.dicom_tools`: the DICOM validator (dicom3tools' ``dciodvfy``)
* :mod:`support.openapi_check`: HTTP answers checked against ``docs/openapi.yaml``
* :mod:`support.identity_scan`: a source's identifying values, found anywhere
* :mod:`support.required_tools`: under ``make test``, a skip for a missing tool fails
* :mod:`support.orthanc_harness`: a real Orthanc with the plugin (``scripts/run-orthanc.sh``)
* :mod:`support.cluster_harness`: several Orthanc nodes on one PostgreSQL database
* :mod:`support.pg_harness`: a private PostgreSQL server
* :mod:`support.anonymization`, :mod:`support.physician_labels`: pseudonymization and physician
  labels on a live Orthanc
* :mod:`support.e2e_harness`: the browser tests' prerequisites and server
"""

from pathlib import Path

#: The repository's root folder.
ROOT = Path(__file__).resolve().parents[2]
