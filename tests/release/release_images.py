"""Small multi-platform images put straight into a registry (no build), for the release tests."""

from __future__ import annotations

import gzip
import io
import json
import tarfile


def put_image(registry: str, repo: str, salt: str, tag: str = "v1",
              platforms: tuple[str, ...] = ("amd64", "arm64")) -> str:
    """A real multi-platform image (one small layer per platform) put into `registry` under `tag`; its index
    digest. Made with bgeimg's registry client, so nothing is built: the signing tests need digests, not apps."""
    from bgeimg.oci.mediatypes import DOCKER_CONFIG, DOCKER_LAYER, DOCKER_LIST, DOCKER_MANIFEST
    from bgeimg.oci.registry import RegistryClient, sha256_digest

    client = RegistryClient(f"http://{registry}")
    descs = []
    for arch in platforms:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            data = f"{salt} {arch}\n".encode()
            info = tarfile.TarInfo("hello.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        layer = gzip.compress(buf.getvalue(), mtime=0)
        config = json.dumps({"architecture": arch, "os": "linux", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": [sha256_digest(buf.getvalue())]}}).encode()
        for blob in (layer, config):
            client.upload_blob(repo, sha256_digest(blob), blob)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG,
                       "digest": sha256_digest(config), "size": len(config)},
            "layers": [{"mediaType": DOCKER_LAYER,
                        "digest": sha256_digest(layer), "size": len(layer)}]}).encode()
        client.put_manifest(repo, sha256_digest(manifest), manifest, DOCKER_MANIFEST)
        descs.append({"mediaType": DOCKER_MANIFEST, "digest": sha256_digest(manifest), "size": len(manifest),
                      "platform": {"architecture": arch, "os": "linux"}})
    index = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": descs}).encode()
    return client.put_manifest(repo, tag, index, DOCKER_LIST)
