"""python -m mgglass.predict (--run RUN_ID [RUN_ID ...] | --ckpt_path CKPT [CKPT ...]) --input GLASS [GLASS|DIR|GLOB ...] --output out.extxyz
    [--samples K] [--level KEY] [--chunk_atoms N] [--device auto|cpu|cuda] [--label_key eb] [--tracking_root mlruns]

Per-atom energy barriers (eV) of any glasses mgglass reads, from a trained run alone: written as the
per-atom array ``eb_pred`` in extxyz (ase, OVITO) and as CSV beside it (``out.csv``). When the inputs
carry labels, Pearson r, R² and MAE are printed (pooled and per glass). With SymGNN, ``--samples K``
also writes ``eb_std``: the spread of the prediction over K single sampled O(3) transforms. Several
runs or checkpoints (or the run of an ensemble, ``python -m mgglass.ensemble``, or of a
cross-validation) predict as an ensemble: ``eb_pred`` is their mean and ``eb_std`` their spread
(and ``eb_sigma``, the spread with the calibrated residual, for an ensemble run recorded with
``mgglass.ensemble --calibrate``). ``--level KEY`` moves each glass's predictions onto the level its
mean per-atom energy gives on a line fitted over the glasses the fit saw (:mod:`mgglass.level`;
``eb_pred_network`` keeps the network's own). A glass whose mean per-atom ``pot`` (or ``KEY``) lies
outside the range of the glasses the fit saw, or whose composition is not theirs, is said so in one
line on stderr (:class:`mgglass.level.Series`).

Large glasses are predicted in parts, with the whole-glass prediction's numbers (up to float
summation order): SymGNN and its EGAT variants layer by layer over ranges of atoms (no halo; a
million atoms in about 80 s and 7 GiB on 2 cores), other models in spatial cells of
about ``--chunk_atoms`` atoms, each on its k-hop subgraph (k = the model's message-passing depth),
which holds every atom and edge the cell's predictions depend on.

The command runs ``Trainer.predict`` over the files (one glass per step, read when its turn comes;
``EBTask.predict_step``) with a ``BasePredictionWriter`` that writes them. The library beneath it:
:mod:`mgglass.inference` (``predict_glass``, chunked or whole), :mod:`mgglass.outputs` (writers, parity
plot), :mod:`mgglass.task` (loading a checkpoint, ensembles) and :mod:`mgglass.tracking` (run lookup).
"""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from mgglass.data import GlassDataError, glass_names
from mgglass.data.order import in_file_order, ordered_for_prediction
from mgglass.inference import CHUNK_ATOMS, sampling_encoder
from mgglass.level import LevelError, LevelLine, Series
from mgglass.metrics import pooled_metrics
from mgglass.outputs import to_atoms, write_predictions
from mgglass.runtime import (
    OutputError,
    keep_freed_memory,
    output_dir,
    quiet_banner,
    quiet_warnings,
)
from mgglass.task import (
    EnsembleTask,
    PredictError,
    fit_graph,
    graph_settings,
    load_models,
    read_fit_glass,
    resolve_device,
    uncertainty_scores,
)
from mgglass.tracking import calibrated_residual, checkpoints_of

PROG = "mgglass.predict"
READABLE = (".pickle", ".pkl", ".extxyz", ".xyz", ".cfg", ".data", ".dump", ".lammpstrj", ".vasp", ".cif", ".traj")


