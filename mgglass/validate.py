"""python -m mgglass.validate --ckpt_path CKPT [--config FILE ...]: validation-split metrics of a checkpoint."""

import sys

from mgglass.cli.evaluate import evaluate_main as _main


def main(argv=None) -> int:
    return _main("validate", argv)


if __name__ == "__main__":
    sys.exit(main())
