"""bandit.decay: evidence that halves every half-life, and exposure that falls with the
position an ad was shown at."""
from __future__ import annotations

import numpy as np
import pytest

from bandit import decay_factor, decay_to, exposure_weight


def test_decay_and_its_inverse_agree_and_exposure_weights_fall_with_position():
    assert decay_factor(86_400.0, 86_400.0) == 0.5
    values = np.array([[8.0, 4.0]])
    assert decay_to(values, np.array([0.0]), 2 * 3600.0, 3600.0).tolist() == [[2.0, 1.0]]
    w = exposure_weight(np.arange(1, 11), 0.7)
    assert w[0] == 1.0 and (np.diff(w) < 0).all()
    assert exposure_weight(np.arange(1, 11), 0.0).tolist() == [1.0] * 10
    with pytest.raises(ValueError):
        decay_factor(1.0, 0.0)
