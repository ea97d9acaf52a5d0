"""python -m mgglass.predict (--run RUN_ID [RUN_ID ...] | --ckpt_path CKPT [CKPT ...]) --input GLASS [GLASS|DIR|GLOB ...] --output out.extxyz
    [--samples K] [--chunk_atoms N] [--device auto|cpu|cuda] [--label_key eb] [--tracking_root mlruns]

Per-atom energy barriers (eV) of any glasses mgglass reads, from a trained run alone: written as the
per-atom array ``eb_pred`` in extxyz (ase, OVITO) and as CSV beside it (``out.csv``). When the inputs
carry labels, Pearson r, R² and MAE are printed (pooled and per glass). With SymGNN, ``--samples K``
also writes ``eb_std``: the spread of the prediction over K single sampled O(3) transforms. Several
runs or checkpoints (or the run of an ensemble, ``python -m mgglass.ensemble``, or of a
cross-validation) predict as an ensemble: ``eb_pred`` is their mean and ``eb_std`` their spread.

Large glasses are predicted in chunks: atoms are grouped into spatial cells of about
``--chunk_atoms`` atoms, and each cell is predicted on its k-hop subgraph (k = the model's
message-passing depth), which holds every atom and edge the cell's predictions depend on, so the
result equals the whole-glass prediction (up to float summation order).

The command runs ``Trainer.predict`` over the files (one glass per step, read when its turn comes;
``EBTask.predict_step``) with a ``BasePredictionWriter`` that writes them. This module also holds
the pieces the fit's test outputs, ``mgglass.test --out`` and the benchmarks share: ``predict_glass``
(the one eval-mode prediction of a glass, chunked or whole), the writers and the parity plot.
"""

from __future__ import annotations

import csv
import glob
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

PROG = "mgglass.predict"
# Glasses above this many atoms are predicted in chunks: ~50 MB per 1000 atoms in eval, so a chunk's
# subgraph (centres + 20-Å halo, ≤ ~3× the centres) stays under ~15 GB, and a 64,000-atom glass goes whole.
CHUNK_ATOMS = 100_000
READABLE = (".pickle", ".pkl", ".extxyz", ".xyz", ".cfg", ".data", ".dump", ".lammpstrj", ".vasp", ".cif", ".traj")


# -- prediction ---------------------------------------------------------------------------------------
def receptive_hops(net) -> int | None:
    """Message-passing depth: an atom's prediction depends on atoms at most this many edges away."""
    hops = getattr(net, "receptive_hops", None)
    return int(hops() if callable(hops) else hops) if hops is not None else None


def _grid_cell_ids(data, grid: torch.Tensor) -> torch.Tensor:
    """Each atom's cell (row-major id) in a grid[0]×grid[1]×grid[2] division of the periodic cell,
    in fractional coordinates."""
    frac = data.pos.double() @ torch.linalg.inv(data.cell[0].double())
    ijk = torch.minimum(torch.floor((frac % 1.0) * grid).long(), grid - 1)
    return (ijk[:, 0] * grid[1] + ijk[:, 1]) * grid[2] + ijk[:, 2]


def spatial_cells(data, chunk_atoms: int) -> list[torch.Tensor]:
    """Atom indices grouped into an n×n×n grid of the cell (fractional coordinates), n chosen so a
    grid cell holds about ``chunk_atoms`` atoms; empty cells are dropped."""
    n = max(1, math.ceil((data.num_nodes / max(chunk_atoms, 1)) ** (1 / 3)))
    cell_id = _grid_cell_ids(data, torch.full((3,), n))
    order = torch.argsort(cell_id, stable=True)
    counts = torch.bincount(cell_id, minlength=n**3)
    return [c for c in torch.split(order, counts.tolist()) if c.numel()]


