"""Every command has help text, is documented in the README, and `restore --help` stays light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer.main

from restorecli.cli.app import app

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_command_has_help_and_a_readme_example() -> None:
    group = typer.main.get_command(app)
    assert set(group.commands) >= {
        "derain",
        "deblur",
        "denoise",
        "models",
        "eval",
        "split",
        "crop-patches",
        "profile",
        "degrade",
        "train",
    }
    for name, command in group.commands.items():
        assert command.help, f"restore {name} has no help text"
        assert f"restore {name}" in README, f"restore {name} is not in README.md"
        for parameter in command.params:
            if isinstance(parameter, typer.core.TyperOption) and parameter.name != "help":
                assert parameter.help, f"restore {name} {parameter.opts[0]} has no help text"


def test_help_does_not_import_torch() -> None:
    code = "import sys; from restorecli.cli.app import app; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_models_refuses_a_task_it_does_not_have() -> None:
    import json

    from typer.testing import CliRunner

    runner = CliRunner()
    result = runner.invoke(app, ["models", "--task", "deraining"])
    assert result.exit_code == 1 and "Expected --task among" in result.stderr and "derain" in result.stderr
    listed = json.loads(runner.invoke(app, ["models", "--task", "derain", "--json"]).stdout)
    assert listed and {row["task"] for row in listed} == {"derain"}
