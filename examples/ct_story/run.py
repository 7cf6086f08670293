"""Play the continuous-training story alone: ``python examples/ct_story/run.py [FOLDER]``.

FOLDER defaults to ``.conveyor/ct-story``; ``--small`` plays the acceptance test's size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/, for ct_story

from ct_story import DEMO, SMALL, run_story


def main() -> None:
    """Parse the command line and play the story."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("folder", nargs="?", type=Path, default=Path(".conveyor/ct-story"))
    parser.add_argument("--small", action="store_true", help="the acceptance test's size")
    args = parser.parse_args()
    run_story(args.folder, size=SMALL if args.small else DEMO)


if __name__ == "__main__":
    main()
