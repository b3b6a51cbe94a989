"""Output: one way to print, and procs.run: one way to run a process and fail with its last line."""

from __future__ import annotations

import io
import json
import sys

import pytest

from roadie import procs
from roadie.errors import BadInput, OperationFailed
from roadie.events import event
from roadie.output import Output


def capture(json_mode: bool):
    out, err = io.StringIO(), io.StringIO()
    return Output(json_mode=json_mode, stream=out, err_stream=err), out, err


@pytest.mark.parametrize("call, json_out, text_out, text_err", [
    (lambda o: o.result({"a": 1}, "one"), '{"a": 1}\n', "one\n", ""),
    (lambda o: o.result({"a": 1}, lambda: "lazy"), '{"a": 1}\n', "lazy\n", ""),
    (lambda o: o.result({"a": 1}), '{"a": 1}\n', "", ""),
    (lambda o: o.info("note"), "", "", "note\n"),
    (lambda o: o.log("note"), "", "", "note\n"),
    (lambda o: o.line("pulumi says"), "", "pulumi says\n", ""),
    (lambda o: o.styled("dim", "dim"), "", "", "dim\n"),
    (lambda o: o.error("bad --hosts", 2), '{"event": "error", "error": "bad --hosts", "exit_code": 2}\n', "",
     "Error: bad --hosts\n"),
    (lambda o: o.table(["host", "state"], [["db-1", "running"]]), "", "host  state\ndb-1  running", ""),
])
def test_each_call_as_json_and_as_text(call, json_out, text_out, text_err):
    o, out, err = capture(True)
    call(o)
    assert (out.getvalue(), err.getvalue()) == (json_out, "")
    o, out, err = capture(False)
    call(o)
    shown = "\n".join(line.strip() for line in out.getvalue().strip("\n").splitlines())
    assert (shown, err.getvalue()) == (text_out.strip("\n"), text_err)


def test_events_are_json_lines_or_sentences_and_reach_listeners():
    heard = []
    o, out, err = capture(True)
    o.listeners.append(heard.append)
    o.emit(event("deploy.host.done", host="catalog-1", to="1.2.0"))
    line = json.loads(out.getvalue())
    assert line["event"] == "deploy.host.done" and line["host"] == "catalog-1" and "ts" in line
    assert [e.kind for e in heard] == ["deploy.host.done"]
    o, out, err = capture(False)
    o.emit(event("deploy.host.done", "catalog-1 is on 1.2.0", host="catalog-1"))
    assert (out.getvalue(), err.getvalue()) == ("", "catalog-1 is on 1.2.0\n")


def test_progress_prints_nothing_off_a_terminal():
    for json_mode in (True, False):
        o, out, err = capture(json_mode)
        with o.progress("working…"):
            pass
        assert out.getvalue() == err.getvalue() == ""


@pytest.mark.parametrize("script, error, message", [
    ("print('fine')", None, None),
    ("import sys; sys.stderr.write('warming up\\nerror: disk full\\n\\n'); sys.exit(3)", OperationFailed,
     "`x` failed: error: disk full"),
    ("import sys; print('only stdout'); sys.exit(1)", OperationFailed, "`x` failed: only stdout"),
    ("import sys; sys.exit(4)", BadInput, "`x` failed: exit 4"),
])
def test_run_raises_the_last_line(script, error, message):
    argv = [sys.executable, "-c", script]
    if error is None:
        assert procs.run(argv).stdout == "fine\n"
        return
    with pytest.raises(error) as caught:
        procs.run(argv, "`x`", error=error)
    assert caught.value.message == message


def test_run_of_a_missing_program_is_one_line():
    with pytest.raises(OperationFailed, match="cannot run no-such-program-here"):
        procs.run(["no-such-program-here"])


@pytest.mark.parametrize("text, expected", [("a\nb\n\n  \n", "b"), ("", "no output"), (None, "no output"),
                                            ("  x  ", "x")])
def test_last_line(text, expected):
    assert procs.last_line(text) == expected
