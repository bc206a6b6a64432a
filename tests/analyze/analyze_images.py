"""What the small real image of the analyze tests holds: its Dockerfile and the byte counts it writes."""

A1, GONE, A2, PKG = 3_000_000, 1_000_000, 2_000_000, 500_000
SITE = "/opt/venv/lib/python3.11/site-packages"
DOCKERFILE = f"""FROM python:3.11-slim
RUN head -c {A1} /dev/urandom > /opt/a.bin && head -c {GONE} /dev/urandom > /opt/gone.bin
ENV STEP=2
RUN head -c {A2} /dev/urandom > /opt/a.bin && rm /opt/gone.bin
RUN mkdir -p {SITE}/fakepkg {SITE}/fakepkg-1.0.dist-info \\
 && head -c {PKG} /dev/urandom > {SITE}/fakepkg/core.so \\
 && printf 'fakepkg/core.so,,{PKG}\\nfakepkg-1.0.dist-info/RECORD,,\\n' > {SITE}/fakepkg-1.0.dist-info/RECORD
LABEL io.bgeimg.profile=analyze-test
"""


def dist(name: str, files: dict[str, bytes]) -> dict[str, bytes]:
    """A distribution as pip lays it out: its files plus a dist-info whose RECORD lists them."""
    info = f"{name}-1.0.dist-info"
    files = {**files, f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode()}
    record = "".join(f"{path},,\n" for path in files) + f"{info}/RECORD,,\n"
    return {**files, f"{info}/RECORD": record.encode()}


def build_planted(docker_api, name: str, dockerfile: str, files: dict[str, bytes],
                  platform: str = "linux/amd64") -> str:
    """Build DOCKERFILE with FILES as its context; the tag is a hash of both, so a rerun reuses nothing stale."""
    import hashlib
    import io
    import tarfile

    import pytest

    digest = hashlib.sha256(dockerfile.encode() + repr(sorted(files.items())).encode()).hexdigest()[:12]
    tag = f"bgeimg-test-analyze/{name}:{digest}"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, data in {"Dockerfile": dockerfile.encode(), **files}.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    # pull: the local python:3.11-slim tag may point at the arm64 variant after another test's arm64 build
    for chunk in docker_api.build(fileobj=buf, custom_context=True, tag=tag, rm=True, decode=True,
                                  platform=platform, pull=True):
        if "error" in chunk:
            pytest.fail(f"building {tag} failed: {chunk['error']}")
    return tag
