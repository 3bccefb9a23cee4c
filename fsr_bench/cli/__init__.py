"""The ``fsr-bench`` command line: one module per subcommand, heavy imports inside the commands.

Precedence everywhere: command-line options > protocol YAML > built-in defaults.
"""
from __future__ import annotations

import os
import sys
from typing import Optional

import typer

from fsr_bench.cli import (
    export_cmd,
    leaderboard_cmd,
    list_cmd,
    report_cmd,
    run_cmd,
    split_cmd,
    sr_cmd,
    train_cmd,
    weights_cmd,
)

app = typer.Typer(
    name="fsr-bench",
    help="Face super-resolution benchmark: reconstruction fidelity and surveillance recognisability.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
PIPED_HELP_WIDTH = 160  # rich falls back to 80 columns without a terminal: help piped to less/grep/a file was cut


def _version(value: bool) -> None:
    if value:
        from fsr_bench import __version__
        from fsr_bench.provenance import git_state

        commit = git_state().get("commit")
        typer.echo(f"fsr-bench {__version__}" + (f" (git {commit[:12]})" if commit else ""))
        raise typer.Exit()


@app.callback()
def _root(version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True,
                                                 help="print the version (and git commit of a checkout) and exit")) -> None:
    """Face super-resolution benchmark: reconstruction fidelity and surveillance recognisability."""


app.add_typer(list_cmd.app, name="list")
app.command("sr")(sr_cmd.sr)
app.command("run")(run_cmd.run)
app.command("report")(report_cmd.report)
app.command("train")(train_cmd.train)
app.command("split")(split_cmd.split)
app.command("leaderboard")(leaderboard_cmd.leaderboard)
app.command("export")(export_cmd.export)
app.add_typer(weights_cmd.app, name="weights")


def main() -> None:
    if not sys.stdout.isatty() and not os.environ.get("COLUMNS"):  # read when typer first imports rich
        os.environ.setdefault("TERMINAL_WIDTH", str(PIPED_HELP_WIDTH))
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
