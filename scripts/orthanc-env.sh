#!/usr/bin/env bash
# Where this machine's Orthanc lives, detected rather than assumed (Debian 12 ships
# Orthanc 1.10.1 with the Python plugin 4.0 on Python 3.11, Debian 13 Orthanc 1.12.7
# with the Python plugin 5.0 on Python 3.13; other builds put the plugins elsewhere).
#
#   scripts/orthanc-env.sh            prints every KEY=VALUE below, one a line
#   scripts/orthanc-env.sh KEY        prints the value of KEY only
#
#   ORTHANC_BIN              the Orthanc executable
#   ORTHANC_PYTHON_PLUGIN    libOrthancPython.so (the package's file list, else known folders)
#   ORTHANC_DICOMWEB_PLUGIN  libOrthancDicomWeb.so, empty when not installed
#   ORTHANC_PLUGIN_PYTHON    the interpreter the Python plugin embeds (/usr/bin/python3.X, read
#                            from the libpython it links), else the one /usr/bin/python3 is:
#                            the plugin's virtual environment must be made from it
#   DEBIAN_RELEASE           the Debian major release (12, 13, ...), empty elsewhere
# A variable already set in the environment wins (ORTHANC_DICOMWEB_PLUGIN="" leaves DICOMweb out).
set -euo pipefail

PLUGIN_DIRS=(/usr/share/orthanc/plugins /usr/lib/orthanc /usr/local/share/orthanc/plugins /usr/lib/x86_64-linux-gnu/orthanc)

# $1: package, $2: library name (libOrthancPython): its file in the package, else in a known folder
find_plugin() {
  local found dir
  found="$(dpkg-query -L "$1" 2>/dev/null | grep -m1 "/$2\.so$" || true)"
  if [[ -z "$found" ]]; then
    for dir in "${PLUGIN_DIRS[@]}"; do
      [[ -e "$dir/$2.so" ]] && { found="$dir/$2.so"; break; }
    done
  fi
  echo "$found"
}

# the interpreter whose libpython3.X the Python plugin links
plugin_python() {
  local lib
  lib="$( { ldd "$1" 2>/dev/null || true; } | grep -o 'libpython3\.[0-9]*' | head -n1)"
  if [[ -n "$lib" && -x "/usr/bin/${lib#lib}" ]]; then
    echo "/usr/bin/${lib#lib}"
  else  # no plugin (yet): Debian builds it on the release's default python3
    readlink -f /usr/bin/python3 || echo /usr/bin/python3
  fi
}

ORTHANC_BIN="${ORTHANC_BIN:-$(command -v Orthanc || echo /usr/sbin/Orthanc)}"
ORTHANC_PYTHON_PLUGIN="${ORTHANC_PYTHON_PLUGIN:-$(find_plugin orthanc-python libOrthancPython)}"
ORTHANC_DICOMWEB_PLUGIN="${ORTHANC_DICOMWEB_PLUGIN-$(find_plugin orthanc-dicomweb libOrthancDicomWeb)}"
ORTHANC_PLUGIN_PYTHON="${ORTHANC_PLUGIN_PYTHON:-$(plugin_python "${ORTHANC_PYTHON_PLUGIN:-/nonexistent}")}"
DEBIAN_RELEASE="$(cut -d. -f1 /etc/debian_version 2>/dev/null | grep -E '^[0-9]+$' || true)"

KEYS=(ORTHANC_BIN ORTHANC_PYTHON_PLUGIN ORTHANC_DICOMWEB_PLUGIN ORTHANC_PLUGIN_PYTHON DEBIAN_RELEASE)
if [[ $# -eq 0 ]]; then
  for key in "${KEYS[@]}"; do echo "$key=${!key}"; done
elif [[ " ${KEYS[*]} " == *" $1 "* ]]; then
  echo "${!1}"
else
  echo "orthanc-env: unknown key '$1' (one of: ${KEYS[*]})" >&2
  exit 2
fi
