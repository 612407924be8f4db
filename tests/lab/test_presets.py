"""Every preset's grid resolves to valid configs (a typo in a preset fails here, not hours into a
sweep), and its variants exist."""

from __future__ import annotations

import pytest

from dropkit.lab import Config
from dropkit.lab.presets import PRESETS
from dropkit.lab.sweep import _point_config, grid_points


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_grid_point_is_a_valid_config(name):
    preset = PRESETS[name]
    base = Config.build(dict(preset.base))
    points = grid_points(preset.grid)
    assert points, f"{name}: empty grid"
    names = set()
    for params in points:
        config = _point_config(base, params, preset.variants)
        assert isinstance(config, Config)
        if "variant" in params:
            assert params["variant"] in preset.variants
            names.add(config.name)
    if "variant" in preset.grid:  # each variant on the grid names its runs
        assert names == set(preset.grid["variant"])
