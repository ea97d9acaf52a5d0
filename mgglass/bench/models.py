"""python -m mgglass.bench models: forward+backward time and peak memory per 8000-atom training glass.

``--config experiments/symgnn.yaml`` times the network a fit of that config builds (``model.net``:
class and init args) instead of the registry's bare defaults; ``--init_args '{"k_train": 4}'`` overrides
init args of every model timed. Each (model, device) runs in a fresh subprocess so peak memory is its own: on CPU the process's peak
resident set (``getrusage`` max RSS) and that peak minus the RSS just before the first forward (the
data and the interpreter excluded); on GPU ``torch.cuda.max_memory_allocated``. Time is the median of
``--reps`` training steps (forward, MSE to y_norm, backward) after one warm-up step, on the glass in
spatial atom order as a fit holds its training glasses (without it the default's step was 1.3× slower
on the AMD machine than the profile's, which orders it: docs/notes/benchmarks.md#amd-page).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch

from mgglass.bench import DEFAULT_DATA
from mgglass.cli import ConfigError, build
from mgglass.data import load_graph
from mgglass.data.order import spatially_ordered
from mgglass.models import REGISTRY, build_model, model_class
from mgglass.runtime import keep_freed_memory


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker(name: str, device: str, data_path: str, reps: int, threads: int, init: dict | None = None) -> dict:
    keep_freed_memory()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    data = spatially_ordered(load_graph(data_path))[0]  # as GlassDataModule holds training glasses
    data.y_norm = (data.y - data.y.mean()) / data.y.std()
    batch = Batch.from_data_list([data]).to(device)
    model = build_model(name, **(init or {})).to(device).train()
    cuda = device.startswith("cuda")

    def step():
        model.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(batch), batch.y_norm)
        loss.backward()
        if cuda:
            torch.cuda.synchronize()

    base = _rss_mb()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    step()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    out = {"model": name, "device": device, "atoms": int(batch.num_nodes), "edges": int(batch.num_edges),
           "time_s": statistics.median(times), "params": sum(p.numel() for p in model.parameters())}
    if cuda:
        out["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        out.update(peak_mb=peak, peak_minus_base_mb=peak - base)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mgglass.bench models", description=__doc__)
    p.add_argument("--models", default=",".join(REGISTRY), help="comma-separated registry names")
    p.add_argument("--data", default=str(DEFAULT_DATA / "train0.pickle"))
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (cpu, plus cuda when available)")
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--config", help="a fit config: time its model.net (class and init args) instead of --models")
    p.add_argument("--init_args", default="{}", help='JSON init args for every model timed, e.g. \'{"k_train": 4}\'')
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        init = json.loads(args.init_args)
    except ValueError as e:
        init = f"not JSON ({e})"
    if not isinstance(init, dict):
        print(f"mgglass.bench models: --init_args must be a JSON object: {init}", file=sys.stderr)
        return 2
    if not args.config:
        for name in (n for n in args.models.split(",") if n not in REGISTRY):  # a registry model that fails to build stays a row
            try:
                model_class(name)
            except ValueError as e:  # it was a row of the table, exit 1 and nothing on stderr
                print(f"mgglass.bench models: error: --models: {e}", file=sys.stderr)
                return 2

    if args.worker:
        print(json.dumps(worker(args.worker, args.device, args.data, args.reps, args.threads, init)))
        return 0
    labels = {}
    if args.config:
        try:
            net = _config_net(args.config)
        except ConfigError as e:
            print(f"mgglass.bench models: {args.config}: {e}", file=sys.stderr)
            return 2
        args.models, init = net["class_path"], {**net.get("init_args", {}), **init}
        labels[net["class_path"]] = Path(args.config).stem

    devices = [args.device]
    if args.device == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"data {args.data}, torch threads {args.threads}, median of {args.reps} steps after a warm-up; "
          "CPU memory = peak RSS of a fresh process (and peak minus RSS before the first step)")
    header = f"{'model':<12} {'device':<6} {'atoms':>6} {'edges':>8} {'params':>9} {'fwd+bwd s':>10} {'peak MB':>9} {'Δ MB':>8}"
    print(header)
    failed = 0
    for name in args.models.split(","):
        for dev in devices:
            cmd = [sys.executable, "-m", "mgglass.bench", "models", "--worker", name, "--device", dev, "--data", args.data,
                   "--reps", str(args.reps), "--threads", str(args.threads), "--init_args", json.dumps(init)]
            label = labels.get(name, name)
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            try:
                res = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=args.timeout, env=env)
            except subprocess.TimeoutExpired:
                print(f"{label:<12} {dev:<6} timed out after {args.timeout:.0f} s")
                failed += 1
                continue
            if res.returncode != 0:
                reason = (res.stderr.strip().splitlines() or ["?"])[-1]
                print(f"{label:<12} {dev:<6} failed: {reason}")
                failed += 1
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            delta = f"{r['peak_minus_base_mb']:8.0f}" if "peak_minus_base_mb" in r else f"{'':>8}"
            print(f"{label:<12} {dev:<6} {r['atoms']:>6} {r['edges']:>8} {r['params']:>9,} "
                  f"{r['time_s']:>10.3f} {r['peak_mb']:>9.0f} {delta}", flush=True)
    return 1 if failed else 0


def _config_net(path: str) -> dict:
    """``model.net`` of a fit config as the fit parses it (layered on the base config, defaults filled
    in): {"class_path": ..., "init_args": {...}}; ConfigError for a config the fit would refuse."""
    net = build(["--config", path], progress=False, parse_only=True).config.model.net
    return {"class_path": net.class_path, "init_args": dict(vars(net.init_args))}


if __name__ == "__main__":
    sys.exit(main())
