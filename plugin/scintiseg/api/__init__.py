"""The ``/scintiseg/`` REST API, as pure functions of a backend interface.

Holds the one route table and the dispatcher (:mod:`~scintiseg.api.routes`), the JSON
views of the study result and the queue (:mod:`~scintiseg.api.views`), the routes of
the labels, statistics and dataset export (:mod:`~scintiseg.api.data`) and the HTTP
primitives (:mod:`~scintiseg.api.http`). Documented in ``docs/openapi.yaml``.

May import: :mod:`scintiseg.intake` and the packages below it; never the adapter
(:mod:`scintiseg.orthanc`).
"""
