from collections import Counter

from imagefit.data import Sample, assign_splits, read_split, write_split


def _samples(counts):
    return [Sample(f"/d/{label}/{i}.jpg", label) for label, n in counts.items() for i in range(n)]


def test_split_is_stratified_seeded_and_keeps_one_training_image():
    samples = _samples({"a": 40, "b": 20, "c": 2})
    first = assign_splits(samples, val_split=0.25, test_split=0.1, seed=3)
    again = assign_splits(samples, val_split=0.25, test_split=0.1, seed=3)
    other = assign_splits(samples, val_split=0.25, test_split=0.1, seed=4)
    assert first == again and first != other
    val = Counter(s.label for s in first if s.split == "val")
    test = Counter(s.label for s in first if s.split == "test")
    assert val == {"a": 10, "b": 5, "c": 1} and test["a"] == 3
    assert Counter(s.label for s in first if s.split == "train")["c"] == 1


def test_existing_splits_are_kept_and_not_carved_again():
    samples = [Sample(s.path, s.label, "train") for s in _samples({"a": 5, "b": 5})]
    samples += [Sample("/v/a.jpg", "a", "val"), Sample("/v/b.jpg", "b", "val")]
    result = assign_splits(samples, val_split=0.5, test_split=0.0, seed=0)
    assert Counter(s.split for s in result) == {"train": 10, "val": 2}


def test_split_csv_round_trips(tmp_path):
    samples = assign_splits(_samples({"a": 4, "b": 4}), val_split=0.25, test_split=0.0, seed=0)
    write_split(tmp_path / "split.csv", samples)
    assert read_split(tmp_path / "split.csv") == samples
