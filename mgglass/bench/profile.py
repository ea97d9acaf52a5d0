"""python -m mgglass.bench profile: where prediction (and a training step) spend their time, by stage and by kind of op.

    python -m mgglass.bench profile --ckpt_path CKPT [--sizes 1,8,64] [--threads 2] [--no-train]

Each size (train0 replicated n×n×n; ``--sizes`` as in ``bench scaling``) runs in a fresh subprocess:
the radius graph is built, the glass predicted once unprofiled (the time reported) and once under
``torch.profiler``. Stages are the model's own profiler scopes (``mgglass.models.egat.STAGES``: edge
encoding over the sampled transforms, the edge features and their projection, attention softmax,
message gather and scatter, node update, per-range src parts, decoder, spatial atom order), each
summed over layers and atom ranges; kinds of op are the ops' own (self) times grouped into GEMMs,
sparse products, gathers and scatters, batch norm, allocation and fills, and the rest; "Python and
dispatch" is the wall time no op accounts for. The dense GEMMs' FLOPs (2·m·k·n from each product's
recorded shapes, up to 100,000 atoms; CSR products, which torch also runs as ``aten::addmm``, counted
apart) over their time give the rate they ran at. With training (the default), the first size also
profiles one training step (forward, MSE, backward; backward as one stage). Peak memory is the
subprocess's peak resident set after the unprofiled prediction (the profiler's records of a
million-atom prediction take gigabytes). One JSON line per profile.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch_geometric.data import Batch

from mgglass.bench.scaling import cube_sizes, run_worker, task_and_graph
from mgglass.data.order import spatially_ordered
from mgglass.inference import CHUNK_ATOMS, predict_glass
from mgglass.models.egat import STAGES

# Kinds of op, by the op's name (first match wins); self times, so nothing is counted twice.
KINDS = (
    ("sparse products", ("sparse", "_csr_mm")),
    ("GEMMs", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addmv", "aten::mv")),
    ("gathers and scatters", ("index_select", "index_add", "scatter", "gather", "aten::index", "index_put",
                              "index_copy", "torch_scatter::", "aten::take", "aten::_unique", "aten::embedding")),
    ("batch norm", ("batch_norm",)),
    ("allocation and fills", ("aten::empty", "aten::zeros", "aten::zero_", "aten::fill_", "aten::ones", "aten::full",
                              "aten::resize_")),
)
KIND_NAMES = [k for k, _ in KINDS] + ["element-wise and other ops", "Python and dispatch"]
BACKWARD = "backward"


def _kind(name: str) -> str:
    for kind, needles in KINDS:
        if any(n in name for n in needles):
            return kind
    return "element-wise and other ops"


# torch runs a CSR × dense product as aten::addmm too; what gives it away is the CSR's index arrays read
# beneath it. Each GEMM-named op above those reads is a sparse product, not arithmetic on dense rows.
SPARSE_READS = ("aten::crow_indices", "aten::_nnz")


def _sparse_products(events) -> set[int]:
    out = set()
    for ev in events:
        if ev.name in SPARSE_READS:
            parent = ev.cpu_parent
            while parent is not None:
                if _kind(parent.name) == "GEMMs":
                    out.add(parent.id)
                parent = parent.cpu_parent
    return out


def gemm_flops(name: str, shapes: list) -> int:
    """Floating-point operations of one dense GEMM from its input shapes (2·m·k·n; 0 when they do not say)."""
    try:
        if name.startswith(("aten::addmm", "aten::baddbmm", "aten::addmv")):
            shapes = shapes[1:]  # the added tensor first
        if name.startswith(("aten::addmv", "aten::mv")):
            (m, k), (k2,) = shapes[0], shapes[1]
            return 2 * m * k if k == k2 else 0
        if name.startswith(("aten::bmm", "aten::baddbmm")):
            (b, m, k), (b2, k2, n) = shapes[0], shapes[1]
            return 2 * b * m * k * n if (b, k) == (b2, k2) else 0
        (m, k), (k2, n) = shapes[0], shapes[1]
        return 2 * m * k * n if k == k2 else 0
    except (ValueError, IndexError, TypeError):
        return 0


def breakdown(prof, wall_s: float) -> tuple[dict, dict, float]:
    """({stage: s}, {kind of op: s}, dense GEMM FLOPs) of one profiled run of ``wall_s`` seconds
    (profiled with ``record_shapes``, which the FLOPs need)."""
    stages = dict.fromkeys([*STAGES.values(), BACKWARD], 0.0)
    kinds = dict.fromkeys(KIND_NAMES, 0.0)
    events = prof.events()
    sparse = _sparse_products(events)
    flops = 0
    for ev in events:
        if ev.name in stages:
            stages[ev.name] += ev.cpu_time_total / 1e6
        elif ev.name.startswith(("aten::", "torch_scatter::", "torch_cluster::")):
            kind = "sparse products" if ev.id in sparse else _kind(ev.name)
            kinds[kind] += ev.self_cpu_time_total / 1e6
            if kind == "GEMMs":
                flops += gemm_flops(ev.name, ev.input_shapes)
    kinds["Python and dispatch"] = max(0.0, wall_s - sum(kinds.values()))
    return {k: v for k, v in stages.items() if v > 0}, kinds, float(flops)


# Input shapes (for the GEMMs' FLOPs) are recorded up to this size: at 1,000,000 atoms the profiler's
# records with shapes outgrew a 24 GiB machine, and the rate is the GEMMs', not the size's.
SHAPES_MAX_ATOMS = 100_000


def _profiled(fn, shapes: bool = True) -> tuple[object, float]:
    with profile(activities=[ProfilerActivity.CPU], record_shapes=shapes) as prof:
        t = time.perf_counter()
        fn()
        wall = time.perf_counter() - t
    return prof, wall


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(ckpt: str, source: str, threads: int, train: bool) -> list[dict]:
    task, data, graph_s = task_and_graph(ckpt, source, threads)

    def predict():
        predict_glass(task, data, chunk_atoms=CHUNK_ATOMS)

    t = time.perf_counter()
    predict()  # also the warm-up of the profiled run
    base = {"glass": source, "atoms": data.num_nodes, "edges": int(data.edge_index.shape[1]), "threads": threads}
    # unprofiled times and peaks first: the profiler's records of a million-atom prediction take gigabytes
    runs = [({**base, "run": "predict", "graph_s": graph_s, "time_s": time.perf_counter() - t, "peak_mb": _peak_mb()}, predict)]
    if train:  # as a fit trains: the glass in spatial atom order, labels standardised
        net = task.net
        b = Batch.from_data_list([spatially_ordered(data)[0]])
        y = (b.y - b.y.mean()) / b.y.std()

        def step():
            net.train()
            net.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(net(b), y)
            with torch.profiler.record_function(BACKWARD):
                loss.backward()

        step()
        t = time.perf_counter()
        step()
        runs.append(({**base, "run": "train step", "time_s": time.perf_counter() - t, "peak_mb": _peak_mb()}, step))
    rows = []
    for row, fn in runs:
        prof, wall = _profiled(fn, shapes=data.num_nodes <= SHAPES_MAX_ATOMS)
        stages, kinds, flops = breakdown(prof, wall)
        rows.append({**row, "profiled_s": wall, "stages": stages, "ops": kinds, "gemm_gflop": flops / 1e9})
    return rows


def table(rows: list[dict]) -> list[str]:
    """Markdown: one column per profile, stages then kinds of op, seconds and share of the profiled time."""
    if not rows:
        return []
    heads = [f"{r['run']}, {r['atoms']:,} atoms" for r in rows]
    out = ["| | " + " | ".join(heads) + " |", "|---" * (len(rows) + 1) + "|"]
    out.append("| time, unprofiled (s) | " + " | ".join(f"{r['time_s']:.2f}" for r in rows) + " |")
    out.append("| time, profiled (s) | " + " | ".join(f"{r['profiled_s']:.2f}" for r in rows) + " |")

    def cell(r, key, part):
        v = r[part].get(key)
        return "" if not v else f"{v:.2f} ({100 * v / r['profiled_s']:.0f} %)"

    stage_keys = list(STAGES.values()) + [BACKWARD]
    for key in stage_keys:
        if any(r["stages"].get(key) for r in rows):
            out.append(f"| *stage:* {key.removeprefix('mgglass: ')} | " + " | ".join(cell(r, key, "stages") for r in rows) + " |")
    for key in KIND_NAMES:
        out.append(f"| *ops:* {key} | " + " | ".join(cell(r, key, "ops") for r in rows) + " |")
    # The GEMMs' arithmetic and the rate they ran at: on a CPU, the time the step cannot go below
    # without less arithmetic or faster GEMMs (docs/notes/benchmarks.md#gemm-floor).
    out.append("| dense GEMMs: GFLOP, at GFLOP/s | " + " | ".join(
        f"{r['gemm_gflop']:.1f}, at {r['gemm_gflop'] / r['ops']['GEMMs']:.0f}" if r.get("gemm_gflop") and r["ops"].get("GEMMs") else ""
        for r in rows) + " |")
    out.append("| peak RSS before profiling (GiB) | " + " | ".join(f"{r['peak_mb'] / 1024:.2f}" for r in rows) + " |")
    return out


def run(ckpt: str, sizes: list[int], threads: int, train: bool, timeout: float) -> list[dict]:
    rows = []
    for i, n in enumerate(sizes):
        source = f"train0x{n}"
        args = ["profile", "--worker", source, "--ckpt_path", ckpt, "--threads", str(threads)]
        out = run_worker(args + ([] if train and i == 0 else ["--no-train"]), source, threads, timeout)
        if out is None:
            break
        for row in out:
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mgglass.bench profile", description=__doc__.split("\n\n")[2])
    p.add_argument("--ckpt_path", required=True)
    p.add_argument("--sizes", default="1,8,64", help="replication counts n³ of train0 (1 = the 8000-atom glass)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-train", dest="train", action="store_false", help="profile prediction only")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        for row in worker(args.ckpt_path, args.worker, args.threads, args.train):
            print(json.dumps(row), flush=True)
        return 0
    if not Path(args.ckpt_path).is_file():
        print(f"mgglass.bench profile: {args.ckpt_path}: no such checkpoint", file=sys.stderr)
        return 2
    sizes = cube_sizes(args.sizes)
    if sizes is None:
        print(f"mgglass.bench profile: --sizes must be cubes (1, 8, 27, 64, 125, ...), got {args.sizes!r}", file=sys.stderr)
        return 2
    rows = run(args.ckpt_path, sizes, args.threads, args.train, args.timeout)
    return 0 if len({r["glass"] for r in rows}) == len(sizes) else 1


if __name__ == "__main__":
    sys.exit(main())
