"""tests/_cli.py runs an entry point as a fresh `python -m` would: these check that it does, against a
plain subprocess, so that the suite's commands mean what they say."""

import json
import os
import subprocess
import time

import pytest
from _cli import run_module, run_plain
from test_fit import fit_env, processes_with


def both(tmp_path, *args, env=None, timeout=120):
    env = {**fit_env(tmp_path), **(env or {})}
    forked = run_module("_cli_probe", list(args), cwd=tmp_path, env=env, timeout=timeout)
    return forked, run_plain("_cli_probe", list(args), cwd=tmp_path, env=env, timeout=timeout)


def test_a_forked_command_sees_its_own_argv_folder_environment_and_empty_stdin(tmp_path):
    forked, plain = both(tmp_path, "report", "x y", env={"PROBE": "seen"})
    assert forked.returncode == plain.returncode == 0, (forked.stderr, plain.stderr)
    got, want = json.loads(forked.stdout), json.loads(plain.stdout)
    assert got["pid"] != want["pid"] and got["pid"] != os.getpid()
    for key in ("cwd", "probe", "stdin", "name", "threads", "sum"):
        assert got[key] == want[key], key
    assert got["argv"][1:] == want["argv"][1:] == ["report", "x y"]
    assert forked.stderr == plain.stderr == "atexit ran\n"  # nothing else on stderr, atexit handlers run


@pytest.mark.parametrize("action", ["exit3", "message", "raise"])
def test_exit_codes_and_error_output_are_a_plain_processes(tmp_path, action):
    forked, plain = both(tmp_path, action)
    assert forked.returncode == plain.returncode != 0
    assert forked.stdout == plain.stdout == ""
    if action == "raise":
        assert "Traceback" in forked.stderr and forked.stderr.strip().endswith("RuntimeError: probe crashed")
    else:
        assert forked.stderr == plain.stderr


def test_a_command_past_its_timeout_is_killed(tmp_path):
    env = fit_env(tmp_path)
    t0 = time.time()
    with pytest.raises(subprocess.TimeoutExpired):
        run_module("_cli_probe", ["sleep"], cwd=tmp_path, env=env, timeout=3)
    assert time.time() - t0 < 30
    assert not processes_with("_cli_probe"), "the timed-out command still runs"
    again = run_module("_cli_probe", ["exit3"], cwd=tmp_path, env=env, timeout=60)  # the runner still serves
    assert again.returncode == 3


def test_another_import_time_setting_runs_a_plain_process(tmp_path):
    forked, plain = both(tmp_path, "report", env={"OMP_NUM_THREADS": "1"})
    assert json.loads(forked.stdout)["threads"] == json.loads(plain.stdout)["threads"] == 1


def test_two_replies_arriving_at_once_are_read_one_by_one():
    """A command can end before its pid is read: the pid and exit-code lines then arrive together."""
    from types import SimpleNamespace

    from _cli import _Zygote

    r, w = os.pipe()
    z = _Zygote.__new__(_Zygote)
    z.proc, z._pending = SimpleNamespace(stdout=os.fdopen(r, "rb")), b""
    os.write(w, b'{"pid": 12}\n{"rc": 3}\n{"pi')
    assert z._read(5) == {"pid": 12}
    assert z._read(5) == {"rc": 3}
    assert z._read(0.2) is None  # half a line is not a reply
    os.write(w, b'd": 13}\n')
    assert z._read(5) == {"pid": 13}
    os.close(w)
    with pytest.raises(RuntimeError, match="ended"):
        z._read(5)
