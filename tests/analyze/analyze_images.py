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
