"""torch.compile on the SymGNN training step (forward, MSE, backward) on train0, against eager, side by
side in one process: the variants take turns in each of six rounds (the first warms up), medians
(docs/notes/benchmarks.md#step-round-3).

    MGGLASS_DATA_DIR=../shared/data/cuzr python docs/notes/scripts/compile_step.py [THREADS]

Variants: ``encoders`` compiles the edge encoders (φ(xQ) and the |x| branch; no activation
recomputation, which dynamo cannot trace); ``around kernels`` compiles the whole network with the
hand-fused kernels of mgglass.models.egat left eager (they call torch_scatter and sparse CSR products,
which have no fake-tensor kernels); ``whole`` compiles everything and is expected to fail on them.
Random draws fall back to eager's generator, so all variants see the same transforms.
"""

import statistics
import sys
import time
from pathlib import Path

import torch
import torch._inductor.config
import yaml
from torch_geometric.data import Batch

from mgglass.bench import DEFAULT_DATA
from mgglass.data import glass_to_data, read_glass
from mgglass.data.order import spatially_ordered
from mgglass.models import egat
from mgglass.models.symgnn import SymGNN
from mgglass.runtime import keep_freed_memory

keep_freed_memory()
torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
torch._inductor.config.fallback_random = True
init = yaml.safe_load(Path("experiments/symgnn.yaml").read_text())["model"]["net"]["init_args"]
species = ("Cu", "Zr")
data = glass_to_data(read_glass(DEFAULT_DATA / "train0.pickle", species=species), 5.0, species, False)
data.y_norm = (data.y - data.y.mean()) / data.y.std()
batch = Batch.from_data_list([spatially_ordered(data)[0]])


def eager_kernels():
    """The hand-fused kernels as graph breaks (torch.compiler.disable), the rest traced."""
    off = torch.compiler.disable
    egat.segment_softmax = off(egat.segment_softmax)
    egat.gather_weight_scatter = off(egat.gather_weight_scatter)
    egat.EdgePlan = off(egat.EdgePlan)
    block = egat._EdgeBlock
    egat._EdgeBlock = type("EagerEdgeBlock", (), {"apply": off(block.apply), "chunk_floats": block.chunk_floats})


def build(kind: str):
    torch.manual_seed(0)
    net = SymGNN(**init)
    if kind == "eager":
        return net, net
    net.edge_encoder.recompute = False  # checkpoint's context_fn is not traceable
    if kind == "encoders":
        net.encode_vectors = torch.compile(net.encode_vectors)
        return net, net
    return net, torch.compile(net)


def step(net, f, seed: int) -> tuple[float, torch.Tensor, float]:
    net.train()
    net.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    t = time.perf_counter()
    loss = torch.nn.functional.mse_loss(f(batch), batch.y_norm)
    loss.backward()
    t = time.perf_counter() - t
    return float(loss.detach()), torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None]), t


nets = {}
for kind in ("eager", "encoders", "whole", "around kernels"):
    if kind == "around kernels":
        torch._dynamo.reset()
        eager_kernels()
    net, f = build(kind)
    try:
        loss, grad, t = step(net, f, 0)
    except Exception as exc:  # noqa: BLE001 - report and go on
        print(f"{kind}: fails: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}", flush=True)
        continue
    print(f"{kind}: first step {t:.1f} s", flush=True)
    nets[kind] = (net, f)
ref_loss, ref_grad, _ = step(*nets["eager"], 1)
for kind, (net, f) in nets.items():
    loss, grad, _ = step(net, f, 1)
    print(f"{kind}: loss {loss:.5f} (eager {ref_loss:.5f}), gradient |Δ|/|g| {float((grad - ref_grad).norm() / ref_grad.norm()):.4f}")
times = {k: [] for k in nets}
for rep in range(6):
    for kind, (net, f) in nets.items():
        t = step(net, f, rep)[2]
        if rep:
            times[kind].append(t)
base = statistics.median(times["eager"])
for kind, ts in times.items():
    m = statistics.median(ts)
    print(f"{kind}: median {m:.3f} s ({m / base:.2f}x)")
