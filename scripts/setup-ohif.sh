#!/usr/bin/env bash
# Install the OHIF viewer (pre-built, from the npm package @ohif/app) under build/ohif/site,
# configured to read this Orthanc's DICOMweb API at /dicom-web and to be served at /ohif/.
#
#   scripts/setup-ohif.sh            # idempotent: does nothing when the site is up to date
#   OHIF_PREFIX=/viewer/ scripts/setup-ohif.sh   # a site for another mount point, to serve with
#                                                # another web server (the plugin serves /ohif/ only)
#
# Why a patched copy and not the package's dist/ as is: the published dist/ is built for the
# web root (PUBLIC_URL "/", webpack publicPath "/", absolute "/..." links in index.html and the
# CSS). Orthanc owns "/", so the site is copied (hard links) and exactly these references are
# rewritten to the mount point; a check fails loudly if the package no longer contains them
# (i.e. if someone bumps the version without checking). The service worker is disabled: it
# would cache a viewer that this script may later replace, and its precache list is absolute.
#
# The package is fetched with `npm pack` (the tarball only: the dist/ needs none of the
# package's ~40 dependencies) and checked against the pinned sha512 integrity.
set -euo pipefail

OHIF_VERSION="3.13.2"
OHIF_INTEGRITY="sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
PREFIX="${OHIF_PREFIX:-/ohif/}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${OHIF_DIR:-$ROOT/build/ohif}"
SITE="$DEST/site"
STAMP="$SITE/.scintiseg-ohif"
WANT="ohif=$OHIF_VERSION prefix=$PREFIX config=$(sha256sum "$ROOT/scripts/setup-ohif.sh" | cut -c1-16)"

case "$PREFIX" in /*/) ;; *) echo "OHIF_PREFIX must start and end with '/': $PREFIX" >&2; exit 2 ;; esac

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  echo "OHIF $OHIF_VERSION already set up in $SITE"
  exit 0
fi
command -v npm >/dev/null || { echo "npm not found: install Node.js (Debian: apt-get install nodejs npm)" >&2; exit 1; }

mkdir -p "$DEST"
TGZ="$DEST/ohif-app-$OHIF_VERSION.tgz"
if [[ ! -f "$TGZ" ]]; then
  echo "Fetching @ohif/app@$OHIF_VERSION (about 50 MB)"
  (cd "$DEST" && npm pack --silent "@ohif/app@$OHIF_VERSION" >/dev/null)
fi
actual="sha512-$(openssl dgst -sha512 -binary "$TGZ" | base64 -w0)"
if [[ "$actual" != "$OHIF_INTEGRITY" ]]; then
  echo "integrity mismatch for $TGZ: $actual" >&2
  rm -f "$TGZ"
  exit 1
fi

rm -rf "$DEST/package" "$SITE.tmp"
tar -xzf "$TGZ" -C "$DEST"
cp -al "$DEST/package/dist" "$SITE.tmp"

# Rewrite a file without touching its hard-linked original.
patch_file() { # file python-expression-on-s  (s: file text; must change it)
  python3 - "$1" "$2" <<'EOF'
import sys
path, expr = sys.argv[1], sys.argv[2]
with open(path, encoding="utf-8") as f:
    s = f.read()
new = eval(expr, {"s": s, "P": __import__("os").environ["PREFIX"]})
if new == s:
    sys.exit(f"setup-ohif: nothing to rewrite in {path} (has the OHIF package changed?)")
import os
os.unlink(path)
with open(path, "w", encoding="utf-8") as f:
    f.write(new)
EOF
}
export PREFIX
cd "$SITE.tmp"
# (the manifest is fetched with credentials, so that it loads behind Orthanc's HTTP auth too)
patch_file index.html 's.replace("window.PUBLIC_URL=\"/\"", "window.PUBLIC_URL=\""+P+"\"").replace("href=\"/", "href=\""+P).replace("src=\"/", "src=\""+P).replace("<link rel=\"manifest\"", "<link rel=\"manifest\" crossorigin=\"use-credentials\"")'
for f in $(grep -l '__webpack_require__.p = "/";' -- *.js); do
  patch_file "$f" 's.replace("__webpack_require__.p = \"/\";", "__webpack_require__.p = \""+P+"\";")'
done
for f in $(grep -l 'url(/' -- *.css); do
  patch_file "$f" 's.replace("url(/", "url("+P)'
done
patch_file manifest.json 's.replace("\"/assets/", "\""+P+"assets/")'
rm -f init-service-worker.js sw.js _redirects _headers serve.json
echo "/* ScintiSeg: the OHIF service worker is disabled (see scripts/setup-ohif.sh). */" > init-service-worker.js

# The viewer configuration: Orthanc's DICOMweb plugin (orthanc-dicomweb 1.7) on the same
# origin. Options chosen for that server:
#  - qidoSupportsIncludeField: false, supportsFuzzyMatching: false: plugin 1.7 answers
#    includefield=all with the index tags only, and has no fuzzy matching.
#  - imageRendering/thumbnailRendering 'wadors': pixels via .../frames/N (the plugin has
#    no /thumbnail); NM frames are fetched per frame.
#  - bulkDataURI.enabled: metadata carries BulkDataURI for large values; relativeResolution
#    'studies' resolves them against wadoRoot.
#  - omitQuotationForMultipartRequest: the plugin rejects a quoted "type" parameter.
#  - enableStudyLazyLoad: series metadata on demand.
#  - staticWado: false: Orthanc is a dynamic server (it honours query parameters).
rm -f app-config.js
cat > app-config.js <<EOF
/* Written by scripts/setup-ohif.sh (ScintiSeg) for OHIF $OHIF_VERSION. */
window.config = {
  name: 'scintiseg',
  routerBasename: '${PREFIX%/}',
  extensions: [],
  modes: [],
  // no onboarding tour over the images (it also dims the viewport in screenshots)
  customizationService: [{ 'ohif.tours': { \$set: [] } }],
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: true,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  investigationalUseDialog: { option: 'never' },
  disableConfirmationPrompts: true,
  maxNumRequests: { interaction: 100, thumbnail: 10, prefetch: 10 },
  showErrorDetails: 'always',
  defaultDataSourceName: 'orthanc',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'orthanc',
      configuration: {
        friendlyName: 'ScintiSeg Orthanc',
        name: 'orthanc',
        wadoUriRoot: '/wado',
        qidoRoot: '/dicom-web',
        wadoRoot: '/dicom-web',
        qidoSupportsIncludeField: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        staticWado: false,
        singlepart: 'bulkdata,video,pdf',
        bulkDataURI: { enabled: true, relativeResolution: 'studies' },
        omitQuotationForMultipartRequest: true,
      },
    },
  ],
};
EOF
cd "$ROOT"
rm -rf "$SITE"
mv "$SITE.tmp" "$SITE"
rm -rf "$DEST/package"
echo "$WANT" > "$STAMP"
echo "OHIF $OHIF_VERSION set up in $SITE (serve it at $PREFIX)"
