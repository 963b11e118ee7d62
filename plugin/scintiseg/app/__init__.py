"""The application: the plugin assembled from the configuration, and the command line.

Holds the configuration (:mod:`~scintiseg.app.config`), the assembly
(:mod:`~scintiseg.app.assembly`: every object built once, in order), the service's life
(:mod:`~scintiseg.app.service`, :mod:`~scintiseg.app.startup`, :mod:`~scintiseg.app.status`),
the worker steps (:mod:`~scintiseg.app.steps`), the REST backend
(:mod:`~scintiseg.app.backend`) and the ``scintiseg`` command (:mod:`~scintiseg.app.cli`,
:mod:`~scintiseg.app.export`).

May import: every package, the adapter (:mod:`scintiseg.orthanc`) included.
"""
