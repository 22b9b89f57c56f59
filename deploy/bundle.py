"""Fills a deployment directory: handler/, pure-Python runtime wheels, pruned, with bytecode for Python 3.13."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = "3.13"  # both platforms run python3.13; the bytecode is compiled for exactly this version
# Never imported by an invocation (checked by tests/integration/test_artifacts.py, which runs every code
# path of the unpacked artifacts with imports watched). Powertools' event handler and its bundled Swagger
# UI are most of the wheel; of its utilities the Logger needs only typing and jmespath_utils.
PRUNE = ("bin", "aws_lambda_powertools/event_handler")
KEEP_UTILITIES = {"__init__.py", "typing", "jmespath_utils"}
BINARY_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")
# Run over the artifact's own handler/ and wheels, so the routes file is checked by the code that will read
# it, exactly as `validate` checks it. Errors only: warnings depend on settings a build does not know (the
# deployed DATAFLOW_TIMEZONE, for one).
CHECK_ROUTES = """
import sys
from handler.errors import ConfigError
from handler.settings import parse_settings
try:
    parse_settings({"DATAFLOW_ROUTES": "@routes.json", "DATAFLOW_DRY_RUN": "true"})
except ConfigError as exc:
    sys.exit(str(exc))
"""


def requirements() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as source:
        return list(tomllib.load(source)["project"]["dependencies"])


def install(site: Path) -> None:
    # `--platform any` with the generic `py` implementation accepts only pure py3-none-any wheels, so the
    # result runs on x86_64 and arm64 alike and never depends on the build machine (no Docker needed).
    # --no-compile: pip would write bytecode for the interpreter running it (e.g. cpython-311), which the
    # 3.13 runtime ignores; bytecode is compiled below, for 3.13.
    done = subprocess.run(  # noqa: S603 - fixed arguments
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--target",
            str(site),
            "--only-binary=:all:",
            "--platform",
            "any",
            "--implementation",
            "py",
            "--python-version",
            RUNTIME,
            *requirements(),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    # pip's output is shown only when it failed: its warnings about this machine's indexes or about running
    # as root say nothing about the artifact.
    if done.returncode != 0:
        sys.exit(f"pip could not install the runtime dependencies:\n{done.stdout}{done.stderr}")


def check_pure(site: Path) -> None:
    problems = [str(path.relative_to(site)) for path in site.rglob("*") if path.suffix in BINARY_SUFFIXES]
    for wheel in site.glob("*.dist-info/WHEEL"):
        tags = [line.split(":", 1)[1].strip() for line in wheel.read_text().splitlines() if line.startswith("Tag:")]
        problems += [f"{wheel.parent.name}: {tag}" for tag in tags if not tag.endswith("-none-any")]
    if problems:
        sys.exit("architecture-specific files in the bundle: " + ", ".join(problems))


def prune(site: Path) -> None:
    for name in PRUNE:
        shutil.rmtree(site / name, ignore_errors=True)
    utilities = site / "aws_lambda_powertools" / "utilities"
    for entry in utilities.iterdir():
        if entry.name not in KEEP_UTILITIES:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    for cache in site.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def copy_handler(destination: Path) -> None:
    shutil.copytree(ROOT / "handler", destination / "handler", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def copy_routes(routes: str, destination: Path) -> None:
    """The user's routes file, kept in their own repository, as handler/routes.json (DATAFLOW_ROUTES=@routes.json)."""
    source = Path(routes).expanduser()
    try:
        text = source.read_text(encoding="utf-8")
        parsed = json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        sys.exit(f"ROUTES_FILE {source}: cannot read it ({exc})")
    except json.JSONDecodeError as exc:
        sys.exit(f"ROUTES_FILE {source} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    if not isinstance(parsed, list):
        sys.exit(f"ROUTES_FILE {source} must hold a JSON array of routes")
    (destination / "handler" / "routes.json").write_text(text, encoding="utf-8")
    print(f"routes: {source} -> handler/routes.json (set DATAFLOW_ROUTES=@routes.json)")


def check_routes(destination: Path, site: Path, source: str) -> None:
    """Refuses to ship a routes file that `validate` refuses: its error would first show in the cloud."""
    path = os.pathsep.join((str(destination), str(site)))
    done = subprocess.run(  # noqa: S603 - the build's own interpreter, a fixed script
        [sys.executable, "-s", "-c", CHECK_ROUTES],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"},
        cwd=destination,  # `-c` puts the working directory first on the path: never the checkout's handler/
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"ROUTES_FILE {source}: not shipped, `validate` refuses it:\n{done.stderr.strip()}")


def compile_for_runtime(destination: Path, python313: str) -> None:
    if not python313:
        # Still a working artifact: 3.13 compiles each module in memory at every cold start (the
        # platforms' code directories are read-only), which costs cold-start time, nothing else.
        print(
            f"WARNING: no Python {RUNTIME} found: {destination} ships sources only, without bytecode."
            f" Install Python {RUNTIME} (or pass PY313=/path/to/python3.13) for a faster cold start.",
            file=sys.stderr,
        )
        return
    version = subprocess.run(  # noqa: S603 - the interpreter the caller named
        [python313, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if version != RUNTIME:
        sys.exit(f"{python313} is Python {version}, not {RUNTIME}")
    # unchecked-hash: the runtime loads the .pyc without looking at the source's mtime, which a zip does
    # not carry faithfully (2-second resolution, no time zone), so nothing is recompiled after unpacking.
    # -s: no path of this machine goes into the bytecode (the import system fills in the real one).
    subprocess.run(  # noqa: S603 - the interpreter the caller named
        [
            python313,
            "-m",
            "compileall",
            "-q",
            "-j0",
            "--invalidation-mode",
            "unchecked-hash",
            "-s",
            str(destination),
            str(destination),
        ],
        check=True,
    )
    missing = [
        str(path.relative_to(destination))
        for path in destination.rglob("*.py")
        if not (path.parent / "__pycache__" / f"{path.stem}.cpython-313.pyc").is_file()
    ]
    if missing:
        sys.exit("no bytecode compiled for: " + ", ".join(missing))


def report(destination: Path) -> None:
    sizes: dict[str, int] = {}
    for path in destination.rglob("*"):
        if path.is_file():
            parts = path.relative_to(destination).parts
            key = next((part for part in parts if part not in ("virtualenv", "lib", "python3.13", "site-packages")), "")
            sizes[key] = sizes.get(key, 0) + path.stat().st_size
    top = sorted(sizes.items(), key=lambda item: -item[1])[:6]
    print(
        f"{destination}: {sum(sizes.values()) / 1e6:.2f} MB unpacked; "
        + ", ".join(f"{name} {size / 1e3:.0f} kB" for name, size in top)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("destination", type=Path, help="the artifact directory (created if missing)")
    parser.add_argument("--site", default=".", help="where the wheels go, relative to the destination")
    parser.add_argument("--python313", default=os.environ.get("PY313", ""), help="a Python 3.13 to compile with")
    parser.add_argument(
        "--routes", default=os.environ.get("ROUTES_FILE", ""), help="a routes file to ship as @routes.json"
    )
    args = parser.parse_args()
    destination: Path = args.destination
    site = destination / args.site
    site.mkdir(parents=True, exist_ok=True)
    copy_handler(destination)
    if args.routes:
        copy_routes(args.routes, destination)
    install(site)
    check_pure(site)
    prune(site)
    if args.routes:
        check_routes(destination, site, args.routes)
    compile_for_runtime(destination, args.python313)
    report(destination)


if __name__ == "__main__":
    main()
