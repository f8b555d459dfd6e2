"""The one percentile every report uses (qa eval, bench/, stress/)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile by linear interpolation (numpy's default); 0 for no values."""
    return float(np.percentile(values, q)) if len(values) else 0.0
