"""The continuous-training story of ``make demo``, also played by the acceptance test.

See :mod:`.story` for what happens; :func:`run_story` is the entry point.
"""

from .stage import StoryError, StoryResult, StorySize
from .story import DEMO, SMALL, run_story

__all__ = ["DEMO", "SMALL", "StoryError", "StoryResult", "StorySize", "run_story"]
