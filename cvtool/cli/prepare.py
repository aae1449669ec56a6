"""`cvtool prepare`: build and convert datasets (one module per subcommand)."""

from __future__ import annotations

import typer

from cvtool.cli import (prepare_augment, prepare_convert, prepare_detection, prepare_localization,
                        prepare_stats, prepare_windows)

app = typer.Typer(
    help="Build datasets: synthetic localisation/detection scenes, augmentation, "
    "HOG+SVM windows, statistics and format conversion (COCO, YOLO, VOC).",
    no_args_is_help=True,
    rich_markup_mode=None,
)

app.command("localization", epilog=prepare_localization.EPILOG)(prepare_localization.localization_command)
app.command("detection", epilog=prepare_detection.EPILOG)(prepare_detection.detection_command)
app.command("augment", epilog=prepare_augment.EPILOG)(prepare_augment.augment_command)
app.command("windows", epilog=prepare_windows.EPILOG)(prepare_windows.windows_command)
app.command("stats", epilog=prepare_stats.EPILOG)(prepare_stats.stats_command)
app.command("convert", epilog=prepare_convert.EPILOG)(prepare_convert.convert_command)
