"""A descriptor reference: per-atom SOAP power spectra (dscribe) with gradient-boosted trees (LightGBM).

No message passing and no learned representation: what a fixed description of each atom's
neighbourhood up to ``r_cut`` (6 Å by default, beyond the GNN's 5-Å edges but short of its
four-hop reach) tells about its barrier. Beside a GNN on the same folds, it tells a glass that is
intrinsically hard to predict (both fall) from a model failure (only the GNN falls).

Features: SOAP over both species (``n_max`` × ``l_max`` as below: 952 numbers for Cu–Zr) and the
centre atom's species. The trees train on the training glasses and stop early on the validation
glasses (their MSE); features are cached per file under the user cache.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mgglass.data import glass_names, read_glass
from mgglass.data.download import cache_dir, sha256_file

MODEL = "SOAP+LightGBM"


class ReferenceError(RuntimeError):
    """The reference cannot run here (a missing package), said in one line."""


@dataclass(frozen=True)
class SoapSettings:
    """SOAP and LightGBM settings (fixed before any fold was run, not tuned on them)."""

    r_cut: float = 6.0
    n_max: int = 8
    l_max: int = 6
    sigma: float = 0.5
    n_estimators: int = 3000
    learning_rate: float = 0.03
    num_leaves: int = 63
    min_child_samples: int = 40
    colsample_bytree: float = 0.5
    subsample: float = 0.8
    patience: int = 100
    # One thread: LightGBM's OpenMP threads spin while they wait, so on a busy machine (the folds' fits
    # beside it) two threads took 126 s where one took 3.4 s on the same small fold.
    threads: int = 1

    def soap_key(self) -> str:
        return f"rc{self.r_cut:g}_n{self.n_max}_l{self.l_max}_s{self.sigma:g}"


def _require():
    try:
        import dscribe.descriptors  # noqa: F401
        import lightgbm  # noqa: F401
    except ImportError as e:
        raise ReferenceError(f"the SOAP reference needs dscribe and lightgbm ({e}); pip install -e '.[reference]'") from None


def soap_features(glass, species=("Cu", "Zr"), settings: SoapSettings = SoapSettings()) -> np.ndarray:
    """[N, F + 1] float32: each atom's SOAP power spectrum and a 0/1 flag of its species' index."""
    _require()
    from dscribe.descriptors import SOAP

    soap = SOAP(species=list(species), r_cut=settings.r_cut, n_max=settings.n_max, l_max=settings.l_max,
                sigma=settings.sigma, periodic=bool(glass.pbc), sparse=False, dtype="float32")
    x = soap.create(glass.to_atoms(), n_jobs=1)
    centre = glass.species_index(tuple(species)).astype(np.float32)[:, None]
    return np.hstack([x, centre])


def cached_features(path: Path, species=("Cu", "Zr"), settings: SoapSettings = SoapSettings(),
                    label_key: str = "eb") -> tuple[np.ndarray, np.ndarray | None]:
    """(features, labels) of a glass file, features cached by the file's bytes and the SOAP settings."""
    glass = read_glass(path, label_key=label_key, species=species, labels_optional=True)
    key = hashlib.sha256(f"{sha256_file(path)}:{','.join(species)}:{settings.soap_key()}".encode()).hexdigest()[:24]
    cache = cache_dir() / "soap" / f"{key}.npy"
    if cache.is_file():
        x = np.load(cache)
        if x.shape[0] == len(glass):
            return x, glass.labels
    x = soap_features(glass, species, settings)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npy")
    np.save(tmp, x)
    tmp.replace(cache)
    return x, glass.labels


def fit_predict(train: list[Path], val: list[Path], test: list[Path], species=("Cu", "Zr"),
                settings: SoapSettings = SoapSettings(), seed: int = 0) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict]:
    """Train on ``train``, stop early on ``val``, predict ``test``: ({test file name: (labels, predictions)},
    info: best iteration, validation r, seconds, settings)."""
    _require()
    import lightgbm as lgb

    t0 = time.perf_counter()

    def stack(paths):
        xs, ys = zip(*(cached_features(p, species, settings) for p in paths))
        return np.vstack(xs), np.concatenate(ys)

    x_tr, y_tr = stack(train)
    x_va, y_va = stack(val)
    model = lgb.LGBMRegressor(
        n_estimators=settings.n_estimators, learning_rate=settings.learning_rate, num_leaves=settings.num_leaves,
        min_child_samples=settings.min_child_samples, colsample_bytree=settings.colsample_bytree,
        subsample=settings.subsample, subsample_freq=1, random_state=seed, n_jobs=settings.threads or None,
        deterministic=True, force_row_wise=True, verbose=-1,
    )
    model.fit(x_tr, y_tr, eval_X=(x_va,), eval_y=(y_va,), callbacks=[lgb.early_stopping(settings.patience, verbose=False)])
    out = {}
    for path, name in zip(test, glass_names([Path(p) for p in test])):
        x, y = cached_features(path, species, settings)
        out[name] = (y, model.predict(x, num_iteration=model.best_iteration_))
    val_pred = model.predict(x_va, num_iteration=model.best_iteration_)
    info = {"best_iteration": int(model.best_iteration_ or settings.n_estimators), "val_r": float(np.corrcoef(val_pred, y_va)[0, 1]),
            "seconds": time.perf_counter() - t0, "model": MODEL, "seed": seed, **asdict(settings)}
    return out, info
