"""Both deployment artifacts, built once per session: pure Python, pruned safely, and run from 3.13 bytecode."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.submit import Figure, smoke_report
from emulator.server import Emulator
from tests.conftest import ACCESS_KEY, ROOT, SECRET_KEY, cli

pytestmark = pytest.mark.timeout(300)

# Run inside the artifact by a bare 3.13 (-S: no site-packages but the artifact's own), with
# PYTHONDONTWRITEBYTECODE=1 as on a fresh container. It drives every adapter path an invocation takes,
# and records each source file the import system had to compile (the "compile" audit event).
PROBE = r"""
import importlib.util, json, os, sys
kind, root, out = sys.argv[1], os.path.realpath(sys.argv[2]), sys.argv[3]
compiled = []
def watch(event, args):
    if event != "compile" or not isinstance(args[1], str) or args[1].endswith("activate_this.py"):
        return  # the launcher itself compiles activate_this.py from source; only imports count here
    if os.path.realpath(args[1]).startswith(root + os.sep):
        compiled.append(os.path.relpath(os.path.realpath(args[1]), root))
sys.addaudithook(watch)
events = json.loads(os.environ["PROBE_EVENTS"])
results = []
if kind == "ncp":
    activate = os.path.join(root, "virtualenv", "bin", "activate_this.py")
    with open(activate, encoding="utf-8") as source:
        exec(compile(source.read(), activate, "exec"), {"__file__": activate})  # the launcher's own step
    sys.path.insert(0, root)
    spec = importlib.util.spec_from_file_location("action", os.path.join(root, "__main__.py"))
    action = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(action)
    results = [action.main(event) for event in events]
else:
    sys.path.insert(0, root)
    from handler.app import lambda_handler
    class Context:
        function_name, function_version, memory_limit_in_mb = "launcher", "$LATEST", 256
        invoked_function_arn, aws_request_id = "arn:aws:lambda:ap-northeast-2:1:function:launcher", "probe"
        def get_remaining_time_in_millis(self):
            return 30000
    for event in events:
        try:
            results.append(lambda_handler(event, Context()))
        except Exception as exc:  # a configuration error is one of the paths; its result is the exception
            results.append({"raised": type(exc).__name__})
modules = {}
for name, module in list(sys.modules.items()):
    path = getattr(module, "__file__", None)
    if not path or not os.path.realpath(path).startswith(root + os.sep) or path.endswith("activate_this.py"):
        modules[name] = None if not path else "outside"
        continue
    cached = getattr(module, "__cached__", None)
    header = open(cached, "rb").read(16) if cached and os.path.isfile(cached) else b""
    modules[name] = {
        "magic_ok": header[:4] == importlib.util.MAGIC_NUMBER,
        "flags": int.from_bytes(header[4:8], "little") if header else None,
    }
with open(out, "w", encoding="utf-8") as sink:
    json.dump({"compiled": compiled, "modules": modules, "results": results}, sink)
"""
DEPENDENCIES = (
    "handler",
    "requests",
    "urllib3",
    "charset_normalizer",
    "idna",
    "certifi",
    "aws_lambda_powertools",
    "jmespath",
    "typing_extensions",
)
UNCHECKED_HASH = 0b01  # PEP 552 flags: hash-based, source not checked


def find_python313() -> str | None:
    if sys.version_info[:2] == (3, 13):
        return sys.executable
    candidates = [os.environ.get("PY313", ""), shutil.which("python3.13") or ""]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += [str(path) for path in sorted(pyenv.glob("3.13*/bin/python3.13"))]
    for candidate in filter(None, candidates):
        done = subprocess.run(
            [candidate, "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 13))"], capture_output=True, check=False
        )
        if done.returncode == 0:
            return candidate
    return None


def code_uri() -> str:
    """The function's CodeUri in template.yaml: what `sam build` copies before it runs make."""
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse((ROOT / "template.yaml").read_text(encoding="utf-8"))
    return str(template["Resources"]["LauncherFunction"]["Properties"]["CodeUri"])