# -- Trainer.predict over glass files ----------------------------------------------------------------
class GlassFiles(torch.utils.data.Dataset):
    """Glass files, each read when its turn comes as a graph built the way the checkpoint's fit built
    them; large glasses in spatial atom order (:func:`ordered_for_prediction`: the graph as read is
    dropped at once, and the writer puts the atoms back in the file's order). With a level ``line``,
    each glass's mean level (:meth:`LevelLine.level_of`) goes to ``levels`` by index; with a ``series``,
    where the glass lies in it goes to ``places``, and a glass outside it is named on stderr."""

    def __init__(self, paths: list[Path], hp: dict, label_key: str = "eb", line: LevelLine | None = None,
                 series: Series | None = None):
        self.paths, self.hp, self.label_key, self.line, self.series = paths, hp, label_key, line, series
        self.names = glass_names(paths)
        self.levels: dict[int, float] = {}
        self.places: dict[int, dict] = {}  # with a series: where each glass lies in it (Series.place)
        # The file's positions and cell as read (float64), for the writer: the graph holds float32 copies.
        self.coords: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            glass = read_fit_glass(self.paths[i], self.hp, self.label_key)
            if self.line is not None:
                self.levels[i] = self.line.level_of(glass)
            if self.series is not None and (place := self.series.place(glass, self.levels.get(i))) is not None:
                self.places[i] = place
                if notice := self.series.notice(self.paths[i], place):
                    print(f"{PROG}: {notice}", file=sys.stderr, flush=True)
            self.coords[i] = (np.asarray(glass.positions, dtype=np.float64), np.asarray(glass.cell, dtype=np.float64))
            return ordered_for_prediction(fit_graph(glass, self.hp))
        except (GlassDataError, LevelError) as e:
            raise PredictError(str(e)) from None


class PredictionWriter(BasePredictionWriter):
    """Collects each glass's per-atom arrays from ``EBTask.predict_step`` (with its labels, when the
    file has them) and writes them all at the end: ``output`` (extxyz) and the CSV beside it."""

    def __init__(self, output: Path, species: list[str], files: GlassFiles):
        super().__init__(write_interval="batch")
        self.output, self.species, self.files = output, species, files
        self.frames, self.labelled = [], {}  # labelled: glass name -> its arrays (eb, eb_pred[, eb_std])
        self.placed = {}  # with a level line: glass name -> what the line did to its predictions

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        i = batch_indices[0]
        path, name = self.files.paths[i], self.files.names[i]
        data, arrays = in_file_order(batch.cpu(), dict(prediction))
        data.name = name
        pos, cell = self.files.coords.pop(i)
        data.pos, data.cell = torch.from_numpy(pos), torch.from_numpy(cell).unsqueeze(0)  # as in the file
        if self.files.line is not None:
            network = arrays["eb_pred"]
            shifted, self.placed[name] = self.files.line.shift(network, self.files.levels[i])
            arrays = {"eb_pred": shifted, "eb_pred_network": network, **{k: v for k, v in arrays.items() if k != "eb_pred"}}
        if "y" in data:
            arrays = {"eb": data.y.double().numpy(), **arrays}
            self.labelled[name] = arrays
        self.frames.append(to_atoms(data, self.species, arrays))
        print(f"{PROG}: {path}: {data.num_nodes} atoms predicted", file=sys.stderr, flush=True)

    def on_predict_end(self, trainer, pl_module):
        write_predictions(self.output, self.frames)

    def summary(self) -> dict:
        """Pearson r, R², MAE pooled over the labelled glasses and per glass; with ``eb_std``, how well
        it ranks the largest errors."""
        out = {"level": {"line": self.files.line.describe(), "per_glass": self.placed}} if self.placed else {}
        if self.files.places:
            out["series"] = {**self.files.series.describe(),
                             "per_glass": {self.files.names[i]: place for i, place in sorted(self.files.places.items())}}
        if not self.labelled:
            return out
        pooled = {k: np.concatenate([a[k] for a in self.labelled.values()]) for k in next(iter(self.labelled.values()))}
        out.update({f"pooled_{k}": v for k, v in pooled_metrics(pooled["eb"], pooled["eb_pred"]).items()})
        out["per_glass"] = {name: pooled_metrics(a["eb"], a["eb_pred"]) for name, a in self.labelled.items()}
        if "eb_std" in pooled:
            out["uncertainty"] = uncertainty_scores(pooled["eb"], pooled["eb_pred"], pooled["eb_std"])
        if "eb_sigma" in pooled:  # a calibrated ensemble's spread with its residual
            out["uncertainty_sigma"] = uncertainty_scores(pooled["eb"], pooled["eb_pred"], pooled["eb_sigma"])
        return out


def _one_glass(items: list):
    return items[0]  # a batch of one glass is that glass's graph (the sampler still reports its index)


