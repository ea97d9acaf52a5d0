"""GlassDataModule: splits of glass files -> graph batches, label normalisation from train only."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import lightning as L
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, Sampler
from torch_geometric.loader import DataLoader

from .dataset import glass_names, load_graph
from .download import OFFICIAL_BASE_URL, cache_dir, resolve_files, sha256_file
from .order import spatially_ordered
from .structure import read_glass
from .synthetic import write_synthetic

OFFICIAL_SPLIT = {
    "train": tuple(f"train{i}.pickle" for i in range(6)),
    "val": ("train6.pickle",),
    "test": ("test0.pickle",),
}
SPLITS = ("train", "val", "test")
# What each Trainer entry point reads. validate and test score one split with the normaliser the
# checkpoint carries (load_state_dict), so a checkpoint is scored without the glasses it was trained
# on; a fit, or no stage, reads every split (a missing test glass fails before training, not after).
STAGE_SPLITS = {"validate": ("val",), "test": ("test",), "predict": ("test",)}


def splits_for(stage: str | None) -> tuple[str, ...]:
    return STAGE_SPLITS.get(stage, SPLITS)


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EvalShardSampler(Sampler[int]):
    """This rank's share of the glasses, ``rank::world``, never padded, so pooled validation and test
    metrics count every atom exactly once. (Training uses torch's ``DistributedSampler``, whose
    padding by repeats is what training wants: every rank takes the same number of steps, so DDP's
    gradient sync never waits on a rank that has finished; for evaluation it would count glasses twice.)"""

    def __init__(self, n: int, rank: int = 0, world: int = 1):
        self.n, self.rank, self.world = n, rank, world

    def __iter__(self):
        return iter(range(self.rank, self.n, self.world))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))


class GlassDataModule(L.LightningDataModule):
    """Glasses in a folder, split by file name, as torch_geometric batches of whole glasses. Training
    glasses are held in spatial atom order (:func:`mgglass.data.order.spatially_ordered`); validation and
    test glasses in their files' order.

    Args:
        root: folder with the glass files; None: $MGGLASS_DATA_DIR, else the official files are
            downloaded (SHA-256 verified) into the user cache; "synthetic": seeded synthetic glasses
            are generated under the cache for the names in the splits.
        train, val, test: file names of each split (default: the official Cu64Zr36 split).
        cutoff: radius-graph cutoff in Å. self_loops: add zero-length (i, i) edges (the paper's graphs had them).
        species: chemical symbols in model-index order (Cu -> 0, Zr -> 1).
        label_key: per-atom array holding the label in ase-readable files (pickles use their own key).
        aux_targets: per-atom arrays of the training glasses to predict as auxiliary targets (e.g. the
            pickles' ``pot``, ``press``, ``von``), each standardised within species and glass; linked
            to ``model.aux_targets``, which weights them in the loss. Empty: none.
        batch_size: glasses per batch. cache: processed-graph cache folder (None: user cache).
        synthetic_atoms, synthetic_seed: size and seed of generated glasses when root is "synthetic".
    """

    def __init__(
        self,
        root: str | None = None,
        train: tuple[str, ...] = OFFICIAL_SPLIT["train"],
        val: tuple[str, ...] = OFFICIAL_SPLIT["val"],
        test: tuple[str, ...] = OFFICIAL_SPLIT["test"],
        cutoff: float = 5.0,
        self_loops: bool = False,
        species: tuple[str, ...] = ("Cu", "Zr"),
        label_key: str = "eb",
        batch_size: int = 1,
        num_workers: int = 0,
        cache: str | None = None,
        base_url: str = OFFICIAL_BASE_URL,
        synthetic_atoms: int = 128,
        synthetic_seed: int = 0,
        aux_targets: tuple[str, ...] = (),
    ):
        super().__init__()
        self.save_hyperparameters()
        self.splits = {"train": list(train), "val": list(val), "test": list(test)}
        self.y_mean: float | None = None
        self.y_std: float | None = None
        self.graphs: dict[str, list] = {}
        self._digests: list[tuple[str, Path, str]] | None = None  # see file_digests
        self._summaries: dict[str, dict] | None = None  # see glass_summaries

    # -- files ---------------------------------------------------------------------------------
    def files(self, split: str) -> list[Path]:
        hp = self.hparams
        names = self.splits[split]
        if hp.root == "synthetic":
            folder = cache_dir() / "synthetic" / f"n{hp.synthetic_atoms}_s{hp.synthetic_seed}"
            return write_synthetic(folder, names, n_atoms=hp.synthetic_atoms, seed=hp.synthetic_seed)
        return resolve_files(names, hp.root, hp.base_url)

    def file_digests(self) -> list[tuple[str, Path, str]]:
        """(split, file, SHA-256 of its bytes) for every glass of every split; read once (the fit's
        data hash and the run's dataset inputs both use them)."""
        if self._digests is None:
            self._digests = [(split, path, sha256_file(path)) for split in ("train", "val", "test") for path in self.files(split)]
        return self._digests

    def content_hash(self) -> str:
        """SHA-256 over every split's file names and bytes: the dataset tag of a run."""
        h = hashlib.sha256()
        for split, path, digest in self.file_digests():
            h.update(f"{split}:{path.name}:{digest}\n".encode())
        return h.hexdigest()

    def glass_summaries(self) -> dict[str, dict]:
        """Each glass the fit sees (training and validation) -> :meth:`Glass.summary`. Checkpoints keep
        them (``state_dict``), so that ``mgglass.predict --level`` places a glass without the fit's files."""
        if self._summaries is None:
            hp = self.hparams
            files = list(dict.fromkeys(self.files("train") + self.files("val")))
            self._summaries = {
                name: read_glass(path, label_key=hp.label_key, species=list(hp.species), labels_optional=True).summary(hp.species)
                for path, name in zip(files, glass_names(files))
            }
        return self._summaries

    def prepare_data(self) -> None:
        # Runs on one process per node: download/generate and fill the graph cache once.
        fn = getattr(getattr(self.trainer, "state", None), "fn", None)
        for split in splits_for(getattr(fn, "value", None)):
            for path in self.files(split):
                self._load(path, split)

    def _load(self, path: Path, split: str):
        hp = self.hparams
        aux = tuple(hp.aux_targets) if split == "train" else ()  # only training reads them
        return load_graph(path, hp.cutoff, tuple(hp.species), hp.self_loops, hp.label_key, hp.cache, aux)

    # -- graphs --------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Read the graphs of the splits ``stage`` needs (:func:`splits_for`); the label normaliser is
        fitted on the training glasses when they are read, else it comes from a checkpoint."""
        for split in splits_for(stage):
            if split not in self.graphs:
                files = self.files(split)
                self.graphs[split] = [self._load(p, split) for p in files]
                if split == "train":  # in spatial order: ~5% off a step; nothing reads a training atom by index
                    self.graphs[split] = [spatially_ordered(g)[0] for g in self.graphs[split]]
                for g, name in zip(self.graphs[split], glass_names(files)):
                    g.name = name  # what outputs call it: a/final.extxyz and b/final.extxyz stay two glasses
        if self.y_mean is None and "train" in self.graphs:
            self._fit_normaliser()
        self._normalise()

    def _normalise(self) -> None:
        if self.y_mean is None:
            return  # until a checkpoint's normaliser arrives (load_state_dict)
        for graphs in self.graphs.values():
            for g in graphs:
                if "y" in g:
                    g.y_norm = (g.y - self.y_mean) / self.y_std

    def _fit_normaliser(self) -> None:
        labels = [g.y for g in self.graphs["train"] if "y" in g]
        if not labels:
            raise ValueError(f"training split {self.splits['train']} has no labels to normalise with")
        y = torch.cat(labels).double()
        self.y_mean, self.y_std = float(y.mean()), float(y.std().clamp_min(1e-12))

    def state_dict(self) -> dict:
        return {"y_mean": self.y_mean, "y_std": self.y_std, "glass_summaries": self.glass_summaries()}

    def load_state_dict(self, state: dict) -> None:
        # Lightning restores a checkpoint after setup: the graphs read for validate/test get its normaliser.
        self.y_mean, self.y_std = state["y_mean"], state["y_std"]
        self._summaries = state.get("glass_summaries") or self._summaries  # checkpoints before 2026-12-06 lack them
        self._normalise()

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        graphs = self.graphs[split]
        # The glass order follows the run's seed (seed_everything exports it), not the data's.
        seed = int(os.environ.get("PL_GLOBAL_SEED", "0"))
        rank, world = rank_and_world()
        if shuffle:
            sampler = DistributedSampler(graphs, num_replicas=world, rank=rank, shuffle=True, seed=seed)
        else:
            sampler = EvalShardSampler(len(graphs), rank, world)
        return DataLoader(
            graphs, batch_size=self.hparams.batch_size, sampler=sampler, num_workers=self.hparams.num_workers
        )

    def train_dataloader(self):
        return self._loader("train", shuffle=True)

    def val_dataloader(self):
        return self._loader("val", shuffle=False)

    def test_dataloader(self):
        return self._loader("test", shuffle=False)

    def predict_dataloader(self):
        return self._loader("test", shuffle=False)
