"""``python -m statemachine.sim serve ...``: the same as ``smrun sim serve ...``."""
from __future__ import annotations

import sys

from statemachine.sim.serve import main


def _run(argv: list[str]) -> int:
    if not argv or argv[0] != "serve":
        print("usage: python -m statemachine.sim serve [options]  (see serve --help)",
              file=sys.stderr)
        return 2
    return main(argv[1:])


if __name__ == "__main__":
    sys.exit(_run(sys.argv[1:]))
