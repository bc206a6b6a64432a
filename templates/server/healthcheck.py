"""Docker HEALTHCHECK probe: exit 0 when the server answers /health with 200, else 1. Stdlib only."""

import os
import sys
import urllib.request

url = f"http://127.0.0.1:{os.environ.get('BGE_PORT', '8000')}/health"
try:
    with urllib.request.urlopen(url, timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:  # any failure means unhealthy; say why in `docker inspect` health log
    print(f"unhealthy: {exc}", file=sys.stderr)
    sys.exit(1)
