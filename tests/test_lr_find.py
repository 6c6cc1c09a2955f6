"""imagefit lr-find: Lightning's range test on the whole network, a plot and a suggested ratio."""

from conftest import TINY, make_class_folders

from imagefit.training.lr_find import lr_find


def test_the_range_test_plots_and_suggests_a_fine_tuning_ratio(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=20)
    found = lr_find(data, out=tmp_path / "lr.png", steps=40, **TINY)
    assert found.plot.exists() and found.plot.stat().st_size > 1000
    assert found.suggestion is not None and 1e-6 <= found.suggestion <= 1.0
    assert abs(found.ratio - found.suggestion / TINY["lr"]) < 1e-9
