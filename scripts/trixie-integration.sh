#!/usr/bin/env bash
# The integration tests against Debian 13's Orthanc (1.12.7, Python plugin 5.0 on Python 3.13),
# in a Debian 13 (trixie) chroot built here, so that `make test` checks the plugin on a 1.12
# Orthanc and a second Python plugin API, not on the host's alone (1.10.1 on Debian 12).
#
#   1. $DIR/root: debootstrap --variant=minbase of trixie with orthanc, orthanc-python,
#      orthanc-dicomweb, dcmtk and python3-venv; kept while the package list is the same
#      and it is less than a week old, else made again
#   2. /opt/scintiseg-venv in it, made from the chroot's own python3 (the interpreter its
#      Python plugin embeds): pyproject.toml's dependencies, its dev extra and its training
#      extra less torch (no test here needs torch), the versions of constraints.txt, and the
#      runtime wheels test_wheel.py installs from; kept while those two files and this script are the same
#   3. the repository bind-mounted read-only at /src, in mount and PID namespaces of the run's
#      own (nothing stays mounted, no Orthanc outlives it), and `pytest tests/integration` run
#      there with the chroot's Orthanc, plugins and storescu, less the tests marked `training`
#      (they train a network with PyTorch, which this venv leaves out; they run on the host's
#      venv in the rest of `make test`)
# It fails, never skips: when it cannot build or enter the chroot, when a test is skipped or
# none ran, or when Orthanc reports another version than 1.12.x with the Python plugin 5.x.
# Needs root (it asks sudo otherwise), unshare (util-linux), debootstrap (installed if missing),
# and the network to a Debian mirror and to PyPI.
#
# Environment (all optional):
#   SCINTISEG_TRIXIE_DIR     where the chroot and its stamps live     default build/trixie
#   SCINTISEG_DEBIAN_MIRROR  the Debian mirror debootstrap reads      default http://deb.debian.org/debian
# Extra arguments are passed to pytest (e.g. -k versions).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SUITE=trixie
PACKAGES=orthanc,orthanc-python,orthanc-dicomweb,dcmtk,python3-venv,ca-certificates
# the cluster tests (tests/integration/test_cluster.py): the PostgreSQL index plugin and a server
PACKAGES+=,orthanc-postgresql,postgresql
EXPECT_ORTHANC=1.12.
EXPECT_PYTHON_PLUGIN=5.
DIR="${SCINTISEG_TRIXIE_DIR:-$ROOT/build/trixie}"
MIRROR="${SCINTISEG_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
VENV=/opt/scintiseg-venv
CHROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# pyproject.toml's requirements, on one line: "runtime" (the dependencies) or extras; torch left
# out (training only, no test here needs it, and its wheels are gigabytes)
PYPROJECT_DEPS='import sys, tomllib
project = tomllib.load(open("/src/pyproject.toml", "rb"))["project"]
reqs = [r for part in sys.argv[1:] for r in (project["dependencies"] if part == "runtime" else project["optional-dependencies"][part])]
print(" ".join(r.replace(" ", "") for r in reqs if not r.startswith("torch")))'

die() { echo "trixie-integration: $*" >&2; exit 1; }
say() { echo "trixie-integration: $*"; }
now() { date +%s; }

if [[ "$(id -u)" != 0 ]]; then
  command -v sudo >/dev/null || die "needs root (debootstrap, chroot, mounts) and there is no sudo"
  exec sudo --preserve-env=SCINTISEG_TRIXIE_DIR,SCINTISEG_DEBIAN_MIRROR,PIP_CERT,SSL_CERT_FILE,http_proxy,https_proxy,no_proxy "$0" "$@"
fi
command -v unshare >/dev/null || die "unshare (util-linux) is missing"
if ! command -v debootstrap >/dev/null; then
  say "installing debootstrap"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
command -v debootstrap >/dev/null || die "debootstrap could not be installed"

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
ROOTFS="$DIR/root"

# Refuse to delete a tree that something still mounts into (a bind of the repository!).
not_mounted() {
  if findmnt -rn -o TARGET | grep -q -F "$1/"; then
    die "$1 has mounts inside; unmount them first (findmnt | grep $1)"
  fi
}

# -- 1. the chroot --------------------------------------------------------------------------
t0=$(now)
root_key="$SUITE $PACKAGES"
if [[ -f "$DIR/root.stamp" && "$(cat "$DIR/root.stamp")" == "$root_key" && -x "$ROOTFS/usr/sbin/Orthanc" ]] \
   && [[ -z "$(find "$DIR/root.stamp" -mtime +6)" ]]; then
  say "reusing the $SUITE chroot $ROOTFS"
  root_how=cached
else
  say "building a $SUITE chroot in $ROOTFS (debootstrap from $MIRROR)"
  not_mounted "$ROOTFS"; not_mounted "$ROOTFS.new"
  rm -rf "$ROOTFS" "$ROOTFS.new" "$DIR/root.stamp" "$DIR/venv.stamp"
  if ! nice -n 10 debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS.new" "$MIRROR" \
       >"$DIR/debootstrap.log" 2>&1; then
    tail -n 30 "$DIR/debootstrap.log" >&2
    die "debootstrap of $SUITE failed (log: $DIR/debootstrap.log)"
  fi
  mv "$ROOTFS.new" "$ROOTFS"
  echo "$root_key" >"$DIR/root.stamp"
  root_how=fresh
fi
t_root=$(( $(now) - t0 ))

