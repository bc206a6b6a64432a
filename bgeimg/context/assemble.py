"""Assemble a complete build context directory: rendered files, model weights, wheelhouse, CA bundle."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from bgeimg.context import model as models
from bgeimg.context import render as rendering
from bgeimg.errors import BgeimgError
from bgeimg.profile import Profile


@dataclass
class BuildContext:
    """A context directory ready for `docker build`, and what went into it."""

    directory: Path
    rendered: rendering.RenderedContext
    model: models.ModelFiles | None


def prepare(
    profile: Profile,
    directory: Path,
    options: rendering.RenderOptions = rendering.RenderOptions(),
    *,
    wheelhouse: Path | None = None,
    ca_bundle: Path | None = None,
    lock: models.Lock | None = None,
) -> BuildContext:
    """Render `profile` into `directory` and add the model files, wheels and CA bundle the options call for.

    The model is fetched first, so the rendered labels carry the commit an `hf://` revision resolved to; with a
    `lock` the locked commit is used and verified, and the lock file is written back."""
    if options.wheelhouse and (wheelhouse is None or not wheelhouse.is_dir()):
        raise BgeimgError(f"wheelhouse {wheelhouse} is not a directory", "pass --wheelhouse DIR with the .whl files")
    if options.ca_bundle and (ca_bundle is None or not ca_bundle.is_file()):
        raise BgeimgError(f"CA bundle {ca_bundle} is not a file", "pass --ca-bundle FILE (PEM)")
    rendered = rendering.render(profile, options)  # template errors surface before any download
    directory.mkdir(parents=True, exist_ok=True)
    model_files = models.materialize(profile.model, directory / "model", lock=lock,
                                     endpoint=profile.mirrors.hf_endpoint, onnx=profile.runtime == "onnx")
    if not model_files:
        shutil.rmtree(directory / "model", ignore_errors=True)
    elif model_files.revision != profile.model.revision:
        profile = profile.model_copy(update={"model": profile.model.model_copy(update={"revision": model_files.revision})})
        rendered = rendering.render(profile, options)
    if lock is not None and lock.models:
        lock.write()
    rendering.clean_output_dir(directory)
    rendered.write(directory)
    wheels = directory / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    if options.wheelhouse and wheelhouse is not None:
        wheels.mkdir()
        for whl in sorted(wheelhouse.glob("*.whl")):
            _link_or_copy(whl, wheels / whl.name)
    bundle = directory / "ca-bundle.crt"
    bundle.unlink(missing_ok=True)
    # With BuildKit the bundle goes in as a secret, so it is not copied into the context at all.
    if options.ca_bundle and ca_bundle is not None and options.backend == "classic":
        shutil.copyfile(ca_bundle, bundle)
    return BuildContext(directory=directory, rendered=rendered, model=model_files)


def is_context(directory: Path) -> bool:
    """Whether `directory` holds a context bgeimg rendered (so rendering into it again may replace it)."""
    try:
        with (directory / "Dockerfile").open("rb") as fh:
            return fh.read(64).startswith(b"# Rendered by bgeimg")
    except OSError:
        return False


def _link_or_copy(src: Path, dst: Path) -> None:
    # Hard links keep a 200 MB torch wheel from being copied on every build.
    try:
        dst.hardlink_to(src)
    except OSError:
        shutil.copyfile(src, dst)
