"""python -m mgglass.models: one line per registry entry (name, family, parameter count, invariance)."""

from __future__ import annotations

import sys

from . import REGISTRY, build_model


def describe(name: str) -> tuple[str, str]:
    """(parameter count, note) for a registry entry built with its defaults; 'not available' on failure."""
    try:
        model = build_model(name)
    except Exception as exc:  # noqa: BLE001 -- a missing module or broken constructor must not hide the others
        reason = exc.__cause__ or exc.__context__ or exc
        return "-", f"not available: {type(reason).__name__}: {reason}"
    return f"{sum(p.numel() for p in model.parameters()):,}", ""


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv:  # it takes none: a name or option was ignored and the whole list printed
        print(f"python -m mgglass.models: error: takes no arguments (got {' '.join(argv)}); it lists every model", file=sys.stderr)
        return 2
    rows = [("name", "family", "params", "invariance", "")]
    for name, (_, family, invariance) in REGISTRY.items():
        params, note = describe(name)
        rows.append((name, family, params, invariance, note))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print(("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4]).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
