#!/usr/bin/env bash
# Start Orthanc in the foreground with the ScintiSeg plugin (README command 1: `make run`).
#
# Listens on loopback only: Debian's Orthanc 1.10.1 predates the 2026 security
# fixes, so it must not face a network (use the Docker image for that). Orthanc
# 1.10 cannot bind to an address, so the runtime configuration refuses every
# non-local peer instead: HTTP with RemoteAccessAllowed=false, DICOM by
# accepting only the AETs of SCINTISEG_SCU_AETS connecting from 127.0.0.1.
#
# Environment (all optional):
#   SCINTISEG_HTTP_PORT    HTTP port (REST API, Orthanc Explorer)     default 8042
#   SCINTISEG_DICOM_PORT   DICOM port (C-STORE, C-ECHO)               default 4242
#   SCINTISEG_DATA         database + storage + generated config      default ./data
#   SCINTISEG_CONFIG       the Orthanc configuration to load          default ./orthanc.json
#   SCINTISEG_SCU_AETS     calling AETs allowed to send from 127.0.0.1 default "STORESCU ECHOSCU"
#   SCINTISEG_MODELS       models folder, overrides ScintiSeg.ModelsDirectory  default ./models
#   SCINTISEG_VENV         virtual environment of the plugin          default ./.venv
#   SCINTISEG_POSTGRESQL   libpq URI (postgresql://user:pw@host:port/db): the index in
#                          PostgreSQL instead of SQLite (orthanc-postgresql); several
#                          nodes with the same URI form a cluster (docs/cluster.md)
#   SCINTISEG_STORAGE      with SCINTISEG_POSTGRESQL: the DICOM files in this (shared)
#                          folder; unset: the files in PostgreSQL too
#   ORTHANC_POSTGRESQL_PLUGINS  folder of the orthanc-postgresql plugins
#   ORTHANC_BIN, ORTHANC_PYTHON_PLUGIN, ORTHANC_DICOMWEB_PLUGIN   where Debian's packages
#                          put them, detected by scripts/orthanc-env.sh on Debian 12 and 13
#                          (ORTHANC_DICOMWEB_PLUGIN="" leaves DICOMweb out)
# Extra arguments are passed to Orthanc (e.g. --verbose).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HTTP_PORT="${SCINTISEG_HTTP_PORT:-8042}"
DICOM_PORT="${SCINTISEG_DICOM_PORT:-4242}"
DATA="${SCINTISEG_DATA:-$ROOT/data}"
CONFIG="${SCINTISEG_CONFIG:-$ROOT/orthanc.json}"
SCU_AETS="${SCINTISEG_SCU_AETS:-STORESCU ECHOSCU}"
# Orthanc and its plugins where this Debian release (12 or 13) or the environment puts them
while IFS='=' read -r key value; do printf -v "$key" '%s' "$value"; done < <("$ROOT/scripts/orthanc-env.sh")
PYTHON_PLUGIN="$ORTHANC_PYTHON_PLUGIN"
# DICOMweb (for web viewers) is loaded when installed; set it empty to leave it out.
DICOMWEB_PLUGIN="$ORTHANC_DICOMWEB_PLUGIN"
export SCINTISEG_VENV="${SCINTISEG_VENV:-$ROOT/.venv}"
# The plugin has no default models folder: the checkout's, unless the caller names another.
export SCINTISEG_MODELS="${SCINTISEG_MODELS:-$ROOT/models}"

die() { echo "run-orthanc: $*" >&2; exit 1; }
port_ok() { [[ "$1" =~ ^[0-9]+$ ]] && (( $1 >= 1 && $1 <= 65535 )); }

