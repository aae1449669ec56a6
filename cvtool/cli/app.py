"""The ``cvtool`` Typer application: one module per command group."""

from __future__ import annotations

from typing import Annotated

import typer

from cvtool import __version__
from cvtool.cli import detect, edges, eval as eval_cmd, filter as filter_cmd, hog, prepare
from cvtool.cli import selective_search, train
from cvtool.cli.common import CvtoolGroup, examples

app = typer.Typer(
    name="cvtool",
    cls=CvtoolGroup,
    help="Classical and deep vision pipelines from the shell: prepare data, filter, find edges, "
    "compute HOG, propose regions, train and run detectors, evaluate.",
    epilog=examples(
        "cvtool filter photos/ --out smooth/ gaussian:sigma=1.5 equalize",
        "cvtool edges photos/ --out edges/ canny",
        "cvtool prepare detection --out data/digits --seed 0",
        "cvtool train single-shot --data data/digits --out runs/ss",
        "cvtool detect data/digits/test/images --model runs/ss --out dets/",
        "cvtool eval --gt data/digits/test/annotations.json --pred dets/detections.json",
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode=None,  # plain click help: readable at 80 columns, '[...]' in help text is not markup
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cvtool {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Classical and deep vision pipelines from the shell."""


app.command("filter", epilog=filter_cmd.EPILOG)(filter_cmd.filter_command)
app.command("edges", epilog=edges.EPILOG)(edges.edges_command)
app.command("hog", epilog=hog.EPILOG)(hog.hog_command)
app.command("selective-search", epilog=selective_search.EPILOG)(selective_search.selective_search_command)
app.add_typer(prepare.app, name="prepare")
app.add_typer(train.app, name="train")
app.command("detect", epilog=detect.EPILOG)(detect.detect_command)
app.command("eval", epilog=eval_cmd.EPILOG)(eval_cmd.eval_command)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="cvtool")
