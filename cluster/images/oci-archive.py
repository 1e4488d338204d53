#!/usr/bin/env python3
"""Writes a one-layer OCI image archive (an OCI layout in a tar) from files on this machine.

Usage:
  oci-archive.py --name REF --out FILE [--entrypoint JSON] [--cmd JSON] [--env K=V]...
                 [--workdir DIR] [--file SRC:DEST[:MODE]]... [--dir DEST]... [--link DEST:TARGET]...

The archive imports with `ctr -n k8s.io images import FILE`, which names the image REF from the
index's `io.containerd.image.name` annotation. The layer is an uncompressed, reproducible tar:
entries sorted, owned by root, time 0, parent directories added, so the same inputs give the
same digests. Test images only: no registry is involved.
"""

import argparse
import hashlib
import io
import json
import os
import sys
import tarfile


def fail(msg):
    sys.exit(f"oci-archive: error: {msg}")


def layer_tar(files, dirs, links):
    """Returns the bytes of the layer tar built from (src, dest, mode) files, dirs and links."""
    entries = {}

    def add_parents(path):
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            entries.setdefault(d, ("dir", None, 0o755))

    for src, dest, mode in files:
        if not os.path.isfile(src):
            fail(f"--file {src}: not a file")
        dest = dest.strip("/")
        add_parents(dest)
        if mode is None:
            mode = os.stat(src).st_mode & 0o7777
        entries[dest] = ("file", src, mode)
    for d in dirs:
        d = d.strip("/")
        add_parents(d + "/x")
        entries[d] = ("dir", None, 0o1777 if d == "tmp" else 0o755)
    for dest, target in links:
        dest = dest.strip("/")
        add_parents(dest)
        entries[dest] = ("link", target, 0o777)

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):
            kind, arg, mode = entries[name]
            info = tarfile.TarInfo(name)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = mode
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "link":
                info.type = tarfile.SYMTYPE
                info.linkname = arg
                tar.addfile(info)
            else:
                with open(arg, "rb") as f:
                    data = f.read()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def blob(data):
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="image reference, e.g. tether.local/web:1")
    p.add_argument("--out", required=True)
    p.add_argument("--entrypoint", type=json.loads, default=None)
    p.add_argument("--cmd", type=json.loads, default=None)
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--workdir", default="/")
    p.add_argument("--file", action="append", default=[], help="SRC:DEST[:OCTAL_MODE]")
    p.add_argument("--dir", action="append", default=[])
    p.add_argument("--link", action="append", default=[], help="DEST:TARGET (symlink)")
    a = p.parse_args()

    if ":" not in a.name.rsplit("/", 1)[-1] or a.name.endswith(":latest"):
        fail(f"--name {a.name}: give a fixed tag other than latest (a registry is never reached)")
    files = []
    for spec in a.file:
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            fail(f"--file {spec}: expected SRC:DEST[:MODE]")
        files.append((parts[0], parts[1], int(parts[2], 8) if len(parts) == 3 else None))
    links = []
    for spec in a.link:
        dest, sep, target = spec.partition(":")
        if not sep:
            fail(f"--link {spec}: expected DEST:TARGET")
        links.append((dest, target))

    layer_digest, layer = blob(layer_tar(files, a.dir, links))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": a.env or ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"],
            "WorkingDir": a.workdir,
        },
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }
    if a.entrypoint is not None:
        config["config"]["Entrypoint"] = a.entrypoint
    if a.cmd is not None:
        config["config"]["Cmd"] = a.cmd
    config_digest, config_bytes = blob(json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": len(layer),
            }
        ],
    }
    manifest_digest, manifest_bytes = blob(json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": a.name,
                    "org.opencontainers.image.ref.name": a.name.rsplit(":", 1)[1],
                },
            }
        ],
    }

    tmp = a.out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as out:

        def put(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            out.addfile(info, io.BytesIO(data))

        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            out.addfile(info)
        put("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        put("index.json", json.dumps(index, sort_keys=True).encode())
        for digest, data in ((config_digest, config_bytes), (manifest_digest, manifest_bytes), (layer_digest, layer)):
            put("blobs/sha256/" + digest.split(":", 1)[1], data)
    os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
