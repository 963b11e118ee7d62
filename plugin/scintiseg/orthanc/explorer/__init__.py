"""The Orthanc Explorer extension: a ScintiSeg box on each study page.

The script ships inside the package (package data, in the wheel too) and is
read with :mod:`importlib.resources`, so it is found wherever the package is
installed: a checkout's editable install, a wheel in a venv, a zip.
"""

from __future__ import annotations

from importlib import resources

#: The file, beside this module, that ``orthanc.ExtendOrthancExplorer`` receives.
SCRIPT = "scintiseg-explorer.js"


def script() -> str:
    """The JavaScript that Orthanc serves in ``/plugins/explorer.js``."""
    return resources.files(__name__).joinpath(SCRIPT).read_text(encoding="utf-8")