def _subgraph(data, centres: torch.Tensor, hops: int):
    """The k-hop in-neighbourhood of ``centres`` as a graph, and where the centres sit in it."""
    from torch_geometric.data import Data
    from torch_geometric.utils import k_hop_subgraph

    subset, edge_index, mapping, edge_mask = k_hop_subgraph(
        centres, hops, data.edge_index, relabel_nodes=True, num_nodes=data.num_nodes, flow="source_to_target"
    )
    sub = Data(species=data.species[subset], pos=data.pos[subset], cell=data.cell, edge_index=edge_index, edge_vec=data.edge_vec[edge_mask])
    return sub, mapping


def spatially_ordered(data, cell_size: float = 5.0):
    """(the glass renumbered cell by cell of a ``cell_size``-Å grid, with its edges re-sorted by dst;
    the permutation: new atom j is old atom perm[j]). Neighbours then sit close in memory, so the
    message passing's gathers hit cache: whole 64,000-atom glass 73 → 32 s on one core, same predictions."""
    from torch_geometric.data import Data

    n, e = data.num_nodes, data.edge_index.shape[1]
    grid = torch.clamp((data.cell[0].double().norm(dim=1) / cell_size).floor().long(), min=1)
    perm = torch.argsort(_grid_cell_ids(data, grid), stable=True)
    new_id = torch.empty_like(perm)
    new_id[perm] = torch.arange(n)
    edge_index = new_id[data.edge_index]
    order = torch.argsort(edge_index[1] * n + edge_index[0])
    out = Data(edge_index=edge_index[:, order])
    for key, value in data.items():
        if key != "edge_index":
            is_tensor = torch.is_tensor(value) and value.dim() > 0
            out[key] = value[order] if is_tensor and value.shape[0] == e else value[perm] if is_tensor and value.shape[0] == n else value
    return out, perm


@torch.no_grad()
def predict_glass(task, data, chunk_atoms: int | None = None, reorder_above: int = 2048) -> np.ndarray:
    """Per-atom eV predictions of ``task`` (eval mode) on one glass graph; in chunks of about
    ``chunk_atoms`` centre atoms with their k-hop halo when the glass is larger than that. Glasses
    of more than ``reorder_above`` atoms are predicted in spatial order (:func:`spatially_ordered`)."""
    from torch_geometric.data import Batch

    perm = None
    if data.num_nodes > reorder_above and not isinstance(data, Batch):
        data, perm = spatially_ordered(data)
    pred = _predict_as_numbered(task, data, chunk_atoms)
    if perm is None:
        return pred
    out = np.empty_like(pred)
    out[perm.numpy()] = pred
    return out


def _predict_as_numbered(task, data, chunk_atoms: int | None) -> np.ndarray:
    from torch_geometric.data import Batch

    was_training = task.training
    task.eval()
    try:
        hops = receptive_hops(task.net)  # None: the model does not say, so it is predicted whole
        if not chunk_atoms or data.num_nodes <= chunk_atoms or hops is None:
            whole = data if isinstance(data, Batch) else Batch.from_data_list([data])
            return task.predict_ev(whole.to(task.device)).cpu().double().numpy()
        out = np.empty(data.num_nodes)
        for centres in spatial_cells(data, chunk_atoms):
            sub, mapping = _subgraph(data, centres, hops)
            pred = task.predict_ev(Batch.from_data_list([sub]).to(task.device))
            out[centres.numpy()] = pred[mapping.to(pred.device)].cpu().double().numpy()
        return out
    finally:
        task.train(was_training)


def sampling_encoder(task):
    """SymGNN's edge encoder when its distribution draws transforms at random; else ValueError."""
    from mgglass.models.symgnn import SAMPLED

    enc = getattr(task.net, "edge_encoder", None)
    if getattr(enc, "distribution", None) not in SAMPLED:
        raise ValueError(f"--samples needs a SymGNN whose distribution samples transforms ({', '.join(SAMPLED)})")
    return enc


@torch.no_grad()
def transform_spread(task, data, samples: int, chunk_atoms: int | None = None) -> np.ndarray:
    """Per-atom std (eV) of the prediction over ``samples`` passes, each encoding the edges with one
    transform drawn from SymGNN's distribution (seeds 1..K; the usual prediction uses seed 0)."""
    enc = sampling_encoder(task)
    saved = enc.k_eval, enc.eval_seed
    try:
        enc.k_eval = 1
        preds = []
        for s in range(1, samples + 1):
            enc.eval_seed = saved[1] + s
            preds.append(predict_glass(task, data, chunk_atoms))
    finally:
        enc.k_eval, enc.eval_seed = saved
    return np.std(np.stack(preds), axis=0)


