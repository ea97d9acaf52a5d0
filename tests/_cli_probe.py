"""A command for tests/test_cli_runner.py: ``python -m _cli_probe ACTION``."""

import atexit
import json
import os
import sys
import time


def main(action: str) -> None:
    if action == "report":
        atexit.register(lambda: print("atexit ran", file=sys.stderr))
        import torch

        x = torch.randn(256, 256)  # a parallel op in the child: a fork must not hang OpenMP
        print(json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "probe": os.environ.get("PROBE"),
                          "stdin": sys.stdin.read(), "name": __name__, "pid": os.getpid(),
                          "threads": torch.get_num_threads(), "sum": float((x @ x).abs().sum() > 0)}))
    elif action == "exit3":
        sys.exit(3)
    elif action == "message":
        sys.exit("probe: a one-line error")
    elif action == "raise":
        raise RuntimeError("probe crashed")
    elif action == "sleep":
        print("sleeping", flush=True)
        time.sleep(60)


if __name__ == "__main__":
    main(sys.argv[1])