# What the chroot needs of the host to reach PyPI: the resolver and the CA bundle the host
# trusts (a TLS-inspecting proxy's root included); proxies pass through the environment.
cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
host_ca="${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
[[ -f "$host_ca" ]] && cp -L "$host_ca" "$ROOTFS/etc/ssl/scintiseg-host-ca.crt"
chroot_env=(HOME=/root "PATH=$CHROOT_PATH" LANG=C.UTF-8 PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1)
[[ -f "$ROOTFS/etc/ssl/scintiseg-host-ca.crt" ]] && chroot_env+=(PIP_CERT=/etc/ssl/scintiseg-host-ca.crt)
for var in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY PIP_DEFAULT_TIMEOUT; do
  [[ -n "${!var:-}" ]] && chroot_env+=("$var=${!var}")
done

# Run a command in the chroot: own mount and PID namespaces, /proc, /dev, /sys, a fresh /tmp,
# and the repository at /src, read-only. Everything is gone when the command ends.
in_chroot() {
  unshare --mount --pid --fork --kill-child -- bash -euo pipefail -c '
    rootfs="$1"; repo="$2"; shift 2
    mount --make-rprivate /
    mount -t proc proc "$rootfs/proc"
    mount --rbind /dev "$rootfs/dev"
    mount --rbind /sys "$rootfs/sys"
    mount -t tmpfs -o size=4g,mode=1777 tmpfs "$rootfs/tmp"
    mkdir -p "$rootfs/src"
    mount --bind "$repo" "$rootfs/src"
    mount -o remount,bind,ro "$rootfs/src"
    exec chroot "$rootfs" /usr/bin/env -i "$@"
  ' in-chroot "$ROOTFS" "$ROOT" "${chroot_env[@]}" "$@"
}

# -- 2. the venv ----------------------------------------------------------------------------
t0=$(now)
venv_key="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
if [[ -f "$DIR/venv.stamp" && "$(cat "$DIR/venv.stamp")" == "$venv_key" && -x "$ROOTFS$VENV/bin/python" ]]; then
  say "reusing $VENV"
  venv_how=cached
else
  say "making $VENV from the chroot's python3: pyproject's dependencies and dev extra, its training extra less torch, versions of constraints.txt"
  rm -rf "${ROOTFS:?}$VENV" "$DIR/venv.stamp"
  in_chroot nice -n 10 bash -euo pipefail -c "
    python3 -m venv $VENV
    read -r runtime < <(python3 -c '$PYPROJECT_DEPS' runtime)
    read -r others < <(python3 -c '$PYPROJECT_DEPS' dev training)
    $VENV/bin/python -m pip install -q -c /src/constraints.txt \$runtime \$others
    # the runtime wheels, from which tests/integration/test_wheel.py installs the wheel offline
    $VENV/bin/python -m pip download -q -d $VENV/wheelhouse -c /src/constraints.txt \$runtime
    # the project's packages from the mounted tree (an editable install would write into it)
    site=\$($VENV/bin/python -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])')
    printf '%s\n' /src/plugin /src/phantoms /src/training >\"\$site/scintiseg-src.pth\"
    # and the scintiseg command that pip would write for [project.scripts] of pyproject.toml
    printf '%s\n' '#!$VENV/bin/python' 'import sys' 'from scintiseg.app.cli import main' 'sys.exit(main())' >$VENV/bin/scintiseg
    chmod 755 $VENV/bin/scintiseg
  " || die "could not make $VENV in the chroot (PyPI unreachable, or a pinned version without a wheel for its Python?)"
  echo "$venv_key" >"$DIR/venv.stamp"
  venv_how=fresh
fi
t_venv=$(( $(now) - t0 ))

# -- 3. the tests ---------------------------------------------------------------------------
t0=$(now)
say "Debian $(cat "$ROOTFS/etc/debian_version"): $(chroot "$ROOTFS" dpkg-query -W -f='${Package} ${Version}, ' \
  orthanc orthanc-python orthanc-dicomweb dcmtk python3 | sed 's/, $//')"
junit=/var/tmp/scintiseg-trixie-junit.xml
basetemp=/var/tmp/scintiseg-trixie-pytest  # kept after the run: the Orthanc logs are there
rm -f "$ROOTFS$junit"
status=0
in_chroot SCINTISEG_VENV="$VENV" SCINTISEG_EXPECT_ORTHANC="$EXPECT_ORTHANC" \
  SCINTISEG_EXPECT_PYTHON_PLUGIN="$EXPECT_PYTHON_PLUGIN" \
  bash -c 'cd /src && exec nice -n 10 '"$VENV"'/bin/python -m pytest -p no:cacheprovider -q -rs \
    --junitxml='"$junit"' --basetemp='"$basetemp"' -m "not training" tests/integration "$@"' pytest "$@" || status=$?
t_tests=$(( $(now) - t0 ))
say "times: chroot ${t_root} s ($root_how), venv ${t_venv} s ($venv_how), tests ${t_tests} s"
(( status == 0 )) || die "the integration tests failed on Debian 13's Orthanc (pytest exit $status; Orthanc logs under $ROOTFS$basetemp)"

# pytest exits 0 when tests are skipped: here a skip is a failure, and so is no test at all
[[ -f "$ROOTFS$junit" ]] || die "pytest wrote no report"
tests="$(grep -o '<testsuite [^>]*' "$ROOTFS$junit" | grep -o ' tests="[0-9]*"' | grep -o '[0-9]*' | head -n1)"
skipped="$(grep -o '<testsuite [^>]*' "$ROOTFS$junit" | grep -o ' skipped="[0-9]*"' | grep -o '[0-9]*' | head -n1)"
[[ "${tests:-0}" -gt 0 ]] || die "no integration test ran"
[[ "${skipped:-0}" -eq 0 ]] || die "$skipped integration test(s) skipped on Debian 13: each must run"
say "ok: $tests integration tests passed on Debian 13's Orthanc"
