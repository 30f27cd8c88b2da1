"""Runtime and development dependencies are split: the production image gets no test tool."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEV_TOOLS = {"pytest", "pytest-timeout", "ruff", "mypy", "moto", "rasterstats", "exactextract",
             "schemathesis", "playwright", "hypothesis"}


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            pkg, version = line.split("==", 1)
            pins[pkg.strip().lower().split("[")[0]] = version.split()[0]
    return pins


def test_runtime_requirements_hold_no_test_tool() -> None:
    assert not DEV_TOOLS & set(_pins("requirements.txt"))


def test_dev_requirements_pin_the_tools_and_agree_with_runtime() -> None:
    runtime, dev = _pins("requirements.txt"), _pins("requirements-dev.txt")
    assert {"pytest", "ruff", "mypy", "moto", "playwright"} <= set(dev)
    assert {k: v for k, v in dev.items() if k in runtime and runtime[k] != v} == {}


def test_dockerfile_installs_runtime_only() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "requirements.txt" in text and "requirements-dev" not in text
