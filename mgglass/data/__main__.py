"""python -m mgglass.data FILE [FILE ...]: check glass files and print a one-line summary of each."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from .dataset import glass_to_data
from .errors import GlassDataError
from .structure import read_glass


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mgglass.data", description=__doc__)
    p.add_argument("files", nargs="+")
    p.add_argument("--label-key", default="eb", help="per-atom label array in ase-readable files (default: eb)")
    p.add_argument("--format", default=None, help="ase format name when the suffix does not tell")
    p.add_argument("--cutoff", type=float, default=5.0, help="radius-graph cutoff in Å (default: 5)")
    p.add_argument("--species", default="Cu,Zr", help="species map in model-index order (default: Cu,Zr)")
    args = p.parse_args(argv)
    for path in args.files:
        try:
            g = read_glass(path, label_key=args.label_key, format=args.format)
            species = tuple(args.species.split(","))
            graph = None
            if args.format is None:
                graph = glass_to_data(g, args.cutoff, species)
        except (GlassDataError, ValueError) as e:  # a bad file, or a --cutoff that is no length
            print(f"python -m mgglass.data: error: {e}", file=sys.stderr)
            return 2
        counts = {s: g.symbols.count(s) for s in sorted(set(g.symbols))}
        volume = abs(np.linalg.det(g.cell))
        parts = [f"{path}: {len(g)} atoms", " ".join(f"{s}{n}" for s, n in counts.items()), f"V={volume:.1f} Å^3"]
        if g.labels is not None:
            parts.append(f"label mean {g.labels.mean():.4f} std {g.labels.std():.4f}")
        if graph is not None:
            parts.append(f"{graph.edge_index.shape[1] / len(g):.1f} edges/atom within {args.cutoff} Å")
        print(", ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