@dataclass(frozen=True)
class Artifacts:
    python313: str
    ncp_zip: Path
    ncp_root: Path
    lambda_root: Path
    ncp_output: str  # what `make package-ncp` printed


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    python313 = find_python313()
    if python313 is None:
        pytest.skip("SKIPPED: no Python 3.13 (pyenv or python3.13 on PATH): the artifacts' bytecode cannot be built")
    base = tmp_path_factory.mktemp("artifacts")
    make = shutil.which("make")
    assert make is not None, "make is needed to build the artifacts"
    routes = base / "my-repo" / "routes.json"  # a routes file kept in the user's own repository
    routes.parent.mkdir()
    routes.write_text(json.dumps([{"name": "mine", "match": {"source": "schedule"}, "jobId": "MineJob1"}]))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))} | {"ROUTES_FILE": str(routes)}
    # As `sam build` does with BuildMethod makefile: copy CodeUri to a scratch directory, run make there
    # with the original Makefile.
    scratch = base / "sam-scratch"
    shutil.copytree(ROOT / code_uri(), scratch, ignore=shutil.ignore_patterns(".aws-sam", ".git"))
    makefile, pinned = ROOT / code_uri() / "Makefile", f"PY313={python313}"
    builds = [  # both at once: each is mostly pip and compileall waiting on different things
        subprocess.Popen(
            [make, "package-ncp", f"DIST={base / 'dist'}", f"PY313={python313}"],  # as a user types it
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [make, "--makefile", str(makefile), "build-LauncherFunction", f"ARTIFACTS_DIR={base / 'lambda'}", pinned],
            cwd=scratch,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        ),
    ]
    outputs = []
    for build in builds:
        output, _ = build.communicate(timeout=240)
        assert build.returncode == 0, output.decode()
        outputs.append(output.decode())
    ncp_root = base / "ncp"
    with zipfile.ZipFile(base / "dist" / "ncp-action.zip") as archive:
        archive.extractall(ncp_root)
    return Artifacts(python313, base / "dist" / "ncp-action.zip", ncp_root, base / "lambda", outputs[0])


@pytest.fixture
def api() -> Iterator[Emulator]:
    # Real clock: the artifacts run in their own process and sign with the real time.
    with Emulator({ACCESS_KEY: SECRET_KEY}) as emulator:
        yield emulator


