"""Rendering helpers shared by the commands: one-line errors and rich progress bars."""

from __future__ import annotations

import contextlib
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from robusteval.errors import DataWarning, UserError

console = Console()
err_console = Console(stderr=True)

_show_warning = warnings.showwarning


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Data warnings (skipped garbage lines, repaired inputs) print as one ``warning:`` line."""
    if issubclass(category, DataWarning):
        err_console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
    else:
        _show_warning(message, category, filename, lineno, file, line)


warnings.showwarning = _one_line_warning


def split_names(values: list[str] | None) -> list[str]:
    """Repeated options and comma/space separated lists alike: ``-m a,b -m c`` → [a, b, c]."""
    return [n for v in values or [] for n in re.split(r"[,\s]+", v) if n]


def spread_list_options(args: list[str], list_opts: set[str]) -> list[str]:
    """``--models a b --run x`` → ``--models a --models b --run x`` for the options in ``list_opts``.

    Click gives a repeatable option one value per occurrence; users type lists the way the README
    shows them, space separated. Words after such an option's value, up to the next word starting
    with "-", become further values of it. Only for commands without positional arguments, where
    those words could mean nothing else; ``--`` ends the rewriting.
    """
    out: list[str] = []
    current: str | None = None  # the list option whose values are being read
    expect_value = False
    for i, tok in enumerate(args):
        if tok == "--":
            return out + args[i:]
        if tok.startswith("-") and len(tok) > 1:
            name, inline, _ = tok.partition("=")
            current = name if name in list_opts else None
            expect_value = current is not None and not inline
            out.append(tok)
        elif current is not None and not expect_value:
            out += [current, tok]
        else:
            expect_value = False
            out.append(tok)
    return out


class ListOptionsCommand(typer.core.TyperCommand):
    """A command whose repeatable options also take space-separated lists (:func:`spread_list_options`)."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:  # type: ignore[override]
        # Typer vendors its own click, so parameters are matched by kind, not by class.
        list_opts = {
            name
            for param in self.get_params(ctx)
            if param.param_type_name == "option" and getattr(param, "multiple", False)
            for name in param.opts
        }
        return super().parse_args(ctx, spread_list_options(args, list_opts))


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn a :class:`UserError` into one red line on stderr and exit code 2 (no traceback)."""
    try:
        yield
    except UserError as err:
        err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


class RateColumn(TextColumn):
    """Items per second, labelled with the unit (e.g. ``img/s``)."""

    def __init__(self, unit: str = "img") -> None:
        super().__init__("")
        self.unit = unit

    def render(self, task):  # type: ignore[override]
        speed = task.finished_speed or task.speed
        from rich.text import Text

        return Text(f"{speed:,.1f} {self.unit}/s" if speed else f"-- {self.unit}/s", style="cyan")


#: Seconds between plain progress lines when stderr is not a terminal (nohup, CI, ``2> log``).
PLAIN_EVERY_S = 10.0


@contextlib.contextmanager
def progress_bar(
    description: str, total: int | None, *, unit: str = "img", every_s: float | None = None
) -> Iterator[Callable[[int], None]]:
    """A rich bar with count, rate, elapsed and ETA; yields ``advance(n)``.

    When stderr is not a terminal, plain lines instead (``score r: 640/1300 img (49%), 31.2 img/s,
    eta 21 s``) every ``every_s`` seconds (default :data:`PLAIN_EVERY_S`) and once at the end.
    """
    if not err_console.is_terminal:
        with _plain_progress(description, total, unit=unit, every_s=every_s or PLAIN_EVERY_S) as advance:
            yield advance
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(unit),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as prog:
        task = prog.add_task(escape(description), total=total)

        def advance(n: int = 1) -> None:
            prog.advance(task, n)

        yield advance


def plain_progress_line(description: str, done: int, total: int | None, *, unit: str, seconds: float) -> str:
    """``desc: done/total unit (pct), rate unit/s, eta N s`` (the parts that are known)."""
    rate = done / seconds if seconds > 0 else 0.0
    parts = [f"{description}: {done}/{total} {unit}" if total else f"{description}: {done} {unit}"]
    if total:
        parts[0] += f" ({100 * done / total:.0f}%)"
    parts.append(f"{rate:.1f} {unit}/s")
    if total and rate > 0:
        parts.append(f"eta {max(0.0, (total - done) / rate):.0f} s")
    return ", ".join(parts)


@contextlib.contextmanager
def _plain_progress(description: str, total: int | None, *, unit: str, every_s: float):
    t0 = last = time.monotonic()
    done = [0]

    def emit() -> None:
        line = plain_progress_line(description, done[0], total, unit=unit, seconds=time.monotonic() - t0)
        print(line, file=sys.stderr, flush=True)

    def advance(n: int = 1) -> None:
        nonlocal last
        done[0] += n
        now = time.monotonic()
        if now - last >= every_s:
            last = now
            emit()

    try:
        yield advance
    finally:
        emit()
