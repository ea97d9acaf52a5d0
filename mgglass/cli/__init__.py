"""The LightningCLI layer under the commands: the config parser and its one-line errors
(:mod:`~mgglass.cli.config`), the fit as a library function (:mod:`~mgglass.cli.fitting`) and the
scoring of checkpoints behind ``mgglass.test`` and ``mgglass.validate`` (:mod:`~mgglass.cli.evaluate`).
"""

from mgglass.cli.config import (
    BASE_CONFIG,
    MGCLI,
    ConfigError,
    build,
    check_data,
    fail,
    net_resets,
)
from mgglass.cli.evaluate import evaluate_main
from mgglass.cli.fitting import FitResult

__all__ = ["BASE_CONFIG", "MGCLI", "ConfigError", "FitResult", "build", "check_data", "evaluate_main", "fail",
           "net_resets"]