port_ok "$HTTP_PORT" || die "SCINTISEG_HTTP_PORT must be a TCP port, got '$HTTP_PORT'"
port_ok "$DICOM_PORT" || die "SCINTISEG_DICOM_PORT must be a TCP port, got '$DICOM_PORT'"
[[ -x "$ORTHANC_BIN" ]] || die "Orthanc not found (apt-get install orthanc, or run 'make setup')"
[[ -n "$PYTHON_PLUGIN" && -f "$PYTHON_PLUGIN" ]] || die "the Orthanc Python plugin ${PYTHON_PLUGIN:-libOrthancPython.so} is missing (apt-get install orthanc-python)"
[[ -f "$CONFIG" ]] || die "configuration $CONFIG not found"
[[ -d "$SCINTISEG_VENV" ]] || die "no virtual environment at $SCINTISEG_VENV (run 'make setup')"
# The plugin embeds one interpreter (3.11 on Debian 12, 3.13 on Debian 13): a venv of another
# minor version has packages it cannot import (e.g. a work tree moved to another release).
venv_version="$(sed -n 's/^version[_info]* *= *\([0-9]*\.[0-9]*\).*/\1/p' "$SCINTISEG_VENV/pyvenv.cfg" 2>/dev/null | head -n1)"
if [[ -n "$venv_version" && "python$venv_version" != "$(basename "$ORTHANC_PLUGIN_PYTHON")" ]]; then
  die "the virtual environment $SCINTISEG_VENV is Python $venv_version but the Orthanc Python plugin embeds $ORTHANC_PLUGIN_PYTHON (run 'make setup' to remake it)"
fi

mkdir -p "$DATA/db" "$DATA/config"
DATA="$(cd "$DATA" && pwd)"
CONFIG="$(cd "$(dirname "$CONFIG")" && pwd)/$(basename "$CONFIG")"
CONFIG_DIR="$DATA/config"

# Orthanc reads every *.json of CONFIG_DIR (a key may appear in one file only):
# the shared configuration, linked so that edits apply at the next start, and
# the deployment-specific keys generated here. Other *.json files put there
# (e.g. RegisteredUsers) are loaded too and left alone.
rm -f "$CONFIG_DIR/orthanc.json" "$CONFIG_DIR/runtime.json"
ln -s "$CONFIG" "$CONFIG_DIR/orthanc.json"

