"""python -m mgglass.bench {graph,models,fit,accuracy,invariance,latency,scaling,levers,profile,all} [options]: each subcommand lives in its own module."""

import importlib
import sys

from mgglass.data import GlassDataError
from mgglass.task import PredictError

COMMANDS = {"graph": "mgglass.bench.graph", "models": "mgglass.bench.models", "fit": "mgglass.bench.fit",
            "accuracy": "mgglass.bench.accuracy", "invariance": "mgglass.bench.invariance",
            "latency": "mgglass.bench.latency", "scaling": "mgglass.bench.scaling", "levers": "mgglass.bench.levers",
            "profile": "mgglass.bench.profile",
            "all": "mgglass.bench.suite"}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m mgglass.bench {{{','.join(COMMANDS)}}} [options]", file=sys.stderr)
        return 2
    try:
        return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])
    except (GlassDataError, PredictError) as e:  # a bad glass file or checkpoint
        print(f"mgglass.bench {argv[0]}: error: {' '.join(str(e).split())}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
