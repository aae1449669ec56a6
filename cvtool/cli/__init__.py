"""The ``cvtool`` command-line interface (Typer).  Commands only parse and call the core."""
