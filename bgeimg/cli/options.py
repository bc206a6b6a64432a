"""Options shared by several commands, declared once as `Annotated` aliases (huggingface_hub's CLI does the same)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

ProfileOpt = Annotated[Optional[str], typer.Option("--profile", "-p",
                       help="Profile name or alias (default: the config's, else cpu-slim).")]
SetOpt = Annotated[Optional[List[str]], typer.Option("--set",
                   help="Override a profile value: key.path=value (YAML scalar). Repeatable.")]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c",
                      help="Project config file (default: ./bgeimg.yaml when present).")]
ProfilesDirOpt = Annotated[Optional[List[Path]], typer.Option("--profiles-dir",
                           help="Directory of user profiles (*.yaml). Repeatable.")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Model to serve: hf://org/name@revision, "
                     "a local directory, or none (same as --set model=...).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
KeyOpt = Annotated[Optional[str], typer.Option("--key", help="cosign key: a key file, env://VAR or a KMS URI "
                   "(default: $COSIGN_KEY); a private key's password comes from $COSIGN_PASSWORD only.")]
