"""python -m mgglass.fit --config FILE [--config FILE2] [--section.key=value ...] [--ckpt_path last]

Trains the configured model (validation picks the best epoch and stops early), then evaluates the
test split once on the best-validation checkpoint. ``--print_config`` prints the fully resolved
config and exits. One MLflow run per fit (see :mod:`mgglass.tracking`); ``--ckpt_path last``
resumes a killed fit from its run folder's ``last.ckpt`` into the same MLflow run.
"""

from __future__ import annotations

import sys

# The fit as a library function lives in mgglass.cli.fitting (sweeps, cross-validations and benchmarks
# call it there); mgglass.fit.run and FitResult stay importable from here for scripts that use them.
from mgglass.cli.fitting import FitResult, run

__all__ = ["FitResult", "main", "run"]


def main(argv=None) -> int:
    return run(list(sys.argv[1:] if argv is None else argv)).code


if __name__ == "__main__":
    sys.exit(main())
