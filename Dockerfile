# ScintiSeg production image: the official Orthanc Team image + the ScintiSeg plugin.
#
# Base image: orthancteam/orthanc, pinned. Its tags are year.month.patch; the
# 2026 security fixes (CVE-2026-5437 to 5445) were published on 2026-04-09 with
# Orthanc 1.12.11, so a 26.1.x image still carries the vulnerable 1.12.10 and
# the first candidates are 26.4.x. 26.4.2 is the tag that projects tested
# against Orthanc 1.12.11 and Python plugin 7.0 build on (pyorthanc's test image
# since May 2026). No Docker engine runs where this project is developed, so
# the tag's Orthanc version is checked before a release with
#   docker run --rm orthancteam/orthanc:26.4.2 Orthanc --version     # must print >= 1.12.11
# and the release pins the digest (FROM orthancteam/orthanc:26.4.2@sha256:...).
# Bump the tag on purpose, never float it (`latest`). The image ships the
# Python plugin and the Python interpreter that plugin embeds.
FROM orthancteam/orthanc:26.4.2

# The plugin's packages go in a venv made from the image's own python3, the
# interpreter the Python plugin embeds (same minor version, same ABI).
USER root
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/scintiseg
# The scintiseg package is installed from its sources, as `pip install .` does,
# with the exact versions of constraints.txt (the file `make venv` installs
# with): the wheel carries the code, the Explorer script and the `scintiseg`
# command; the image keeps no source tree. Training and development extras are
# not installed.
COPY constraints.txt pyproject.toml /tmp/scintiseg-src/
COPY plugin/scintiseg/ /tmp/scintiseg-src/plugin/scintiseg/
COPY phantoms/ /tmp/scintiseg-src/phantoms/
COPY training/ /tmp/scintiseg-src/training/
RUN python3 -m venv /opt/scintiseg/.venv \
 && /opt/scintiseg/.venv/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/scintiseg/.venv/bin/pip install --no-cache-dir -c /tmp/scintiseg-src/constraints.txt /tmp/scintiseg-src \
 && rm -rf /tmp/scintiseg-src

# The entry script (a thin shim: it puts the venv on sys.path and registers the
# package's callbacks) and the models, named by SCINTISEG_MODELS below.
COPY plugin/scintiseg_plugin.py ./plugin/scintiseg_plugin.py
COPY models/ ./models/
# The configuration the image loads: the repository's orthanc.json, as the
# image's only configuration file. Deployment keys (storage, network, users,
# the plugin path) come from ORTHANC__* variables, below or at `docker run`.
COPY orthanc.json /etc/orthanc/orthanc.json

ENV SCINTISEG_VENV=/opt/scintiseg/.venv \
    SCINTISEG_MODELS=/opt/scintiseg/models \
    TCP_NODELAY=1 \
    PYTHON_PLUGIN_ENABLED=true \
    DICOM_WEB_PLUGIN_ENABLED=true \
    ORTHANC__PYTHON_SCRIPT=/opt/scintiseg/plugin/scintiseg_plugin.py \
    ORTHANC__STORAGE_DIRECTORY=/var/lib/orthanc/db \
    ORTHANC__REMOTE_ACCESS_ALLOWED=true \
    ORTHANC__AUTHENTICATION_ENABLED=true
# Set users at run time, e.g. -e ORTHANC__REGISTERED_USERS='{"admin": "a-long-secret"}',
# and the allowed modalities with ORTHANC__DICOM_MODALITIES / ORTHANC__DICOM_ALWAYS_ALLOW_STORE.

VOLUME /var/lib/orthanc/db
EXPOSE 4242 8042
