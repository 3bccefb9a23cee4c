"""The ``fsr-bench`` command line: one module per subcommand, heavy imports inside the commands.

Precedence everywhere: command-line options > protocol YAML > built-in defaults.
"""
from __future__ import annotations

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
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
