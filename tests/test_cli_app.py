"""The app as a whole: version, help on every command, man pages, start-up cost, README/CI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cvtool import __version__

REPO = Path(__file__).resolve().parent.parent


def _leaf_commands():
    import typer

    from cvtool.cli.app import app

    root = typer.main.get_command(app)
    out = []

    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, path + [name])
        else:
            out.append(path)

    walk(root, [])
    return out


def test_version(cli):
    res = cli(["--version"])
    assert res.exit_code == 0 and res.stdout.strip() == f"cvtool {__version__}"


@pytest.mark.parametrize("path", _leaf_commands(), ids=lambda p: " ".join(p))
def test_every_command_has_help_with_examples(cli, path):
    res = cli(path + ["--help"])
    assert res.exit_code == 0, res.output
    assert "Examples" in res.stdout
    assert f"cvtool {' '.join(path)}" in res.stdout


def test_unknown_command_is_usage_error(cli):
    res = cli(["no-such-command"])
    assert res.exit_code == 2


def test_man_pages_are_current():
    from cvtool.cli.manpages import stale_pages

    stale = stale_pages(REPO / "man")
    assert stale == [], f"regenerate with: python -m cvtool.cli.manpages man/  (stale: {stale})"


def test_cli_import_loads_no_heavy_library():
    code = ("import sys, cvtool.cli.app; "
            "print(','.join(m for m in ('torch','sklearn','skimage','cv2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_help_runs_as_module_and_honours_no_color():
    env = dict(os.environ, NO_COLOR="1", TERM="xterm-256color")
    out = subprocess.run([sys.executable, "-m", "cvtool", "--help"], capture_output=True, text=True,
                         env=env, check=True)
    assert "Usage" in out.stdout and "\x1b[" not in out.stdout


def test_ci_runs_exactly_the_readme_test_command():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    assert len(blocks) >= 2
    main_job, test_cmd = blocks[0].strip(), blocks[1].strip()
    assert "pytest" in test_cmd and "samples" in main_job
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert test_cmd in ci.splitlines()