plugins="\"$PYTHON_PLUGIN\""
storage_dir="$DATA/db"
postgresql_json=""
if [[ -n "${SCINTISEG_POSTGRESQL:-}" ]]; then
  pg_index="$(dpkg-query -L orthanc-postgresql 2>/dev/null | grep -m1 '/libOrthancPostgreSQLIndex\.so$' || true)"
  PG_PLUGINS="${ORTHANC_POSTGRESQL_PLUGINS:-$(dirname "${pg_index:-/usr/share/orthanc/plugins/x}")}"
  [[ -f "$PG_PLUGINS/libOrthancPostgreSQLIndex.so" ]] \
    || die "SCINTISEG_POSTGRESQL is set but orthanc-postgresql is missing (apt-get install orthanc-postgresql, or 'make setup')"
  [[ "$SCINTISEG_POSTGRESQL" =~ ^postgres(ql)?:// && "$SCINTISEG_POSTGRESQL" != *'"'* && "$SCINTISEG_POSTGRESQL" != *\\* ]] \
    || die "SCINTISEG_POSTGRESQL must be a libpq URI (postgresql://user:password@host:port/database)"
  plugins+=", \"$PG_PLUGINS/libOrthancPostgreSQLIndex.so\""
  enable_storage=true
  if [[ -n "${SCINTISEG_STORAGE:-}" ]]; then
    mkdir -p "$SCINTISEG_STORAGE"
    storage_dir="$(cd "$SCINTISEG_STORAGE" && pwd)"
    enable_storage=false
  else
    plugins+=", \"$PG_PLUGINS/libOrthancPostgreSQLStorage.so\""
  fi
  # Lock false: several Orthanc nodes write to the same database (Orthanc >= 1.9.2);
  # SaveJobs false: the nodes would overwrite each other's saved jobs in the index.
  postgresql_json="
  \"PostgreSQL\" : {
    \"EnableIndex\" : true,
    \"EnableStorage\" : $enable_storage,
    \"ConnectionUri\" : \"$SCINTISEG_POSTGRESQL\",
    \"Lock\" : false,
    \"IndexConnectionsCount\" : 2
  },
  \"SaveJobs\" : false,"
fi
dicomweb_line=""
if [[ -n "$DICOMWEB_PLUGIN" && -f "$DICOMWEB_PLUGIN" ]]; then
  plugins+=", \"$DICOMWEB_PLUGIN\""
  dicomweb_line="  DICOMweb         : http://127.0.0.1:$HTTP_PORT/dicom-web/"
fi

modalities=""
i=0
for aet in $SCU_AETS; do
  [[ "$aet" =~ ^[A-Za-z0-9_.-]{1,16}$ ]] || die "bad AET '$aet' in SCINTISEG_SCU_AETS"
  modalities+="${modalities:+,}
    \"loopback-$i\" : [ \"$aet\", \"127.0.0.1\", 104 ]"
  i=$((i + 1))
done

cat > "$CONFIG_DIR/runtime.json" <<EOF
{
  // Generated by scripts/run-orthanc.sh at $(date -u +%Y-%m-%dT%H:%M:%SZ); rewritten at each start.
  "HttpPort" : $HTTP_PORT,
  "DicomPort" : $DICOM_PORT,$postgresql_json
  "StorageDirectory" : "$storage_dir",
  "IndexDirectory" : "$DATA/db",
  "Plugins" : [ $plugins ],
  "PythonScript" : "$ROOT/plugin/scintiseg_plugin.py",
  "PythonVerbose" : false,
  "RemoteAccessAllowed" : false,
  "DicomAlwaysAllowEcho" : false,
  "DicomAlwaysAllowStore" : false,
  "DicomCheckModalityHost" : true,
  "DicomModalities" : {$modalities
  }
}
EOF

AET="$(grep -o '"DicomAet"[[:space:]]*:[[:space:]]*"[^"]*"' "$CONFIG" | head -n1 | sed 's/.*"\([^"]*\)"$/\1/' || true)"
AET="${AET:-ORTHANC}"
first_scu="${SCU_AETS%% *}"

cat <<EOF
ScintiSeg on Orthanc $("$ORTHANC_BIN" --version 2>/dev/null | head -n1 | awk '{print $2}') (loopback only)
  Orthanc Explorer : http://127.0.0.1:$HTTP_PORT/app/explorer.html
  Plugin status    : http://127.0.0.1:$HTTP_PORT/scintiseg/status
  Send studies to  : AET $AET, host 127.0.0.1, port $DICOM_PORT
                     (calling AET one of: $SCU_AETS), e.g.
    storescu -aet $first_scu -aec $AET 127.0.0.1 $DICOM_PORT study/*.dcm
    curl -X POST http://127.0.0.1:$HTTP_PORT/instances --data-binary @image.dcm
  Results          : a SEG series in the same study, and the JSON of
                     GET http://127.0.0.1:$HTTP_PORT/studies/{id}/metadata/ScintiSegResult
  Data             : $DATA (configuration in $CONFIG_DIR)
EOF
if [[ -n "$postgresql_json" ]]; then
  echo "  Index            : PostgreSQL (SCINTISEG_POSTGRESQL), files in" \
    "$([[ $enable_storage == true ]] && echo PostgreSQL || echo "$storage_dir")"
fi
[[ -z "$dicomweb_line" ]] || echo "$dicomweb_line"
if ! ls "$SCINTISEG_MODELS"/*/card.json >/dev/null 2>&1; then
  echo "  WARNING: no trained models in $SCINTISEG_MODELS yet: the plugin stays off until they are there." >&2
fi
echo "Press Ctrl+C to stop."

export TCP_NODELAY=1
exec "$ORTHANC_BIN" "$@" "$CONFIG_DIR"
