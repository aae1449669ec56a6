"""Generate ``man/`` pages (roff) from the Typer app, so they never drift from ``--help``.

Usage::

    python -m cvtool.cli.manpages man/        # (re)write the pages
    python -m cvtool.cli.manpages --check man/  # exit 1 when a page is stale

The test suite runs the check.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cvtool import __version__

_DATE = "cvtool " + __version__


def _esc(text: str) -> str:
    """Escape text for roff: backslashes, leading dots/quotes, dashes."""
    out = []
    for line in text.replace("\\", "\\e").splitlines():
        if line.startswith((".", "'")):
            line = "\\&" + line
        out.append(line.replace("-", "\\-"))
    return "\n".join(out)


def _clean(text: str | None) -> str:
    if not text:
        return ""
    lines = [ln.rstrip() for ln in text.strip().splitlines()]
    return "\n".join(ln for ln in lines if ln.strip() != "\b")


def _is_group(cmd) -> bool:
    return hasattr(cmd, "commands")


def _walk(cmd, path: list[str]):
    yield path, cmd
    if _is_group(cmd):
        for name in sorted(cmd.commands):
            yield from _walk(cmd.commands[name], path + [name])


def _param_line(p, ctx=None) -> tuple[str, str]:
    """(names, help) of one parameter, as ``--help`` shows them when the parameter can say."""
    if ctx is not None and p.param_type_name == "option":
        record = p.get_help_record(ctx)
        if record is not None:
            return record[0], " ".join(record[1].split())
    if p.param_type_name == "argument":
        name = (p.metavar or p.name or "ARG").upper()
        return name + ("..." if p.nargs == -1 else ""), getattr(p, "help", "") or ""
    names = ", ".join(p.opts + p.secondary_opts)
    if not p.is_flag and not p.count:
        ptype = getattr(p, "type", None)
        metavar = p.metavar or (getattr(ptype, "name", "value").upper() if ptype else "VALUE")
        if hasattr(ptype, "choices"):
            metavar = "[" + "|".join(str(c) for c in ptype.choices) + "]"
        names += f" {metavar}"
    help_text = p.help or ""
    if p.show_default is not False and p.default not in (None, False, "", ()) and not p.is_flag:
        default = p.default
        if isinstance(default, (list, tuple)):
            default = ", ".join(map(str, default))
        help_text += f" [default: {getattr(default, 'value', default)}]"
    return names, help_text


def render_page(path: list[str], cmd) -> str:
    """Return the roff text of one command's page."""
    title = "-".join(path).upper()
    full = " ".join(path)
    lines = [
        f'.TH "{title}" "1" "" "{_DATE}" "cvtool manual"',
        ".SH NAME",
        f"{_esc(full)} \\- {_esc(_clean(cmd.short_help or (cmd.help or '').split(chr(10))[0]))}",
        ".SH SYNOPSIS",
        f".B {_esc(full)}",
    ]
    pieces = ["[OPTIONS]"]
    for p in cmd.params:
        if p.param_type_name == "argument":
            pieces.append(_param_line(p)[0])
    if _is_group(cmd):
        pieces.append("COMMAND [ARGS]...")
    lines.append(_esc(" ".join(pieces)))
    if cmd.help:
        lines += [".SH DESCRIPTION", _esc(_clean(cmd.help))]
    params = [p for p in cmd.params if not getattr(p, "hidden", False)
              and p.name not in ("install_completion", "show_completion")]
    from typer._click import Context

    ctx = Context(cmd, info_name=full)
    if params:
        lines.append(".SH OPTIONS")
        for p in params:
            names, help_text = _param_line(p, ctx)
            lines += [".TP", f"\\fB{_esc(names)}\\fR", _esc(_clean(help_text)) or "\\&"]
    if _is_group(cmd):
        lines.append(".SH COMMANDS")
        for name in sorted(cmd.commands):
            sub = cmd.commands[name]
            lines += [".TP", f"\\fB{_esc(name)}\\fR",
                      _esc(_clean(sub.short_help or (sub.help or "").split("\n")[0])) or "\\&"]
    if cmd.epilog:
        lines += [".SH EXAMPLES", ".nf", _esc(_clean(cmd.epilog)), ".fi"]
    if path != ["cvtool"]:
        lines += [".SH SEE ALSO", "\\fBcvtool\\fR(1)"]
    return "\n".join(lines) + "\n"


def render_all() -> dict[str, str]:
    """Every page of the app: ``{'cvtool-filter.1': text, ...}``."""
    import typer

    from cvtool.cli.app import app

    root = typer.main.get_command(app)
    return {"-".join(path) + ".1": render_page(path, cmd) for path, cmd in _walk(root, ["cvtool"])}


def stale_pages(folder: Path) -> list[str]:
    """Names of pages in ``folder`` that differ from the app (or are missing / extra)."""
    pages = render_all()
    stale = [name for name, text in pages.items()
             if not (folder / name).is_file() or (folder / name).read_text(encoding="utf-8") != text]
    stale += [p.name for p in folder.glob("*.1") if p.name not in pages]
    return sorted(stale)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    folder = Path(args[0] if args else "man")
    if check:
        stale = stale_pages(folder)
        for name in stale:
            print(f"stale man page: {folder / name}", file=sys.stderr)
        return 1 if stale else 0
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.1"):
        old.unlink()
    for name, text in render_all().items():
        (folder / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(list(folder.glob('*.1')))} pages to {folder}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
