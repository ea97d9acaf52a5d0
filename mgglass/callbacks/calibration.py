"""Batch-norm statistics that match the model being evaluated.

During training, batch norm's running statistics are an exponential average over past steps, while
the weights that produced those features keep moving; with a few glasses per epoch and a high learning
rate the averages lag far behind (layer 1's running variance was 8x the current one), and eval-mode
predictions are off by eV even when their ranking is right. :class:`RecalibrateBatchNorm` recomputes
the statistics over the training glasses right before each validation (the idea of
``torch.optim.swa_utils.update_bn``), so the checkpoint saved after that validation carries the
statistics its own predictions need: ``mgglass.test`` and prediction from a checkpoint give the same
numbers without the training data.

Unlike ``update_bn``, only the batch norms are put in training mode: dropout stays off and the
SymGNN symmetriser draws its evaluation samples, so the statistics are those of the eval-mode
features. Each batch norm's statistics are the average over glasses of per-glass batch statistics
(``momentum=None``), averaged again over DDP ranks.

Which glasses matters for a glass's predicted *mean*: a glass whose features equal the statistics'
mean is predicted near the training mean barrier. Before each validation only ``max_glasses`` per
rank are used (one in ``experiments/base.yaml``), for time: validation r does not depend on a glass's
level, and a second glass moved it by at most 0.0005 (docs/notes/benchmarks.md#recalibration). When
the fit ends, the checkpoints it keeps are recalibrated over every training glass
(``final_max_glasses``). Before that, the kept statistics were those of the first glasses, the most
relaxed ones (train0, train1 come first): every glass was predicted ~0.13 eV low, training glasses included (the fold that holds train0 out: its mean 1.666 eV for 1.822, R²
0.31; over all five training glasses 1.793, R² 0.56, r 0.761 → 0.759).
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torch_geometric.data import Batch

from mgglass.inference import predict_pooled
from mgglass.metrics import pooled_metrics
from mgglass.models.recompute import BATCH_NORMS


def batch_norms(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, BATCH_NORMS) and m.track_running_stats]


@contextlib.contextmanager
def _collecting(norms):
    """Everything in eval mode except ``norms``, which restart a cumulative average."""
    saved = [(m, m.training, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        yield
    finally:
        for m, training, momentum in saved:
            m.momentum = momentum
            m.train(training)


@torch.no_grad()
def recalibrate(net: nn.Module, graphs, device=None, max_glasses: int | None = None, reduce=None) -> int:
    """Recompute the running statistics of every batch norm in ``net`` over ``graphs`` (one glass per
    forward, eval-mode features). ``reduce(tensor) -> tensor``: mean over processes (DDP). Returns the
    number of glasses used; with none, the statistics are left as they were."""
    norms = batch_norms(net)
    graphs = list(graphs)[:max_glasses] if max_glasses else list(graphs)
    if not norms or not graphs:
        return 0
    was_training = net.training
    net.eval()
    try:
        with _collecting(norms):
            for g in graphs:
                batch = Batch.from_data_list([g])
                net(batch.to(device) if device is not None else batch)
    finally:
        net.train(was_training)
    if reduce is not None:
        for m in norms:
            m.running_mean.copy_(reduce(m.running_mean))
            m.running_var.copy_(reduce(m.running_var))
    return len(graphs)


class RecalibrateBatchNorm(L.Callback):
    """Before each validation during fit, recompute the model's batch-norm statistics over the
    training glasses (this rank's share under DDP, then averaged over ranks).

    Args:
        enabled: False keeps the running averages of training (the behaviour before this callback).
        max_glasses: use at most this many training glasses per rank before each validation (None: all).
        compare: also evaluate the validation glasses with training's running averages, just before
            they are replaced, and log ``val_r_ema`` and ``val_mae_ema`` (a diagnostic: one more
            forward pass per validation glass).
        final_max_glasses: when the fit ends, recalibrate the best and last checkpoints over this
            many training glasses per rank (None: all; 0: leave them as validation left them).
    """

    def __init__(self, enabled: bool = True, max_glasses: int | None = None, compare: bool = False,
                 final_max_glasses: int | None = None):
        self.enabled, self.max_glasses, self.compare = enabled, max_glasses, compare
        self.final_max_glasses = final_max_glasses

    @staticmethod
    def _ema_metrics(pl_module, graphs) -> dict[str, float]:
        stats = pooled_metrics(*predict_pooled(pl_module, graphs))
        return {"val_r_ema": stats["r"], "val_mae_ema": stats["mae"]}

    @staticmethod
    def _mine(trainer: L.Trainer) -> list:
        """This rank's training glasses (the training sampler's shard, without its padding repeats)."""
        dm = trainer.datamodule
        graphs = getattr(dm, "graphs", {}).get("train") if dm is not None else None
        if not graphs:
            return []
        sampler = getattr(trainer.train_dataloader, "sampler", None)
        idx = sorted(set(iter(sampler))) if sampler is not None else range(len(graphs))
        return [graphs[i] for i in idx]

    @staticmethod
    def _reduce(trainer: L.Trainer):
        def reduce(t):
            return trainer.strategy.reduce(t, reduce_op="mean") if trainer.world_size > 1 else t

        return reduce

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from lightning.pytorch.trainer.states import TrainerFn

        if not self.enabled or trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return
        mine = self._mine(trainer)
        if not mine:
            return
        dm = trainer.datamodule
        if self.compare and trainer.is_global_zero and dm.graphs.get("val"):
            pl_module.epoch_extras.update(self._ema_metrics(pl_module, dm.graphs["val"]))
        recalibrate(pl_module.net, mine, pl_module.device, self.max_glasses, self._reduce(trainer))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The kept checkpoints' statistics over ``final_max_glasses`` training glasses (see the module
        docstring), written into the checkpoint files (rank 0); the live model is not touched."""
        cb = trainer.checkpoint_callback
        mine = self._mine(trainer)
        final, during = self.final_max_glasses, self.max_glasses
        more = during is not None and during < len(mine) and (final is None or final > during)
        if not self.enabled or final == 0 or not more or cb is None:
            return  # validation already used these glasses
        for path in dict.fromkeys(p for p in (cb.best_model_path, cb.last_model_path) if p and Path(p).is_file()):
            recalibrate_checkpoint(Path(path), pl_module.net, mine, pl_module.device, self.final_max_glasses,
                                   self._reduce(trainer), write=trainer.is_global_zero)
            trainer.strategy.barrier()


def recalibrate_checkpoint(path: Path, net: nn.Module, graphs, device=None, max_glasses: int | None = None,
                           reduce=None, write: bool = True, prefix: str = "net.") -> None:
    """Recompute the batch-norm statistics of the weights saved in the Lightning checkpoint ``path``
    (``state_dict`` keys ``prefix`` + the net's) over ``graphs`` with a copy of ``net``, and save them
    back into the file (atomically) when ``write``."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    state = ckpt["state_dict"]
    work = copy.deepcopy(net)
    work.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    recalibrate(work, graphs, device, max_glasses, reduce)
    for name, buf in work.named_buffers():
        if prefix + name in state:
            state[prefix + name] = buf.detach().to(state[prefix + name].device).clone()
    if write:
        tmp = path.with_name(path.name + ".tmp")
        torch.save(ckpt, tmp)
        tmp.replace(path)