def run_probe(
    artifacts: Artifacts, kind: str, root: Path, api: Emulator, events: list[object], **settings: str
) -> dict[str, object]:
    probe, out = root.parent / f"probe-{kind}.py", root.parent / f"probe-{kind}.json"
    probe.write_text(PROBE, encoding="utf-8")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONDONTWRITEBYTECODE": "1",
        "NCLOUD_ACCESS_KEY": ACCESS_KEY,
        "NCLOUD_SECRET_KEY": SECRET_KEY,
        "DATAFLOW_ENDPOINT": api.url,
        "DATAFLOW_JOB_ID": "ProbeJob1",
        "DATAFLOW_TIMEZONE": "Asia/Seoul",  # a named zone: zoneinfo is on the path too
        "PROBE_EVENTS": json.dumps(events),
    }
    if "DATAFLOW_ROUTES" in settings:
        del env["DATAFLOW_JOB_ID"]
    env |= settings
    done = subprocess.run(
        [artifacts.python313, "-S", "-s", str(probe), kind, str(root), str(out)],
        cwd=root.parent,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(out.read_text(encoding="utf-8"))
    return report


def event(name: str) -> object:
    return json.loads((ROOT / "events" / name).read_text(encoding="utf-8"))


def assert_ran_from_bytecode(report: dict[str, object]) -> None:
    assert report["compiled"] == [], "the artifact compiled its own source at import"
    modules = report["modules"]
    assert isinstance(modules, dict)
    own = {name: pyc for name, pyc in modules.items() if isinstance(pyc, dict)}
    assert {
        "handler.launcher",
        "handler.dataflow.client",
        "handler.settings",
        "requests",
        "urllib3",
        "aws_lambda_powertools.logging",
    } <= set(own)
    assert {name: pyc for name, pyc in own.items() if pyc != {"magic_ok": True, "flags": UNCHECKED_HASH}} == {}
    # Every runtime dependency came from the artifact, not from anywhere else on the machine.
    foreign = [name for name, where in modules.items() if where == "outside" and name.split(".")[0] in DEPENDENCIES]
    assert foreign == []


def test_ncp_zip_runs_every_path_from_its_own_bytecode(artifacts: Artifacts, api: Emulator) -> None:
    schedule = {"schedule": "nightly"}
    report = run_probe(artifacts, "ncp", artifacts.ncp_root, api, [event("ncp-object-storage.json"), schedule])
    assert_ran_from_bytecode(report)
    results = report["results"]
    assert isinstance(results, list)
    assert [len(result["submitted"]) for result in results] == [1, 1]
    assert len(api.all_executions()) == 2


def test_sam_build_output_runs_every_path_from_its_own_bytecode(artifacts: Artifacts, api: Emulator) -> None:
    events = [event("s3-put.json"), event("sqs-s3.json"), event("schedule-classic.json"), event("s3-delete.json")]
    report = run_probe(artifacts, "lambda", artifacts.lambda_root, api, events)
    assert_ran_from_bytecode(report)
    results = report["results"]
    assert isinstance(results, list)
    assert [len(result.get("submitted", [])) for result in results] == [1, 1, 1, 0]
    assert results[1]["batchItemFailures"]  # the malformed message: the failure path ran too


@pytest.mark.parametrize("kind", ["ncp", "lambda"])
def test_artifact_is_pure_python_for_313_only_and_pruned(artifacts: Artifacts, kind: str) -> None:
    root = artifacts.ncp_root if kind == "ncp" else artifacts.lambda_root
    files = [path for path in root.rglob("*") if path.is_file()]
    assert [p for p in files if p.suffix in (".so", ".pyd", ".dylib", ".dll")] == []
    tags = {line for p in files if p.name == "WHEEL" for line in p.read_text().splitlines() if line.startswith("Tag:")}
    assert tags and all(tag.endswith("-none-any") for tag in tags), tags
    tag = sys.implementation.cache_tag if sys.version_info[:2] == (3, 13) else "cpython-313"
    assert [p for p in files if p.suffix == ".pyc" and f".{tag}." not in p.name] == []  # no stale cpython-311
    sources = [p for p in files if p.suffix == ".py"]
    assert [p for p in sources if not (p.parent / "__pycache__" / f"{p.stem}.{tag}.pyc").is_file()] == []
    assert not any("event_handler" in p.parts for p in files)
    assert any(p.name == "app.py" and p.parent.name == "handler" for p in files)


def test_bench_smoke_run_measures_both_artifacts(artifacts: Artifacts) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.submit",
            "--smoke",
            "--table",
            f"--ncp-zip={artifacts.ncp_zip}",
            f"--lambda-dir={artifacts.lambda_root}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    figures = ["warm overhead", "batch", "cold, checkout", "memory, checkout", "cold, ncp zip", "cold, sam build"]
    if sys.version_info[:2] == (3, 13):  # the artifacts start only on the runtime they are built for
        figures += ["memory, ncp zip", "memory, sam build"]
    else:
        assert "not applicable: the artifacts are built for Python 3.13 only" in done.stdout
    for figure in figures:
        assert f"  {figure} " in done.stdout
    assert "not measured" not in done.stdout
    # A smoke run's timings judge nothing, so a CI log shows no time target met or missed by them;
    # a peak memory needs no repetitions, and is judged.
    lines = done.stdout.splitlines()
    assert [line for line in lines if "not judged" in line and not line.startswith("  memory")] != []
    assert [line for line in lines if line.startswith("  memory")] == [
        line for line in lines if line.startswith("  memory") and "target <= 1.10x met" in line
    ]
    assert "size, ncp zip" in done.stdout and "size, sam build" in done.stdout


def test_a_passing_bench_smoke_prints_one_calm_line_and_a_missed_memory_target_prints_the_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `make test` runs the smoke: its few calls judge no time, so their noise ("-94 us", "not judged") is
    # not shown unless asked; a peak memory over its target still shows, with every figure, and fails.
    warm = Figure("warm overhead", "lambda_handler 700 us / bare POST 744 us; Session machinery: -94 us", 0.94, 1.15)
    memory = Figure("memory, checkout", "peak RSS 30.7 MB / reference 29.7 MB", 1.04, 1.10, timed=False)
    assert smoke_report([warm, memory], table=False) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert line.startswith("bench smoke on Python ") and "every part ran (2 figures" in line
    heavy = Figure("memory, checkout", "peak RSS 40.0 MB / reference 29.7 MB", 1.35, 1.10, timed=False)
    assert smoke_report([warm, heavy], table=False) == 1
    out = capsys.readouterr().out
    assert "target <= 1.10x MISSED" in out and "not judged" in out
    assert out.splitlines()[-1].endswith("MISSED its target: memory, checkout")
    # What `make bench-smoke` prints when every part runs: that one line.
    done = subprocess.run(
        [sys.executable, "-m", "bench.submit", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    assert "every part ran" in line


def test_probe_notices_a_module_compiled_from_source(artifacts: Artifacts, api: Emulator, tmp_path: Path) -> None:
    # The probe itself must be able to fail: drop one module's bytecode and it must be reported.
    copy = tmp_path / "lambda"
    shutil.copytree(artifacts.lambda_root, copy)
    cached = importlib.util.cache_from_source(str(copy / "handler" / "routes.py"))
    Path(cached.replace(sys.implementation.cache_tag, "cpython-313")).unlink()
    report = run_probe(artifacts, "lambda", copy, api, [event("s3-put.json")])
    assert report["compiled"] == [os.path.join("handler", "routes.py")]


def test_sam_build_copies_nothing_of_the_checkout_but_a_makefile() -> None:
    # sam build copies CodeUri whole (less .git and .aws-sam) before it runs make: a checkout after
    # `make test` holds some 700 MB of virtual environments, which made every build slower.
    assert sorted(path.name for path in (ROOT / code_uri()).iterdir()) == ["Makefile"]


@pytest.mark.parametrize("kind", ["ncp", "lambda"])
def test_a_routes_file_of_the_users_own_repository_ships_in_both_artifacts(
    artifacts: Artifacts, api: Emulator, kind: str
) -> None:
    root = artifacts.ncp_root if kind == "ncp" else artifacts.lambda_root
    assert json.loads((root / "handler" / "routes.json").read_text())[0]["name"] == "mine"
    report = run_probe(artifacts, kind, root, api, [{"schedule": "any"}], DATAFLOW_ROUTES="@routes.json")
    results = report["results"]
    assert isinstance(results, list)
    assert results[0]["submitted"][0]["route"] == "mine"


def test_both_builds_refuse_a_routes_file_that_validate_refuses(tmp_path: Path) -> None:
    # A route matching a schedule expression instead of its name: `validate` refuses it, so must the builds,
    # before the error first shows in the cloud.
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps([{"name": "r", "match": {"schedule": "cron(0 1 * * ? *)"}, "jobId": "Job1"}]))
    validated = cli("validate", env={"DATAFLOW_ROUTES": f"@{routes}", "DATAFLOW_DRY_RUN": "true"})
    assert validated.returncode == 2
    problems = [line for line in validated.stdout.splitlines() + validated.stderr.splitlines() if line.startswith("- ")]
    assert problems and "DATAFLOW_ROUTES[r].match.schedule" in problems[0]
    make = shutil.which("make")
    assert make is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))} | {"ROUTES_FILE": str(routes)}
    ncp = [make, "-s", "package-ncp", f"DIST={tmp_path / 'dist'}"]
    lambda_ = [make, "--makefile", str(ROOT / code_uri() / "Makefile"), "build-LauncherFunction"]
    for command in (ncp, [*lambda_, f"ARTIFACTS_DIR={tmp_path / 'lambda'}"]):
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=240)
        assert done.returncode != 0, done.stdout
        assert all(problem in done.stderr for problem in problems), done.stderr
    assert not (tmp_path / "dist" / "ncp-action.zip").exists()


def test_a_passing_package_ncp_says_what_it_wrote_and_nothing_else(artifacts: Artifacts) -> None:
    # No echoed commands, no pip warnings about this machine, no raw log records of the smoke test.
    starts = ("routes: ", f"{artifacts.ncp_zip.parent / 'ncp-build'}: ", "wrote ", "smoke test of the zip passed on ")
    lines = artifacts.ncp_output.splitlines()
    assert [line for line in lines if not line.startswith(starts)] == []
    assert [line.split(" ", 1)[0] for line in lines] == [
        "routes:",
        f"{artifacts.ncp_zip.parent}/ncp-build:",
        "wrote",
        "smoke",
    ]
