"""``python -m <entry point> ARGS`` for the tests, each command in a fresh process of its own, forked from
one interpreter that imported torch, Lightning, PyG, MLflow and mgglass once.

A plain ``python -m mgglass.predict`` spends ~7 s of a 2-core machine importing those before it reads
its arguments, and the suite runs ~50 such commands: about five minutes of imports. The forked child
sees what a fresh process would: its own environment, working folder, argv, stdin from /dev/null,
stdout/stderr to files, exit code from ``sys.exit`` or 1 with the traceback for an uncaught exception,
and atexit handlers run at the end; it stays in the tests' process group (Ctrl-C reaches it) and past
its timeout it is killed as ``subprocess.run`` kills (the command, not what it started). Settings read while importing (PYTHONPATH, thread counts, the hash
seed, ...) are the zygote's, so a command whose environment differs in one of them runs as a plain
subprocess, as does every command with ``MGGLASS_TEST_SUBPROCESS=1``. Commands that tests kill or
run concurrently use ``subprocess`` directly.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Entry points imported once for their dependencies, then dropped from sys.modules so that
# runpy executes each afresh as __main__ (as `python -m` does, without runpy's "found in sys.modules").
ENTRY_POINTS = (
    "mgglass.fit", "mgglass.test", "mgglass.validate", "mgglass.predict", "mgglass.report",
    "mgglass.reference", "mgglass.cv.__main__", "mgglass.sweep.__main__", "mgglass.ensemble.__main__",
    "mgglass.bench.__main__", "mgglass.explain.__main__", "mgglass.md.__main__",
)
# Environment read while importing, so the zygote's value would win over a request's.
IMPORT_TIME_ENV = (
    "PYTHONPATH", "PYTHONHASHSEED", "PYTHONWARNINGS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
    "LD_PRELOAD", "CUDA_VISIBLE_DEVICES", "MGGLASS_MALLOC", "MGGLASS_DEBUG", "MGGLASS_DATA_DIR",
)

ZYGOTE = r"""
import atexit, json, os, runpy, sys, traceback
proto = os.fdopen(os.dup(1), "w")
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # what the imports print stays off the protocol
entry = json.loads(sys.argv[1])
for name in entry:
    try:
        __import__(name)
    except ImportError:  # an extra not installed: its command fails in the child as it would alone
        pass
for name in entry:
    sys.modules.pop(name, None)
print(json.dumps({"ready": os.getpid()}), file=proto, flush=True)
for line in sys.stdin:
    req = json.loads(line)
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
                f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(f, fd)
                os.close(f)
            proto.close()
            os.chdir(req["cwd"])
            os.environ.clear()
            os.environ.update(req["env"])
            sys.argv = [req["module"], *req["args"]]
            try:
                runpy.run_module(req["module"], run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as e:
                if e.code is None:
                    code = 0
                elif isinstance(e.code, int):
                    code = e.code
                else:
                    print(e.code, file=sys.stderr)
                    code = 1
            except BaseException:
                traceback.print_exc()
                code = 1
            atexit._run_exitfuncs()
        finally:
            try:
                sys.stdout.flush(); sys.stderr.flush()
            finally:
                os._exit(code & 0xFF)
    print(json.dumps({"pid": pid}), file=proto, flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"rc": os.waitstatus_to_exitcode(status)}), file=proto, flush=True)
"""


class _Zygote:
    def __init__(self, env: dict):
        self.env = {k: env.get(k) for k in IMPORT_TIME_ENV}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE, json.dumps(ENTRY_POINTS)], cwd=ROOT, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        self._pending = b""  # replies read from the pipe but not yet returned (two can arrive at once)
        if self._read(600) is None:
            self.proc.kill()
            raise RuntimeError("the test zygote did not finish its imports in 600 s")

    def _read(self, timeout: float) -> dict | None:
        """The zygote's next reply, or None after ``timeout`` s. Reads the pipe's fd directly: a buffered
        readline could take the pid and exit-code lines at once and leave select waiting for the second."""
        fd, deadline = self.proc.stdout.fileno(), time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError("the test zygote ended")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)

    def fits(self, env: dict) -> bool:
        return self.proc.poll() is None and all(env.get(k) == v for k, v in self.env.items())

    def run(self, module: str, args: list[str], cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory() as tmp:
            out, err = Path(tmp, "stdout"), Path(tmp, "stderr")
            req = {"module": module, "args": [str(a) for a in args], "cwd": str(cwd), "env": env,
                   "stdout": str(out), "stderr": str(err)}
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            started = self._read(60)
            if started is None:
                raise RuntimeError(f"the test zygote did not start {module} within 60 s")
            pid = started["pid"]
            done = self._read(timeout)
            if done is None:
                os.kill(pid, signal.SIGKILL)  # as subprocess.run kills a command past its timeout
                self._read(60)
                raise subprocess.TimeoutExpired([module, *args], timeout, out.read_text(errors="replace"), err.read_text(errors="replace"))
            return subprocess.CompletedProcess([sys.executable, "-m", module, *args], done["rc"],
                                               out.read_text(errors="replace"), err.read_text(errors="replace"))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


_zygote: _Zygote | None = None


def run_plain(module: str, args: list[str], *, cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
    """``python -m module args`` as a plain subprocess (stdin from /dev/null, as a forked command has it)."""
    return subprocess.run([sys.executable, "-m", module, *args], check=False, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def run_module(module: str, args: list[str], *, cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
    """:func:`run_plain` in effect, forked from the warm interpreter where it can be."""
    global _zygote
    if os.environ.get("MGGLASS_TEST_SUBPROCESS") or not hasattr(os, "fork"):
        return run_plain(module, args, cwd=cwd, env=env, timeout=timeout)
    if _zygote is None or _zygote.proc.poll() is not None:
        _zygote = _Zygote(env)
        atexit.register(_zygote.close)
    if not _zygote.fits(env):
        return run_plain(module, args, cwd=cwd, env=env, timeout=timeout)
    return _zygote.run(module, args, cwd, env, timeout)
