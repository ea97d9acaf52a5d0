"""Training-loop benchmark: seconds per epoch, Lightning (EBTask + Trainer) against a bare torch loop.

    python -m mgglass.bench fit [--model symgnn] [--epochs 2] [--threads 2] [--synthetic]

Both loops run the same model, the same glasses (the 6 official training glasses by default;
``--synthetic`` uses 6 generated ones), one glass per step, Adam(amsgrad) and gradient clipping 0.1.
The Lightning loop also does what a fit does per step (pooled torchmetrics updates), but no
validation, checkpointing or MLflow, so the difference is the framework's per-step overhead.
The first epoch of each loop is a warm-up and is not timed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from mgglass.data import GlassDataModule
from mgglass.models import REGISTRY, build_model, model_class
from mgglass.runtime import keep_freed_memory
from mgglass.task import EBTask


def _model(name: str, seed: int):
    torch.manual_seed(seed)
    return build_model(name)


def bare_loop(model, graphs, epochs: int, clip: float = 0.1) -> list[float]:
    from torch_geometric.loader import DataLoader

    opt = torch.optim.Adam(model.parameters(), lr=1e-4, amsgrad=True)
    loader = DataLoader(graphs, batch_size=1, shuffle=True)
    times = []
    model.train()
    for _ in range(epochs):
        t0 = time.perf_counter()
        for batch in loader:
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(model(batch), batch.y_norm)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
        times.append(time.perf_counter() - t0)
    return times


def lightning_loop(model, dm, epochs: int, clip: float = 0.1) -> list[float]:
    import lightning as L
    from lightning.pytorch.callbacks import Callback

    class Timer(Callback):
        def __init__(self):
            self.times, self.t0 = [], 0.0

        def on_train_epoch_start(self, trainer, pl_module):
            self.t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            self.times.append(time.perf_counter() - self.t0)

    timer = Timer()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=clip,
        use_distributed_sampler=False,
        callbacks=[timer],
    )
    trainer.fit(EBTask(model), datamodule=dm)
    return timer.times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mgglass.bench fit", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="symgnn", help="registry name or class path (default symgnn)")
    ap.add_argument("--epochs", type=int, default=2, help="timed epochs per loop (after one warm-up)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--glasses", type=int, default=6, help="training glasses (official train0..)")
    ap.add_argument("--synthetic", action="store_true", help="generated glasses instead of the official ones")
    ap.add_argument("--atoms", type=int, default=8000, help="atoms per synthetic glass")
    args = ap.parse_args(argv)
    try:
        if args.model not in REGISTRY:
            model_class(args.model)  # before the glasses are read and graphed
    except ValueError as e:
        print(f"mgglass.bench fit: error: --model: {e}", file=sys.stderr)
        return 2
    keep_freed_memory()  # as the training entry points do
    torch.set_num_threads(args.threads)

    names = [f"train{i}.pickle" for i in range(args.glasses)]
    if args.synthetic:
        names = [f"train{i}.xyz" for i in range(args.glasses)]
        dm = GlassDataModule(root="synthetic", train=names, val=["v.xyz"], test=["t.xyz"],
                             synthetic_atoms=args.atoms)
    else:
        dm = GlassDataModule(train=names)
    dm.prepare_data()
    dm.setup("fit")
    graphs = dm.graphs["train"]
    atoms = sum(g.num_nodes for g in graphs)
    edges = sum(g.num_edges for g in graphs)

    bare = bare_loop(_model(args.model, 0), graphs, args.epochs + 1)[1:]
    light = lightning_loop(_model(args.model, 0), dm, args.epochs + 1)[1:]
    b, li = min(bare), min(light)
    result = {
        "model": args.model,
        "glasses": len(graphs),
        "atoms": atoms,
        "edges": edges,
        "threads": args.threads,
        "bare_s_per_epoch": round(b, 3),
        "lightning_s_per_epoch": round(li, 3),
        "overhead_pct": round(100 * (li - b) / b, 2),
        "bare_all": [round(t, 3) for t in bare],
        "lightning_all": [round(t, 3) for t in light],
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
