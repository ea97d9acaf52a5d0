"""EBTask: the one LightningModule that trains any registry model on per-atom energy barriers.

The wrapped model predicts the train-split-standardised label ``batch.y_norm``; the task minimises the
MSE on that scale and reports metrics in eV, pooled over every atom of a split (torchmetrics, synced
across DDP ranks so they equal the single-process values). ``y_mean``/``y_std`` are copied from the
DataModule when fitting starts and kept as buffers, so a checkpoint alone predicts in eV::

    task = EBTask.load_from_checkpoint("best.ckpt")
    eb_ev = task.predict_ev(batch)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, MeanSquaredError, MetricCollection

from mgglass.compat import cli_instantiating
from mgglass.data.datamodule import SPLITS
from mgglass.inference import predict_glass, transform_spread
from mgglass.metrics import per_glass_r, split_metrics


def paper_adam(params: Iterable) -> torch.optim.Optimizer:
    """The paper's optimiser: Adam with amsgrad, lr 1e-4."""
    return torch.optim.Adam(params, lr=1e-4, amsgrad=True)


class EBTask(L.LightningModule):
    """Wraps a registry model (``net``) for training, validation, test and prediction.

    Args:
        net: the model, ``net(batch) -> Tensor[N]`` predicting ``batch.y_norm``.
        optimizer: callable params -> optimizer (default: Adam, amsgrad, lr 1e-4).
        scheduler: optional callable optimizer -> LR scheduler; ReduceLROnPlateau is stepped on
            ``scheduler_monitor`` once per epoch, every other scheduler per ``scheduler_interval``.
        scheduler_monitor: the metric a plateau scheduler watches (validation only; its ``mode`` must
            match: ``max`` for ``val_r``).
        scheduler_interval: ``epoch`` or ``step`` (optimizer steps), how often the scheduler steps.
            Plateau schedulers step once per epoch whatever this says.
        offset_weight: weight of each glass's mean error in the training loss, which is the MSE split
            as within-glass error + ``offset_weight`` x squared mean error per glass: 1 is the plain MSE;
            less lets training spend itself on the within-glass ranking that Pearson r scores (the
            training glasses' mean EBs differ by up to 0.34 eV, and train-mode batch norm, with one
            glass's statistics, hides glass-level shifts from the network). Reported losses stay MSE.
        aux_targets: names of per-atom arrays the training glasses carry as ``batch.aux`` (linked from
            ``data.aux_targets``; e.g. the pickles' ``pot``, ``press``, ``von``): a small head predicts
            them from the net's per-atom features (``net.features``, ``net.head``: SymGNN and its
            variants), and the loss adds ``aux_weight`` x their MSE. Training only: predictions and
            metrics are the EB's alone, and a checkpoint predicts without them.
        aux_weight: weight of the auxiliary MSE (standardised targets) in the training loss.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[[Iterable], torch.optim.Optimizer] = paper_adam,
        scheduler: Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler] | None = None,
        scheduler_monitor: str = "val_r",
        scheduler_interval: str = "epoch",
        offset_weight: float = 1.0,
        aux_targets: tuple[str, ...] = (),
        aux_weight: float = 0.3,
    ):
        super().__init__()
        # Under LightningCLI the hyperparameters are saved as the config (class paths + init args), so
        # `EBTask.load_from_checkpoint(path)` rebuilds the net with nothing else given.
        self.save_hyperparameters(ignore=[] if cli_instantiating() else ["net", "optimizer", "scheduler"])
        self.net = net
        self.optimizer_fn = optimizer
        self.scheduler_fn = scheduler
        self.scheduler_monitor = scheduler_monitor
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'step', not {scheduler_interval!r}")
        self.scheduler_interval = scheduler_interval
        if not 0.0 <= offset_weight <= 1.0:
            raise ValueError(f"offset_weight must lie in [0, 1], not {offset_weight!r}")
        self.offset_weight = offset_weight
        self.aux_targets, self.aux_weight = tuple(aux_targets), aux_weight
        self.aux_head = self._aux_head(net, len(self.aux_targets)) if self.aux_targets else None
        self._aux_loss = MeanMetric() if self.aux_targets else None
        self.register_buffer("y_mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("y_std", torch.ones((), dtype=torch.float64))
        # ModuleDict keys become attributes, and "train" would shadow nn.Module.train: keys are "<split>_".
        self._losses = nn.ModuleDict({f"{s}_": MeanSquaredError() for s in SPLITS})
        self._metrics = nn.ModuleDict({f"{s}_": split_metrics() for s in SPLITS})
        # Mean over glasses of each glass's own Pearson r (``<split>_r_glass``): with several validation
        # glasses of different mean barriers, the pooled r also rewards getting their levels apart.
        self._glass_r = nn.ModuleDict({f"{s}_": MeanMetric() for s in ("val", "test")})
        # epoch -> {"train_loss": ..., "val_r": ..., "lr": ...}: kept in checkpoints, so a resumed run
        # can re-log any epoch the tracker had not yet written (see mgglass.tracking).
        self.history: dict[int, dict[str, float]] = {}
        self.last_metrics: dict[str, dict[str, float]] = {}
        self.epoch_extras: dict[str, float] = {}  # callbacks' per-epoch values, merged into the history
        self._computed_epoch: dict[str, int] = {}
        self._epoch_start = 0.0

    @staticmethod
    def _aux_head(net: nn.Module, k: int) -> nn.Module:
        if not all(hasattr(net, a) for a in ("features", "head", "feature_dim")):
            raise ValueError(f"{type(net).__name__} has no per-atom features to read auxiliary targets from (net.features/net.head)")
        d = net.feature_dim
        return nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, k))

    # -- normalisation -------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and getattr(dm, "y_mean", None) is not None:
            self.y_mean.fill_(float(dm.y_mean))
            self.y_std.fill_(float(dm.y_std))

    def to_ev(self, y_norm: Tensor) -> Tensor:
        return (y_norm.double() * self.y_std + self.y_mean).float()

    def forward(self, batch) -> Tensor:
        """Normalised prediction [N] (what the model is trained on)."""
        return self.net(batch)

    @torch.no_grad()
    def predict_ev(self, batch) -> Tensor:
        """Prediction in eV [N]."""
        return self.to_ev(self.net(batch))

    def loss_metric(self, split: str) -> MeanSquaredError:
        return self._losses[f"{split}_"]

    def metric_set(self, split: str) -> MetricCollection:
        return self._metrics[f"{split}_"]

    # -- steps ---------------------------------------------------------------------------------
    def _step(self, batch, split: str) -> Tensor:
        if self.aux_head is not None and split == "train":
            pred, aux_loss = self._with_aux(batch)
        else:
            pred, aux_loss = self.net(batch), None
        target = batch.y_norm.to(pred.dtype)
        loss = self.loss_fn(pred, target, getattr(batch, "batch", None))
        if aux_loss is not None:
            self._aux_loss.update(aux_loss.detach())
            loss = loss + self.aux_weight * aux_loss
        self.loss_metric(split).update(pred.detach(), target)
        self.metric_set(split).update(self.to_ev(pred.detach()), batch.y.float())
        if split != "train":
            for r in per_glass_r(pred.detach(), target, getattr(batch, "batch", None)):
                self._glass_r[f"{split}_"].update(r)
        return loss

    def _with_aux(self, batch) -> tuple[Tensor, Tensor]:
        """(prediction, MSE of the auxiliary head) from one pass through the net's features."""
        aux = getattr(batch, "aux", None)
        if aux is None or aux.shape[-1] != len(self.aux_targets):
            raise ValueError(f"model.aux_targets {list(self.aux_targets)}: the training glasses carry no matching auxiliary targets (data.aux_targets)")
        features = self.net.features(batch)
        return self.net.head(features), nn.functional.mse_loss(self.aux_head(features), aux.to(features.dtype))

    def loss_fn(self, pred: Tensor, target: Tensor, glass: Tensor | None) -> Tensor:
        """MSE with each glass's mean error weighted by ``offset_weight`` (``glass``: atom -> glass index)."""
        if self.offset_weight == 1.0:
            return nn.functional.mse_loss(pred, target)
        from torch_geometric.utils import scatter

        err = pred - target
        glass = torch.zeros_like(err, dtype=torch.long) if glass is None else glass
        offset = scatter(err, glass, dim=0, reduce="mean")[glass]
        return ((err - offset) ** 2).mean() + self.offset_weight * (offset**2).mean()

    def training_step(self, batch, batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "test")

    # Trainer.predict settings, set by mgglass.predict (not hyperparameters: a checkpoint predicts the same either way).
    predict_chunk_atoms: int | None = None  # glasses larger than this go in chunks with their halo
    predict_samples: int = 0  # SymGNN: also the per-atom std over this many single sampled transforms

    def predict_step(self, batch, batch_idx: int = 0, dataloader_idx: int = 0) -> dict:
        """One glass -> per-atom eV arrays: ``eb_pred`` (and ``eb_std`` with ``predict_samples``)."""
        out = {"eb_pred": predict_glass(self, batch, self.predict_chunk_atoms)}
        if self.predict_samples:
            out["eb_std"] = transform_spread(self, batch, self.predict_samples, self.predict_chunk_atoms)
        return out

    # -- epoch ends: compute pooled (synced) metrics, log them for callbacks, keep a history ----
    def _compute(self, split: str) -> dict[str, float]:
        out = {f"{split}_loss": float(self.loss_metric(split).compute())}
        for name, value in self.metric_set(split).compute().items():
            out[f"{split}_{name}"] = float(value)
        if split != "train":
            out[f"{split}_r_glass"] = float(self._glass_r[f"{split}_"].compute())
            self._glass_r[f"{split}_"].reset()
        self.loss_metric(split).reset()
        self.metric_set(split).reset()
        self.last_metrics[split] = out
        self._computed_epoch[split] = int(self.current_epoch)
        # Values are already synced by torchmetrics: no sync_dist (a rank without batches must not
        # be asked to take part in a collective from inside Lightning's logging).
        self.log_dict(out, prog_bar=split != "train", sync_dist=False, batch_size=1)
        return out

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self.loss_metric("val").reset()
            self.metric_set("val").reset()
            self._glass_r["val_"].reset()
            return
        self._compute("val")

    def on_train_epoch_end(self) -> None:
        row = self._compute("train")
        if self._aux_loss is not None:
            row["train_aux_loss"] = float(self._aux_loss.compute())
            self._aux_loss.reset()
        if self._computed_epoch.get("val") == int(self.current_epoch):
            row.update(self.last_metrics["val"])
        row["lr"] = float(self.trainer.optimizers[0].param_groups[0]["lr"]) if self.trainer.optimizers else 0.0
        row["epoch_time_s"] = time.perf_counter() - self._epoch_start
        row.update(self.epoch_extras)
        self.epoch_extras = {}
        describe = getattr(self.net, "distribution_stats", None)
        if callable(describe):  # SymGNN: where its distribution over O(3) stands (MLflow, per epoch)
            row.update(describe())
        self.history[int(self.current_epoch)] = row

    def on_test_epoch_end(self) -> None:
        self._compute("test")

    # -- optimisation --------------------------------------------------------------------------
    def configure_optimizers(self):
        opt = self.optimizer_fn(self.parameters())
        if self.scheduler_fn is None:
            return opt
        sched = self._make_scheduler(opt)
        cfg = {"scheduler": sched, "interval": self.scheduler_interval}
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            cfg.update(monitor=self.scheduler_monitor, interval="epoch")
        return {"optimizer": opt, "lr_scheduler": cfg}

    def _make_scheduler(self, opt):
        """The configured scheduler; a one-cycle-style scheduler given neither ``total_steps`` nor
        ``epochs`` gets ``total_steps`` from the trainer (optimizer steps or epochs, by
        ``scheduler_interval``), so changing ``trainer.max_epochs`` stretches the schedule with it."""
        import inspect

        fn = self.scheduler_fn
        target = getattr(fn, "func", fn)
        given = dict(getattr(fn, "keywords", {}) or {})
        try:
            wants_total = "total_steps" in given or "total_steps" in inspect.signature(target).parameters
        except (TypeError, ValueError):
            wants_total = False
        if wants_total and given.get("total_steps") is None and given.get("epochs") is None and self._trainer:
            per_epoch = self.scheduler_interval == "step"
            total = self.trainer.estimated_stepping_batches if per_epoch else self.trainer.max_epochs
            return fn(opt, total_steps=int(total))
        return fn(opt)

    # -- checkpoint extras ---------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["mgglass_history"] = {int(k): dict(v) for k, v in self.history.items()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = {int(k): dict(v) for k, v in checkpoint.get("mgglass_history", {}).items()}
