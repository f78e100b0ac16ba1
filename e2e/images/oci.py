"""Pack a root filesystem directory into an OCI image archive, without Docker or a registry.

The archive (an OCI image layout in a tar: ``oci-layout``, ``index.json``,
``blobs/sha256/...``) holds one uncompressed layer and is what
``ctr -n k8s.io images import`` takes; the image is named by the
``io.containerd.image.name`` annotation of its index entry.

    python e2e/images/oci.py --rootfs DIR --name certmint.local/pause:3.10 --entrypoint /pause --out pause.tar
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

LAYER = "application/vnd.oci.image.layer.v1.tar"
CONFIG = "application/vnd.oci.image.config.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EPOCH = "1970-01-01T00:00:00Z"


def _digest_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def pack(rootfs: Path, name: str, out: Path, entrypoint: list[str], cmd: list[str], env: list[str]) -> str:
    """Write the archive; returns the manifest digest."""
    with tempfile.TemporaryDirectory() as tmp:
        layer = Path(tmp) / "layer.tar"
        # GNU tar keeps device nodes, hard links, numeric ownership and modes exactly;
        # sorted names and a fixed mtime make the layer reproducible from the same tree.
        subprocess.run(
            ["tar", "--sort=name", "--numeric-owner", "--mtime=@0", "-C", str(rootfs), "-cf", str(layer), "."],
            check=True,
        )
        layer_digest, layer_size = _digest_file(layer)
        config = {
            "created": EPOCH,
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": env, "Entrypoint": entrypoint or None, "Cmd": cmd or None, "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            "history": [{"created": EPOCH, "created_by": f"e2e/images/oci.py {name}"}],
        }
        config_bytes = json.dumps(config, sort_keys=True).encode()
        config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {"mediaType": CONFIG, "digest": config_digest, "size": len(config_bytes)},
            "layers": [{"mediaType": LAYER, "digest": layer_digest, "size": layer_size}],
        }
        manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
        manifest_digest = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": MANIFEST,
                    "digest": manifest_digest,
                    "size": len(manifest_bytes),
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1],
                    },
                }
            ],
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_suffix(out.suffix + ".partial")
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
            _add_bytes(tar, "index.json", json.dumps(index).encode())
            _add_bytes(tar, f"blobs/sha256/{manifest_digest[7:]}", manifest_bytes)
            _add_bytes(tar, f"blobs/sha256/{config_digest[7:]}", config_bytes)
            tar.add(layer, arcname=f"blobs/sha256/{layer_digest[7:]}")
        partial.rename(out)
    return manifest_digest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rootfs", type=Path, required=True)
    p.add_argument("--name", required=True, help="full image reference, e.g. certmint.local/workload:1")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--entrypoint", action="append", default=[])
    p.add_argument("--cmd", action="append", default=[])
    p.add_argument(
        "--env", action="append", default=["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    )
    a = p.parse_args()
    print(pack(a.rootfs, a.name, a.out, a.entrypoint, a.cmd, a.env))


if __name__ == "__main__":
    main()
