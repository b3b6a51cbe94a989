"""One way to print: rich on a terminal, JSON under `--output json`.

Commands hand their events and results to an Output and never call print or
click.echo themselves, so `--output json` is JSON for every line a command
writes, errors included (see main.py).
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, Callable, Iterable, Iterator

import click

from roadie.events import Event


class Output:
    def __init__(self, json_mode: bool = False, stream=None, err_stream=None):
        self.json = json_mode
        self._out = stream
        self._err = err_stream
        self.listeners: list[Callable[[Event], None]] = []

    # -- streams ---------------------------------------------------------
    def _write(self, text: str, err: bool = False) -> None:
        click.echo(text, file=(self._err if err else self._out) or (sys.stderr if err else sys.stdout))

    # -- what commands call ----------------------------------------------
    def emit(self, ev: Event) -> None:
        """An event: a JSON line on stdout, or a line of progress on stderr."""
        for listener in self.listeners:
            listener(ev)
        if self.json:
            self._write(json.dumps(ev.as_dict(), default=str))
        else:
            self._write(ev.sentence(), err=True)

    def info(self, text: str) -> None:
        """A note for a person; nothing under --output json."""
        if not self.json:
            self._write(text, err=True)

    def result(self, doc: Any, text: str | Callable[[], str] | None = None) -> None:
        """The command's answer: a JSON document, or text for a person."""
        if self.json:
            self._write(json.dumps(doc, default=str))
        elif text is not None:
            self._write(text() if callable(text) else text)

    def table(self, columns: Iterable[str], rows: Iterable[Iterable[Any]], title: str | None = None) -> None:
        """A table for a person (no-op under --output json: give the data to result())."""
        if self.json:
            return
        from rich.console import Console
        from rich.table import Table

        t = Table(*columns, title=title, box=None)
        for row in rows:
            t.add_row(*("" if v is None else str(v) for v in row))
        Console(file=self._out or sys.stdout).print(t)

    def line(self, text: str) -> None:
        """A line of the command's text answer on stdout (a tool's own output passed through); nothing under json."""
        if not self.json:
            self._write(text)

    def log(self, text: str) -> None:
        """Alias of info(), for engines that take a `log(str)` callable (the fleet, release install)."""
        self.info(text)

    def styled(self, text: str, style: str | None = None) -> None:
        """A line of progress for a person (rich markup style such as "dim" or "red"); nothing under json."""
        if self.json:
            return
        stream = self._err or sys.stderr
        if style and _is_terminal(stream):
            from rich.console import Console

            Console(file=stream, highlight=False).print(text, style=style, markup=False)
        else:
            self._write(text, err=True)

    @contextlib.contextmanager
    def progress(self, text: str) -> Iterator[None]:
        """Live progress for long work: a spinner on a terminal (info lines scroll above it);
        nothing elsewhere (CI logs get the info lines alone) and nothing under json."""
        stream = self._err or sys.stderr
        if self.json or not _is_terminal(stream):
            yield
            return
        from rich.console import Console

        with Console(file=stream).status(text):
            yield

    @contextlib.contextmanager
    def live(self, view) -> Iterator[None]:
        """A live picture (a rich renderable with `apply(event)`) fed by every event while the block runs;
        on a terminal only: elsewhere the event lines say the same, one per line."""
        stream = self._err or sys.stderr
        if self.json or not _is_terminal(stream):
            yield
            return
        from rich.console import Console
        from rich.live import Live

        self.listeners.append(view.apply)
        try:
            with Live(view, console=Console(file=stream), refresh_per_second=4):
                yield
        finally:
            self.listeners.remove(view.apply)

    def error(self, message: str, exit_code: int) -> None:
        if self.json:
            self._write(json.dumps({"event": "error", "error": message, "exit_code": exit_code}))
        else:
            self._write(f"Error: {message}", err=True)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def of(ctx: click.Context) -> Output:
    """The Output of the running command (made once, from --output)."""
    root = ctx.find_root()
    if getattr(root.obj, "out", None) is None or root.obj.out.json != root.obj.json:
        root.obj.out = Output(json_mode=root.obj.json)
    return root.obj.out