def predict_files(task, paths: list[Path], hp: dict, output: Path, device: str = "cpu", label_key: str = "eb",
                  line: LevelLine | None = None, series: Series | None = None) -> dict:
    """``Trainer.predict`` over glass files, one glass per step on ``device``; writes ``output`` and
    its CSV and returns the labelled inputs' metrics (see :class:`PredictionWriter`). ``line``: each
    glass's predictions moved onto its level (:mod:`mgglass.level`); ``series``: a glass outside the
    glasses the fit saw is said so on stderr, and where each lies goes into the summary."""
    import lightning as L

    quiet_banner()
    files = GlassFiles(paths, hp, label_key, line, series)
    writer = PredictionWriter(output, graph_settings(hp)[0], files)
    accelerator, _, index = device.partition(":")
    trainer = L.Trainer(accelerator="gpu" if accelerator == "cuda" else "cpu", devices=[int(index)] if index else 1,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[writer])
    loader = torch.utils.data.DataLoader(files, batch_size=1, collate_fn=_one_glass)
    trainer.predict(task, loader, return_predictions=False)
    return writer.summary()


# -- command line ------------------------------------------------------------------------------------


def expand_inputs(items: list[str]) -> list[Path]:
    """Files, folders (their glass files, sorted) and glob patterns -> files, in order, no repeats
    (a file named twice, however spelt, is predicted once)."""
    out: list[Path] = []
    seen: set[Path] = set()
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
        for p in found:
            if (key := p.resolve()) not in seen:
                seen.add(key)
                out.append(p)
    return out


def main(argv=None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n", 1)[1].split("\n\nThe command runs")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", nargs="+", help="MLflow run id(s) of fits or of an ensemble (best-validation checkpoints; "
                                              "several: their ensemble, eb_std the members' spread)")
    src.add_argument("--ckpt_path", nargs="+", help="checkpoint(s) written by mgglass.fit (several: their ensemble)")
    p.add_argument("--input", nargs="+", required=True, help="glass files, folders or glob patterns (quote them)")
    p.add_argument("--output", required=True, help="extxyz file to write; the CSV goes beside it (.csv)")
    p.add_argument("--samples", type=int, default=0, help="SymGNN: also write eb_std over K sampled transforms")
    p.add_argument("--level", metavar="KEY", help="move each glass's predictions onto the level its mean per-atom KEY gives on "
                                                  "a line fitted over the glasses the fit saw (KEY: a per-atom array they and the "
                                                  "inputs carry, e.g. the pickles' pot; eam: energies from the md extra's EAM)")
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
    except (PredictError, OutputError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr, flush=True)
        return 2


def _predict(args) -> int:
    if args.samples < 0 or args.chunk_atoms < 0:
        raise PredictError("--samples and --chunk_atoms must not be negative")
    output = Path(args.output)
    if output.suffix not in (".extxyz", ".xyz"):
        raise PredictError(f"--output {output}: expected an .extxyz file name")
    inputs = expand_inputs(args.input)
    output_dir(output.parent, "--output")
    if output.resolve() in {p.resolve() for p in inputs}:
        raise PredictError(f"--output {output}: is also an input glass (named, or in a folder or pattern given to --input); "
                           "writing it would replace that glass")
    ckpts = checkpoints_of(args.run, args.ckpt_path, args.tracking_root, args.tracking_uri)
    device = resolve_device(args.device)
    residual = calibrated_residual(args.run, args.tracking_root, args.tracking_uri) if len(ckpts) > 1 else None
    task, hp = load_models(ckpts, device, residual)
    if args.samples:
        if len(ckpts) > 1:
            raise PredictError("--samples: an ensemble's eb_std is its members' spread; --samples is for one model")
        try:
            sampling_encoder(task)
        except ValueError as e:
            raise PredictError(f"{ckpts[0]}: {e}") from None
    task.predict_chunk_atoms, task.predict_samples = args.chunk_atoms, args.samples
    line = None
    settings = task.member_settings if isinstance(task, EnsembleTask) else [hp]
    if args.level:
        try:
            line = LevelLine.of_fits(settings, args.level)
        except (GlassDataError, LevelError) as e:
            raise PredictError(str(e)) from None
    series = Series.of_line(line) if line is not None else Series.of_fits(settings)
    metrics = predict_files(task, inputs, hp, output, device, args.label_key, line, series)
    summary = {"checkpoint": str(ckpts[0]) if len(ckpts) == 1 else [str(c) for c in ckpts], "output": str(output), "csv": str(output.with_suffix(".csv")), "glasses": len(inputs), **metrics}
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
