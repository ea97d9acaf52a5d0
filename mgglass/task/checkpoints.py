"""From a checkpoint written by ``mgglass.fit`` back to a model ready to predict: loading it as an
:class:`~mgglass.task.EBTask` with the data settings of its fit, and reading a glass file the way
that fit built its graphs."""

from __future__ import annotations

from pathlib import Path

import torch

from mgglass.data import GlassDataModule, glass_to_data, read_glass
from mgglass.data.structure import DEFAULT_SPECIES
from mgglass.task.ebtask import EBTask


class PredictError(Exception):
    """A run, checkpoint or glass that cannot be used to predict, reported as one line."""


def load_task(ckpt: Path, device: str):
    """(EBTask on ``device`` in eval mode, data settings the fit used: cutoff, species, ...)."""
    try:
        meta = torch.load(ckpt, map_location="cpu", weights_only=False)
        task = EBTask.load_from_checkpoint(ckpt, map_location=device)
    except Exception as e:  # noqa: BLE001 - torch/Lightning raise many types for a bad file
        raise PredictError(f"{ckpt}: not a loadable mgglass checkpoint ({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
    data = dict(meta.get("datamodule_hyper_parameters") or {})
    # The glasses the fit saw, summarised (GlassDataModule.state_dict): what --level needs without them.
    data["_glass_summaries"] = (meta.get(GlassDataModule.__qualname__) or {}).get("glass_summaries")
    return task.eval(), data


def graph_settings(hp: dict) -> tuple[list[str], float, bool]:
    """(species, cutoff, self_loops) the fit built its graphs with, from ``load_task``'s settings."""
    return list(hp.get("species") or DEFAULT_SPECIES), float(hp.get("cutoff", 5.0)), bool(hp.get("self_loops", False))


def read_fit_glass(path: Path, hp: dict, label_key: str = "eb"):
    """One glass file read with the checkpoint's species map (labels if present)."""
    return read_glass(path, label_key=label_key, species=graph_settings(hp)[0], labels_optional=True)


def fit_graph(glass, hp: dict):
    """A glass as a graph built the way the checkpoint's fit built them."""
    species, cutoff, self_loops = graph_settings(hp)
    return glass_to_data(glass, cutoff, species, self_loops)


def read_graph(path: Path, hp: dict, label_key: str = "eb"):
    """One glass file as a graph built the way the checkpoint's fit built them (labels if present)."""
    return fit_graph(read_fit_glass(path, hp, label_key), hp)


def resolve_device(name: str) -> str:
    """``auto`` -> cuda when there is a GPU, else cpu; a CUDA device that is not there is refused."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda") or (index and (kind == "cpu" or not index.isdigit())):
        raise PredictError(f"--device {name}: expected auto, cpu, cuda or cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PredictError(f"--device {name}: no CUDA device is available")
    return name
