"""Builder-stage helper: import what the server imports, then compile exactly those modules to bytecode.

Hash-based .pyc (unchecked: the venv never changes after the build) carry no timestamps, so the layer is
reproducible; modules the server never imports stay source-only, which keeps most of the size a full
`compileall` would add while giving cold start most of its gain. Usage: python compile_imported.py MODULE...
"""

import importlib
import os
import py_compile
import sys

os.environ.setdefault("TRANSFORMERS_NO_TF", "1")
prefix = os.path.realpath(sys.prefix)
failed = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception as exc:  # a module the runtime may not need on this platform: say so, keep going
        failed.append(f"{name} ({type(exc).__name__})")
count = 0
for module in list(sys.modules.values()):
    source = getattr(module, "__file__", None)
    if not source or not source.endswith(".py") or not os.path.realpath(source).startswith(prefix):
        continue
    py_compile.compile(source, doraise=False, quiet=2, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    count += 1
print(f"compiled {count} imported modules" + (f"; could not import {', '.join(failed)}" if failed else ""))
