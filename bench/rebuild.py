"""Cold build vs. app-change rebuild: prints both times and their ratio (target: rebuild <= 0.05 x cold).

    python bench/rebuild.py --engine buildkit --wheelhouse DIR [--profile cpu-slim] [--model DIR] [--set k=v ...]
    python bench/rebuild.py --engine buildx --wheelhouse DIR --registry-cache 127.0.0.1:5000/bench/cache

With --registry-cache REF (buildx): the app-change build also exports its cache to the registry
(`--cache-to type=registry,ref=REF,mode=max`), the cache records the bench's builds made are pruned from the
builder (by id: the rest of the cache stays), and a third build imports the cache from the registry
(`--cache-from type=registry,ref=REF`): a fresh machine in CI rebuilding from the registry. So that no record
of an earlier build can stand in for the imported ones, a nonce leads each stage (a `RUN echo` before the
builder's first step, the user's uid in the runtime's).

The cold build runs with --no-cache (dependencies installed, model copied); then one line of the app code
changes and the image is rebuilt with the cache. Both go through bgeimg.build.run, the code `bgeimg build` runs.
Both builds make the same image (bgeimg-bench/rebuild:latest) from the same context directory, as a developer's
rebuild does: BuildKit then sends only the files that changed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from bgeimg import resources
from bgeimg.build import builders
from bgeimg.build import run as builds
from bgeimg.profile import resolve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="auto", help="auto, engine, buildkit or buildx")
    parser.add_argument("--profile", default="cpu-slim")
    parser.add_argument("--wheelhouse", type=Path, help="wheels for the profile's requirements (no index)")
    parser.add_argument("--ca-bundle", type=Path, help="CA bundle for reaching the index during the build")
    parser.add_argument("--model", type=Path, help="local model directory to bake (default: none, external)")
    parser.add_argument("--set", action="append", default=[], dest="sets", help="profile override key=value")
    parser.add_argument("--image", default="bgeimg-bench/rebuild")
    parser.add_argument("--registry-cache", metavar="REF", help="buildx: export, prune, import the cache via REF")
    args = parser.parse_args(argv)
    if args.registry_cache and os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock") == \
            "unix:///var/run/docker.sock":
        parser.error("--registry-cache needs a builder that exports a cache (not Docker 20.10's): point DOCKER_HOST at one "
                     "(the test bed's Docker 26: unix:///var/run/bgeimg-docker26.sock)")

    with tempfile.TemporaryDirectory(prefix="bgeimg-bench-") as tmp:
        app = Path(tmp) / "app"
        shutil.copytree(resources.templates_dir() / "server", app)
        sets = [*args.sets, f"app_dir={app}"]
        sets.append(f"model={args.model}" if args.model else "model=none")
        profile = resolve(args.profile, sets=sets).profile

        cache_ref = f"type=registry,ref={args.registry_cache}" if args.registry_cache else None
        docker = os.environ.get("BGEIMG_DOCKER_CLI", "/usr/bin/docker")
        if cache_ref:
            nonce = uuid.uuid4().int % 40000
            template = Path(tmp) / "nonce.Dockerfile.j2"
            template.write_text('{% extends "Dockerfile.j2" %}\n{% block builder_system %}\n'
                                f'RUN echo {nonce} > /etc/bgeimg-bench-nonce\n{{{{ super() }}}}\n{{% endblock %}}\n')
            sets += [f"template={template}", f"user.uid={20000 + nonce}"]
            profile = resolve(args.profile, sets=sets).profile
            before = builders.cache_records(docker)

        def timed(no_cache: bool, cache_to: tuple[str, ...] = (), cache_from: tuple[str, ...] = ()) -> builds.BuildReport:
            options = builds.BuildOptions(image=f"{args.image}:latest", engine=args.engine,
                                          platforms=[builds.host_platform()], wheelhouse=args.wheelhouse,
                                          ca_bundle=args.ca_bundle, no_cache=no_cache, cache_to=list(cache_to),
                                          cache_from=list(cache_from))
            return builds.build(profile, options)

        cold = timed(no_cache=True)
        code = app / "bge_server" / "app.py"
        code.write_text(code.read_text() + f"\n# bench change {uuid.uuid4()}\n")
        warm = timed(no_cache=False, cache_to=(f"{cache_ref},mode=max",) if cache_ref else ())
        imported = None
        if cache_ref:
            made = {k: v for k, v in builders.cache_records(docker).items() if k not in before}
            left = builders.prune_records(docker, made)
            if left:
                print(f"warning: {len(left)} of the {len(made)} cache records the builds made could not be pruned")
            subprocess.run([docker, "image", "rm", "-f", f"{args.image}:latest",
                            f"{args.image}:latest-{builds.host_platform().split('/')[1]}"], capture_output=True)
            imported = timed(no_cache=False, cache_from=(cache_ref,))

    cold_s, warm_s = cold.platforms[0].seconds, warm.platforms[0].seconds
    ratio = warm_s / cold_s
    steps = warm.platforms[0].steps
    print(f"engine            {cold.engine}")
    print(f"profile           {profile.name} ({len(profile.requirements)} requirements, "
          f"image {cold.platforms[0].size / 1e6:.0f} MB)")
    print(f"cold build        {cold_s:8.1f} s")
    print(f"app-change build  {warm_s:8.1f} s  ({sum(s.cached for s in steps)}/{len(steps)} steps cached)")
    print(f"ratio             {ratio:8.3f}  (target <= 0.05: {'PASS' if ratio <= 0.05 else 'FAIL'})")
    if imported is not None:
        isteps = imported.platforms[0].steps
        build_steps = [s for s in isteps if not s.name.startswith(("load ", "push ", "tag "))]
        print(f"registry-cache    {imported.platforms[0].seconds:8.1f} s  (its cache records pruned; "
              f"{sum(s.cached for s in build_steps)}/{len(build_steps)} steps cached from {args.registry_cache}; "
              f"ratio to cold {imported.platforms[0].seconds / cold_s:.3f})")
        print(f"  not cached: {'; '.join(s.name[:60] for s in build_steps if not s.cached) or 'none'}")
    return 0 if ratio <= 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
