"""How invariant a trained model is on real glasses: per-atom prediction spread over random O(3) transforms.

    python -m mgglass.bench invariance --ckpt_path CKPT [--transforms 32] [--seed 0] [--config FILE]

Each test glass is rotated (and, for half of the transforms, reflected) by ``--transforms`` Haar-random
orthogonal matrices; edge vectors, positions and the cell turn with it, the graph stays the same. For
every atom the standard deviation of its predicted EB over the transforms is taken (eV, eval mode);
the report gives the mean and 95th percentile of that spread against the standard deviation of the
labels, and the Pearson r of the transform-averaged prediction. An exactly invariant model has
spread 0; SymGNN's is invariant in expectation, so its spread shrinks as its ``k_eval`` grows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from mgglass.cli import ConfigError, build, check_data, fail
from mgglass.models.symgnn import haar_o3
from mgglass.runtime import keep_freed_memory
from mgglass.task import EBTask


def orthogonal(n: int, seed: int) -> torch.Tensor:
    """n Haar-random matrices in O(3): rotations, every second one times −1 (a reflection)."""
    q = haar_o3(n, torch.Generator().manual_seed(seed), torch.float64)
    q = q * torch.linalg.det(q).sign().view(-1, 1, 1)  # proper rotations
    q[1::2] = -q[1::2]
    return q


@torch.no_grad()
def spread(task, graphs, transforms: torch.Tensor) -> dict[str, float]:
    from torch_geometric.data import Batch

    task.eval()
    ys, stds, means = [], [], []
    for g in graphs:
        preds = []
        for q in transforms:
            b = Batch.from_data_list([g]).to(task.device)
            qf = q.to(b.edge_vec.dtype).to(task.device)
            b.edge_vec = b.edge_vec @ qf
            b.pos = b.pos @ qf
            if "cell" in b:
                b.cell = b.cell @ qf
            preds.append(task.predict_ev(b).cpu().double())
        p = torch.stack(preds)
        stds.append(p.std(0))
        means.append(p.mean(0))
        ys.append(g.y.double())
    y, s, m = torch.cat(ys).numpy(), torch.cat(stds).numpy(), torch.cat(means).numpy()
    return {
        "atoms": len(y),
        "transforms": len(transforms),
        "label_std_ev": float(y.std()),
        "pred_spread_mean_ev": float(s.mean()),
        "pred_spread_p95_ev": float(np.quantile(s, 0.95)),
        "spread_over_label_std": float(s.mean() / y.std()),
        "r_of_mean_prediction": float(np.corrcoef(y, m)[0, 1]),
    }


def main(argv=None) -> int:
    keep_freed_memory()
    p = argparse.ArgumentParser(prog="mgglass.bench invariance", description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt_path", required=True)
    p.add_argument("--config", default=None, help="default: the config.yaml beside the checkpoint")
    p.add_argument("--transforms", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    prog = "mgglass.bench invariance"
    ckpt = Path(args.ckpt_path)
    if not ckpt.is_file():
        return fail(prog, f"ckpt_path: {ckpt}: no such checkpoint")
    config = Path(args.config) if args.config else ckpt.parent / "config.yaml"
    if not config.is_file():
        return fail(prog, f"no --config given and no {config} beside the checkpoint")
    try:
        cli = build(["--config", str(config), "--tracking.enabled=false", f"--checkpoint.dirpath={ckpt.parent}"])
        check_data(cli.datamodule, "test")
    except ConfigError as e:
        return fail(prog, str(e))
    dm = cli.datamodule
    dm.setup("test")
    task = EBTask.load_from_checkpoint(str(ckpt), map_location="cpu")
    out = {"checkpoint": str(ckpt), **spread(task, dm.graphs["test"], orthogonal(args.transforms, args.seed))}
    print(json.dumps(out), flush=True)
    return 0
