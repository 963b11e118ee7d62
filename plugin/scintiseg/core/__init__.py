"""The core: what every other package speaks in, and nothing else.

Holds the typed study result and its statuses (:mod:`~scintiseg.core.result`), the
store port that the Orthanc adapter implements (:mod:`~scintiseg.core.store`:
``Gateway``, its records and errors), deterministic UIDs (:mod:`~scintiseg.core.uids`)
and the clock's ISO time (:mod:`~scintiseg.core.clock`).

May import: the standard library only (no other ScintiSeg package, no numpy, no pydicom).
"""
