"""The Docker set-up, as far as it can be checked without a Docker engine: the build context the
Dockerfile and .dockerignore make holds every package pyproject.toml lists and builds a wheel in a
clean virtual environment; docker-compose.yml serves the HTTP service on a published port."""
from __future__ import annotations

import fnmatch
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _copies() -> list[str]:
    """The sources of the Dockerfile's COPY instructions."""
    out = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0].upper() == "COPY":
            out += [w for w in words[1:-1] if not w.startswith("--")]
    return out


def _matches(rel: str, pattern: str) -> bool:
    """A .dockerignore pattern matches a path, or a directory holding it ('**/' at any depth)."""
    if pattern.startswith("**/"):
        return any(fnmatch.fnmatch(part, pattern[3:]) for part in Path(rel).parts)
    return fnmatch.fnmatch(rel, pattern) or rel.startswith(pattern + "/")


def _ignored(rel: str, patterns: list[str]) -> bool:
    """.dockerignore's rule: the last matching pattern wins; '!' re-includes."""
    ignored = False
    for p in patterns:
        neg = p.startswith("!")
        if _matches(rel, (p[1:] if neg else p).rstrip("/")):
            ignored = not neg
    return ignored


def _context(tmp: Path) -> Path:
    """The build context as Docker sends it, reduced to what the Dockerfile copies."""
    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.lstrip().startswith("#")]
    ctx = tmp / "context"
    for src in _copies():
        base = ROOT / src
        files = [base] if base.is_file() else [p for p in base.rglob("*") if p.is_file()]
        for f in files:
            rel = f.relative_to(ROOT).as_posix()
            if _ignored(rel, patterns):
                continue
            (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, ctx / rel)
    return ctx


def test_the_context_holds_every_package_and_no_local_environment():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = {meta.get("package-dir", {}).get(p, p.replace(".", "/")).split("/")[0] for p in meta["packages"]}
    copied = {c.rstrip("/") for c in _copies()}
    assert dirs <= copied, f"packages not copied into the image: {sorted(dirs - copied)}"
    assert {"pyproject.toml", "README.md"} <= copied
    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines() if ln.strip()]
    for local in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "astrodb/__pycache__/x.pyc"):
        assert _ignored(local, patterns), local
    for needed in ("astrodb/store/store.py", "aligner/align.py", "migrations/env.py", "pyproject.toml"):
        assert not _ignored(needed, patterns), needed


@pytest.mark.slow
def test_the_context_builds_a_wheel_in_a_clean_venv(tmp_path):
    ctx = _context(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    out = tmp_path / "wheels"
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "wheel", "--no-deps", "-q",
                        "--disable-pip-version-check", "-w", str(out), str(ctx)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    wheel = next(out.glob("astrodb-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("astrodb/store/store.py", "aligner/align.py", "astrodb/_migrations/env.py",
                   "astrodb/service/app.py", "astrodb/_migrations/versions/0002_sql_functions.sql",
                   "astrodb/_migrations/versions/0008_input_checks.downgrade.sql",
                   "astrodb/service/templates/run.html", "astrodb/service/static/astrodb.css"):  # the web pages
        assert module in names, module
    for init in sorted([*ROOT.glob("astrodb/**/__init__.py"), *ROOT.glob("aligner/**/__init__.py")]):
        assert str(init.relative_to(ROOT)) in names, f"package {init.parent.name} is not in the wheel (pyproject.toml)"


def test_compose_serves_the_http_service_on_a_published_port():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    serve = compose["services"]["serve"]
    cmd = serve["command"]
    assert cmd[0] == "serve" and cmd[cmd.index("--host") + 1] == "0.0.0.0"
    port = cmd[cmd.index("--port") + 1]
    assert any(str(p).rsplit(":", 1)[-1] == port for p in serve["ports"]), serve["ports"]
    assert "ASTRODB_URL" in serve["environment"] and serve["build"] == "."
    assert f"EXPOSE {port}" in (ROOT / "Dockerfile").read_text()
