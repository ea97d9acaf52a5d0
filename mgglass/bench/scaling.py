"""python -m mgglass.bench scaling: prediction time and peak memory against glass size.

    python -m mgglass.bench scaling --ckpt_path CKPT [--sizes 1,8,64,125] [--chunk_atoms 100000] [--png out.png]

Each size is the 8000-atom train0 glass replicated n×n×n times (``--sizes`` lists n³: 1 → 8k,
8 → 64k, 64 → 512k, 125 → 1M atoms) plus test0 (3k), predicted in a fresh subprocess so its peak
resident memory is its own. Reported per size: the periodic radius graph's time, the model's time
(glasses above ``--chunk_atoms`` are predicted in spatial chunks with their k-hop halo, as
``mgglass.predict`` does) and the process's peak RSS. Then what a user runs: the glass written as
extxyz and ``python -m mgglass.predict`` from that file to an extxyz and CSV in a fresh process (read,
graph, predict, write, imports included), its wall time and peak RSS (``cli_s``, ``cli_peak_mb``;
``--no-cli`` skips it). The slopes of log(time) and log(memory) against log(atoms) say whether it
scales linearly (slope 1). One JSON line per size, then the fit.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from mgglass.bench import DEFAULT_DATA
from mgglass.data import Glass, glass_to_data, read_glass
from mgglass.inference import CHUNK_ATOMS, predict_glass
from mgglass.runtime import keep_freed_memory
from mgglass.task import graph_settings, load_task


def replicated_glass(source: str, species) -> Glass:
    """``NAME`` or ``NAMExN``: a released glass, or that glass replicated n^(1/3) times along each
    cell vector (n a cube)."""
    name, _, n = source.partition("x")
    glass = read_glass(DEFAULT_DATA / f"{name}.pickle", species=species, labels_optional=True)
    if n and int(n) > 1:
        side = round(int(n) ** (1 / 3))
        glass = Glass.from_atoms(glass.to_atoms().repeat((side, side, side)), labels_optional=True)
    return glass


def cube_sizes(text: str) -> list[int] | None:
    """``--sizes`` ("1,8,64") as replication counts, or None unless every one is a positive cube."""
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        return None
    return sizes if sizes and all(s > 0 and round(s ** (1 / 3)) ** 3 == s for s in sizes) else None


def task_and_graph(ckpt: str, source: str, threads: int):
    """(the checkpoint's task, the graph of ``source`` (:func:`replicated_glass`), seconds the graph
    took), in a process set up as the entry points set theirs up."""
    keep_freed_memory()
    torch.set_num_threads(threads)
    task, hp = load_task(Path(ckpt), "cpu")
    species, cutoff, self_loops = graph_settings(hp)
    glass = replicated_glass(source, species)
    t = time.perf_counter()
    data = glass_to_data(glass, cutoff, species, self_loops)
    return task, data, time.perf_counter() - t


def worker(ckpt: str, source: str, reps: int, chunk_atoms: int, threads: int) -> dict:
    task, data, graph_s = task_and_graph(ckpt, source, threads)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        pred = predict_glass(task, data, chunk_atoms=chunk_atoms)
        times.append(time.perf_counter() - t)
    return {"glass": source, "atoms": data.num_nodes, "edges": int(data.edge_index.shape[1]), "threads": threads,
            "chunk_atoms": chunk_atoms if data.num_nodes > chunk_atoms else None, "graph_s": graph_s,
            "predict_s": min(times), "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "pred_mean_ev": float(np.mean(pred))}


def slope(x, y) -> float:
    """Least-squares slope of log y against log x."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def plot(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = np.array([r["atoms"] for r in rows], float)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.8), dpi=120)
    for key, label in (("predict_s", "model"), ("graph_s", "radius graph"), ("total_s", "graph + model")):
        y = np.array([r[key] for r in rows])
        a.loglog(n, y, "o-", label=f"{label} (slope {slope(n, y):.2f})")
    a.loglog(n, rows[0]["total_s"] * n / n[0], "k:", lw=0.8, label="linear")
    for ax in (a, b):
        ax.set_xticks(n, [f"{x / 1000:g}k" for x in n], minor=False)
        ax.set_xticks([], minor=True)
    a.set_xlabel("atoms")
    a.set_ylabel("seconds")
    a.legend(fontsize=8)
    mem = np.array([r["peak_mb"] for r in rows]) / 1024
    b.loglog(n, mem, "o-", label=f"peak RSS (slope {slope(n, mem):.2f})")
    if all("cli_peak_mb" in r for r in rows):
        cli = np.array([r["cli_peak_mb"] for r in rows]) / 1024
        b.loglog(n, cli, "s--", label=f"mgglass.predict, file to file (slope {slope(n, cli):.2f})")
    b.set_xlabel("atoms")
    b.set_ylabel("GiB")
    b.legend(fontsize=8)
    fig.suptitle("SymGNN prediction on CPU", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


class Child(NamedTuple):
    """A finished child process: exit code (None: killed at its timeout), its stdout, the last line
    of its stderr, wall time (s) and its own peak RSS (MB)."""

    code: int | None
    stdout: str
    last_error: str
    wall_s: float
    peak_mb: float


def run_child(cmd: list[str], threads: int, timeout: float) -> Child:
    """``cmd`` in a fresh process on ``threads`` threads, killed after ``timeout`` s. Its output goes to
    files, so a chatty child cannot block on a full pipe while this one polls."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        timed_out = False
        # wait4, not Popen.wait: the rusage of this child alone (RUSAGE_CHILDREN is the max over all children)
        while not (done := os.wait4(proc.pid, os.WNOHANG))[0]:
            if time.perf_counter() - t > timeout and not timed_out:
                timed_out = True
                proc.kill()
            time.sleep(0.01)
        wall = time.perf_counter() - t
        _, status, usage = done
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
        out.seek(0)
        err.seek(0)
        code = None if timed_out else proc.returncode
        return Child(code, out.read(), (err.read().strip().splitlines() or ["?"])[-1], wall, usage.ru_maxrss / 1024)


def run_worker(args: list[str], source: str, threads: int, timeout: float) -> list[dict] | None:
    """The JSON lines of ``python -m mgglass.bench ARGS`` run for ``source`` in a fresh process on
    ``threads`` threads; None (after printing why as a JSON line) when it fails or times out."""
    child = run_child([sys.executable, "-m", "mgglass.bench", *args], threads, timeout)
    if child.code != 0:
        error = f"timed out after {timeout:.0f} s" if child.code is None else child.last_error
        print(json.dumps({"glass": source, "error": error}), flush=True)
        return None
    return [json.loads(line) for line in child.stdout.strip().splitlines() if line.startswith("{")]


def run_cli(ckpt: str, source: str, threads: int, timeout: float, folder: Path) -> dict:
    """``python -m mgglass.predict`` on ``source`` written as extxyz, in a fresh process: {"cli_s",
    "cli_peak_mb"} (wall time, the child's own peak RSS), or {"cli_error"} when it fails or times
    out. The file is written before the clock starts."""
    import ase.io

    path, out = folder / f"{source}.extxyz", folder / f"{source}-pred.extxyz"
    ase.io.write(path, replicated_glass(source, None).to_atoms())
    cmd = [sys.executable, "-m", "mgglass.predict", "--ckpt_path", ckpt, "--input", str(path), "--output", str(out)]
    try:
        child = run_child(cmd, threads, timeout)
    finally:
        for f in (path, out, out.with_suffix(".csv")):
            f.unlink(missing_ok=True)
    if child.code is None:
        return {"cli_error": f"timed out after {timeout:.0f} s"}
    if child.code != 0:
        return {"cli_error": child.last_error}
    return {"cli_s": child.wall_s, "cli_peak_mb": child.peak_mb}


def run(ckpt: str, sizes: list[int], reps: int, chunk_atoms: int, threads: int, timeout: float, cli: bool = True) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="mgglass-scaling-") as folder:
        for source in ["test0"] + [f"train0x{n}" for n in sizes]:
            out = run_worker(["scaling", "--worker", source, "--ckpt_path", ckpt, "--reps", str(reps), "--chunk_atoms",
                              str(chunk_atoms), "--threads", str(threads)], source, threads, timeout)
            if not out:
                break
            row = out[-1]
            row["total_s"] = row["graph_s"] + row["predict_s"]
            if cli:
                row.update(run_cli(ckpt, source, threads, timeout, Path(folder)))
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mgglass.bench scaling", description=__doc__.split("\n\n")[2])
    p.add_argument("--ckpt_path", required=True)
    p.add_argument("--sizes", default="1,8,64,125", help="replication counts n³ of train0 (1 = the 8000-atom glass)")
    p.add_argument("--reps", type=int, default=1, help="best of this many predictions per size")
    p.add_argument("--chunk_atoms", type=int, default=CHUNK_ATOMS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--png", default=None, help="write the log-log plot here")
    p.add_argument("--no-cli", dest="cli", action="store_false", help="skip timing python -m mgglass.predict file to file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.ckpt_path, args.worker, args.reps, args.chunk_atoms, args.threads)))
        return 0
    sizes = cube_sizes(args.sizes)
    if sizes is None:
        print(f"mgglass.bench scaling: --sizes must be cubes (1, 8, 27, 64, 125, ...), got {args.sizes!r}", file=sys.stderr)
        return 2
    rows = run(args.ckpt_path, sizes, args.reps, args.chunk_atoms, args.threads, args.timeout, args.cli)
    if len(rows) < 2:
        return 1
    n = [r["atoms"] for r in rows]
    fit = {"slope_total_s": slope(n, [r["total_s"] for r in rows]), "slope_predict_s": slope(n, [r["predict_s"] for r in rows]),
           "slope_peak_mb": slope(n, [r["peak_mb"] for r in rows]), "largest_atoms": max(n),
           "us_per_atom_largest": 1e6 * rows[-1]["total_s"] / rows[-1]["atoms"]}
    if args.png:
        plot(Path(args.png), rows)
        fit["png"] = args.png
    print(json.dumps(fit), flush=True)
    return 0 if len(rows) == len(sizes) + 1 else 1


if __name__ == "__main__":
    sys.exit(main())
