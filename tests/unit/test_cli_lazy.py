"""The command line is lazy: ``--help`` imports no heavy module, each command only its own."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cbmflow import cli

HEAVY = ("numpy", "pandas", "psycopg", "rasterio", "sklearn", "geopandas")


def _imported_after(argv: list[str]) -> set[str]:
    code = (
        "import sys\n"
        "from cbmflow import cli\n"
        "try:\n"
        f"    cli.main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('LOADED=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("LOADED="))
    return {m for m in line.removeprefix("LOADED=").split(",") if m}


def test_help_imports_no_heavy_module() -> None:
    assert _imported_after(["--help"]) == set()


def test_a_command_imports_its_own_module_only() -> None:
    # `features --help` needs the WorldCereal reader's module, not the extraction engine
    loaded = _imported_after(["features", "--help"])
    assert "rasterio" not in loaded


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_listed_command_is_registered_by_its_module(command: str) -> None:
    parser = cli.build_parser(command)
    sub = next(a for a in parser._actions if a.dest == "command")
    # the module's own parser replaces the placeholder: it has a -h/--help action of its own
    assert any("-h" in a.option_strings for a in sub.choices[command]._actions), command


def test_full_parser_has_exactly_the_listed_commands() -> None:
    parser = cli.build_parser("*")
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(cli.COMMANDS) | {"db"}