def predict_pooled(task, graphs) -> tuple[np.ndarray, np.ndarray]:
    """(labels, eV predictions) over whole labelled glasses, pooled."""
    ps = [predict_glass(task, g) for g in graphs]
    return np.concatenate([g.y.double().numpy() for g in graphs]), np.concatenate(ps)


# -- outputs -----------------------------------------------------------------------------------------
def to_atoms(data, species: list[str], arrays: dict[str, np.ndarray]):
    """One glass as ase Atoms with per-atom ``arrays`` (eb, eb_pred, eb_std, ...)."""
    from ase import Atoms
    from ase.data import atomic_numbers

    numbers = np.array([atomic_numbers[s] for s in species])[data.species.numpy()]
    atoms = Atoms(numbers=numbers, positions=data.pos.numpy(), cell=data.cell[0].numpy(), pbc=True)
    for key, values in arrays.items():
        atoms.new_array(key, np.asarray(values, dtype=float))
    atoms.info["glass"] = getattr(data, "name", "glass")
    return atoms


def write_predictions(extxyz: Path, frames, csv_path: Path | None = None) -> None:
    """Frames to extxyz, and one CSV row per atom (glass, atom, species, eb_ev, eb_pred_ev[, eb_std_ev])."""
    from ase.io import write

    extxyz.parent.mkdir(parents=True, exist_ok=True)
    write(extxyz, frames, format="extxyz")
    keys = [k for k in ("eb", "eb_pred", "eb_std") if all(k in a.arrays for a in frames)]
    with open(csv_path or extxyz.with_suffix(".csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["glass", "atom", "species", *(f"{k}_ev" for k in keys)])
        for a in frames:
            symbols = a.get_chemical_symbols()
            columns = [a.arrays[k] for k in keys]
            for i in range(len(a)):
                w.writerow([a.info["glass"], i, symbols[i], *(f"{c[i]:.6f}" for c in columns)])


def write_split_outputs(out: Path, task, graphs, species: list[str], model: str = "") -> None:
    """Per-atom predictions of ``task`` on a split: predictions.extxyz/.csv and parity.png under ``out``."""
    frames, ys, ps = [], [], []
    for g in graphs:
        pred = predict_glass(task, g)
        y = g.y.double().numpy() if "y" in g else np.full(len(pred), np.nan)
        frames.append(to_atoms(g, species, {"eb": y, "eb_pred": pred}))
        if "y" in g:
            ys.append(y)
            ps.append(pred)
    write_predictions(Path(out) / "predictions.extxyz", frames)
    if ys:
        y, p = np.concatenate(ys), np.concatenate(ps)
        from mgglass.task import pooled_metrics

        parity_plot(Path(out) / "parity.png", y, p, pooled_metrics(y, p), model)


def parity_plot(path: Path, y: np.ndarray, p: np.ndarray, stats: dict, model: str = "", split: str = "test") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    ax.scatter(y, p, s=3, alpha=0.4, lw=0)
    lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel("ARTn EB (eV)")
    ax.set_ylabel("predicted EB (eV)")
    ax.set_title(f"{model + ' ' if model else ''}{split}: r = {stats['r']:.3f}, MAE = {stats['mae']:.3f} eV")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- Trainer.predict over glass files ----------------------------------------------------------------
class PredictError(Exception):
    """A bad input or option, reported as one line."""


class GlassFiles(torch.utils.data.Dataset):
    """Glass files, each read when its turn comes as a graph built the way the checkpoint's fit built them."""

    def __init__(self, paths: list[Path], hp: dict, label_key: str = "eb"):
        self.paths, self.hp, self.label_key = paths, hp, label_key

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from mgglass.data import GlassDataError

        try:
            return read_graph(self.paths[i], self.hp, self.label_key)
        except GlassDataError as e:
            raise PredictError(str(e)) from None


class PredictionWriter(BasePredictionWriter):
    """Collects each glass's per-atom arrays from ``EBTask.predict_step`` (with its labels, when the
    file has them) and writes them all at the end: ``output`` (extxyz) and the CSV beside it."""

    def __init__(self, output: Path, species: list[str], paths: list[Path]):
        super().__init__(write_interval="batch")
        self.output, self.species, self.paths = output, species, paths
        self.frames, self.labelled = [], {}  # labelled: file name -> its arrays (eb, eb_pred[, eb_std])

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        data, path = batch.cpu(), self.paths[batch_indices[0]]
        arrays = dict(prediction)
        if "y" in data:
            arrays = {"eb": data.y.double().numpy(), **arrays}
            self.labelled[path.name] = arrays
        self.frames.append(to_atoms(data, self.species, arrays))
        print(f"{PROG}: {path}: {data.num_nodes} atoms predicted", file=sys.stderr, flush=True)

    def on_predict_end(self, trainer, pl_module):
        write_predictions(self.output, self.frames)

    def summary(self) -> dict:
        """Pearson r, R², MAE pooled over the labelled glasses and per glass; with ``eb_std``, how well
        it ranks the largest errors."""
        from mgglass.task import pooled_metrics

        if not self.labelled:
            return {}
        pooled = {k: np.concatenate([a[k] for a in self.labelled.values()]) for k in next(iter(self.labelled.values()))}
        out = {f"pooled_{k}": v for k, v in pooled_metrics(pooled["eb"], pooled["eb_pred"]).items()}
        out["per_glass"] = {name: pooled_metrics(a["eb"], a["eb_pred"]) for name, a in self.labelled.items()}
        if "eb_std" in pooled:
            from mgglass.ensemble import uncertainty_scores

            out["uncertainty"] = uncertainty_scores(pooled["eb"], pooled["eb_pred"], pooled["eb_std"])
        return out


def _one_glass(items: list):
    return items[0]  # a batch of one glass is that glass's graph (the sampler still reports its index)


def predict_files(task, paths: list[Path], hp: dict, output: Path, device: str = "cpu", label_key: str = "eb") -> dict:
    """``Trainer.predict`` over glass files, one glass per step on ``device``; writes ``output`` and
    its CSV and returns the labelled inputs' metrics (see :class:`PredictionWriter`)."""
    import logging

    import lightning as L

    # The Trainer's banner (GPU available, ...) is noise here: stderr keeps one line per glass or the error.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    writer = PredictionWriter(output, graph_settings(hp)[0], paths)
    accelerator, _, index = device.partition(":")
    trainer = L.Trainer(accelerator="gpu" if accelerator == "cuda" else "cpu", devices=[int(index)] if index else 1,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[writer])
    loader = torch.utils.data.DataLoader(GlassFiles(paths, hp, label_key), batch_size=1, collate_fn=_one_glass)
    trainer.predict(task, loader, return_predictions=False)
    return writer.summary()


# -- command line ------------------------------------------------------------------------------------


def expand_inputs(items: list[str]) -> list[Path]:
    """Files, folders (their glass files, sorted) and glob patterns -> files, in order, no repeats."""
    out: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in READABLE)
            if not found:
                raise PredictError(f"{item}: folder holds no glass files ({', '.join(READABLE)})")
        elif any(ch in item for ch in "*?["):
            found = sorted(Path(p) for p in glob.glob(item) if Path(p).is_file())
            if not found:
                raise PredictError(f"{item}: pattern matches no file")
        elif path.is_file():
            found = [path]
        else:
            raise PredictError(f"{item}: no such file")
        out.extend(p for p in found if p not in out)
    return out


def resolve_run(run_id: str, tracking_root: str = "mlruns", tracking_uri: str | None = None) -> Path:
    """A fit's MLflow run id -> its best-validation checkpoint (see :func:`resolve_checkpoints`);
    an ensemble's run is refused here (commands that take one model)."""
    ckpts = resolve_checkpoints(run_id, tracking_root, tracking_uri)
    if len(ckpts) > 1:
        raise PredictError(f"run {run_id} is an ensemble of {len(ckpts)} models; this command takes one (a member's run or --ckpt_path)")
    return ckpts[0]


def resolve_checkpoints(run_id: str, tracking_root: str = "mlruns", tracking_uri: str | None = None) -> list[Path]:
    """An MLflow run id -> the checkpoints it stands for: a fit's best-validation checkpoint (the run
    folder whose mlflow_run.json names the run, else the run's ``checkpoints/`` artifact, downloaded),
    or for an ensemble or cross-validation run (``members.*`` params) each member's."""
    from mgglass.tracking import read_run_file

    for run_file in sorted(Path(tracking_root).glob("checkpoints/*/mlflow_run.json")) + sorted(Path(tracking_root).glob("checkpoints/*/*/mlflow_run.json")):
        info = read_run_file(run_file.parent)
        if info and info.get("run_id") == run_id:
            return [pick_checkpoint(run_file.parent, f"run {run_id} ({run_file.parent})")]
    from mlflow.exceptions import MlflowException

    from mgglass.tracking import open_client

    uri = tracking_uri or f"sqlite:///{tracking_root}/mlflow.db"
    try:
        client = open_client(uri)
        run = client.get_run(run_id)
        members = sorted((k, v) for k, v in run.data.params.items() if k.startswith("members."))
        if members:
            return [_member_checkpoint(json.loads(v), k, tracking_root, tracking_uri) for k, v in members]
        folder = Path(client.download_artifacts(run_id, "checkpoints"))
    except (MlflowException, OSError) as e:
        raise PredictError(f"run {run_id}: not found in {tracking_root}/checkpoints nor in {uri} ({' '.join(str(e).split())[:200]})") from None
    return [pick_checkpoint(folder, f"run {run_id}")]


def _member_checkpoint(member: dict, key: str, tracking_root: str, tracking_uri: str | None) -> Path:
    """An ensemble member's checkpoint: the file it names, else its run's."""
    if member.get("checkpoint") and Path(member["checkpoint"]).is_file():
        return Path(member["checkpoint"])
    if not member.get("run_id"):
        raise PredictError(f"{key}: {member.get('checkpoint')}: no such checkpoint and no run to find it by")
    return resolve_run(member["run_id"], tracking_root, tracking_uri)


def pick_checkpoint(folder: Path, what: str) -> Path:
    best = sorted(folder.glob("best-*.ckpt"))
    if best:
        return best[-1]
    if (folder / "last.ckpt").is_file():
        return folder / "last.ckpt"
    raise PredictError(f"{what}: no checkpoint in {folder}")


def load_task(ckpt: Path, device: str):
    """(EBTask on ``device`` in eval mode, data settings the fit used: cutoff, species, ...)."""
    from mgglass.task import EBTask

    try:
        meta = torch.load(ckpt, map_location="cpu", weights_only=False)
        task = EBTask.load_from_checkpoint(ckpt, map_location=device)
    except Exception as e:  # noqa: BLE001 - torch/Lightning raise many types for a bad file
        raise PredictError(f"{ckpt}: not a loadable mgglass checkpoint ({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
    data = dict(meta.get("datamodule_hyper_parameters") or {})
    return task.eval(), data


def graph_settings(hp: dict) -> tuple[list[str], float, bool]:
    """(species, cutoff, self_loops) the fit built its graphs with, from ``load_task``'s settings."""
    from mgglass.data.structure import DEFAULT_SPECIES

    return list(hp.get("species") or DEFAULT_SPECIES), float(hp.get("cutoff", 5.0)), bool(hp.get("self_loops", False))


def read_graph(path: Path, hp: dict, label_key: str = "eb"):
    """One glass file as a graph built the way the checkpoint's fit built them (labels if present)."""
    from mgglass.data import glass_to_data, read_glass

    species, cutoff, self_loops = graph_settings(hp)
    return glass_to_data(read_glass(path, label_key=label_key, species=species, labels_optional=True), cutoff, species, self_loops)


def checkpoints_of(runs: list[str] | None, paths: list[str] | None, tracking_root: str = "mlruns",
                   tracking_uri: str | None = None) -> list[Path]:
    """The checkpoints named by ``--run`` ids (an ensemble's run gives its members) or ``--ckpt_path``s."""
    ckpts = [c for r in runs for c in resolve_checkpoints(r, tracking_root, tracking_uri)] if runs else [Path(c) for c in paths]
    for c in ckpts:
        if not c.is_file():
            raise PredictError(f"ckpt_path: {c}: no such checkpoint")
    return ckpts


def load_models(ckpts: list[Path], device: str):
    """(one task, or an :class:`mgglass.ensemble.EnsembleTask` of several; the data settings they share)."""
    from mgglass.ensemble import EnsembleError, EnsembleTask, check_members

    loaded = [load_task(c, device) for c in ckpts]
    if len(loaded) == 1:
        return loaded[0]
    settings = [dict(zip(("species", "cutoff", "self_loops"), graph_settings(hp))) for _, hp in loaded]
    try:
        check_members(settings, [str(c) for c in ckpts])
    except EnsembleError as e:
        raise PredictError(str(e)) from None
    return EnsembleTask([t for t, _ in loaded]).eval(), loaded[0][1]


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PredictError(f"--device {name}: no CUDA device is available")
    return name


def main(argv=None) -> int:
    import argparse

    from mgglass.runtime import keep_freed_memory, quiet_warnings

    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n", 1)[1].split("\n\nThis module")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", nargs="+", help="MLflow run id(s) of fits or of an ensemble (best-validation checkpoints; "
                                              "several: their ensemble, eb_std the members' spread)")
    src.add_argument("--ckpt_path", nargs="+", help="checkpoint(s) written by mgglass.fit (several: their ensemble)")
    p.add_argument("--input", nargs="+", required=True, help="glass files, folders or glob patterns (quote them)")
    p.add_argument("--output", required=True, help="extxyz file to write; the CSV goes beside it (.csv)")
    p.add_argument("--samples", type=int, default=0, help="SymGNN: also write eb_std over K sampled transforms")
    p.add_argument("--chunk_atoms", type=int, default=CHUNK_ATOMS, help="predict larger glasses in chunks of about this many atoms (0: never)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--label_key", default="eb", help="per-atom label array in ase-readable inputs (pickles use their own)")
    p.add_argument("--tracking_root", default="mlruns", help="where --run looks for run folders and mlflow.db")
    p.add_argument("--tracking_uri", default=None, help="MLflow tracking URI for --run (default: <tracking_root>/mlflow.db)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    keep_freed_memory()
    quiet_warnings()
    try:
        return _predict(args)
    except PredictError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr, flush=True)
        return 2


def _predict(args) -> int:
    if args.samples < 0 or args.chunk_atoms < 0:
        raise PredictError("--samples and --chunk_atoms must not be negative")
    output = Path(args.output)
    if output.suffix not in (".extxyz", ".xyz"):
        raise PredictError(f"--output {output}: expected an .extxyz file name")
    inputs = expand_inputs(args.input)
    ckpts = checkpoints_of(args.run, args.ckpt_path, args.tracking_root, args.tracking_uri)
    device = _device(args.device)
    task, hp = load_models(ckpts, device)
    if args.samples:
        if len(ckpts) > 1:
            raise PredictError("--samples: an ensemble's eb_std is its members' spread; --samples is for one model")
        try:
            sampling_encoder(task)
        except ValueError as e:
            raise PredictError(f"{ckpts[0]}: {e}") from None
    task.predict_chunk_atoms, task.predict_samples = args.chunk_atoms, args.samples
    metrics = predict_files(task, inputs, hp, output, device, args.label_key)
    summary = {"checkpoint": str(ckpts[0]) if len(ckpts) == 1 else [str(c) for c in ckpts], "output": str(output), "csv": str(output.with_suffix(".csv")), "glasses": len(inputs), **metrics}
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
