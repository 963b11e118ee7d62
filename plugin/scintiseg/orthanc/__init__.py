"""The Orthanc adapter: everything that talks to Orthanc, on the ``orthanc`` module it is given.

Holds the store port on Orthanc (:mod:`~scintiseg.orthanc.gateway`), Orthanc's REST API
over HTTP for the command line (:mod:`~scintiseg.orthanc.httpapi`), Python logging into
Orthanc's log (:mod:`~scintiseg.orthanc.log`), the OHIF site (:mod:`~scintiseg.orthanc.ohif`)
and the Orthanc Explorer script (:mod:`scintiseg.orthanc.explorer`). Nothing here imports
``orthanc``: the entry script does, and hands the module in.

May import: :mod:`scintiseg.core` only. Used only by :mod:`scintiseg.app`.
"""
