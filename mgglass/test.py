"""python -m mgglass.test --ckpt_path CKPT [--config FILE ...]: test-split metrics of a checkpoint."""

import sys

from mgglass.cli.evaluate import evaluate_main as _main


def main(argv=None) -> int:
    return _main("test", argv)


if __name__ == "__main__":
    sys.exit(main())
