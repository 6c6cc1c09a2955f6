"""Phase 1 on cached features: same head as through the frozen backbone, fixed views, a cache that is reused."""

import copy

import pytest
import torch
from conftest import TINY, make_class_folders

from imagefit.config import Recipe
from imagefit.data import scan
from imagefit.data.decode import open_image
from imagefit.models import build_classifier
from imagefit.training.features import ViewDataset, backbone_features, cache_name, extract_features
from imagefit.training.head import HeadData, train_head

VIEWS = 3


@pytest.fixture
def setup(tmp_path):
    data = make_class_folders(tmp_path / "d", per_class=10)
    inventory = scan(data)
    # The default head (dropout, linear): a hidden Linear before BatchNorm has a bias with no gradient,
    # which AdamW moves by rounding noise alone, so its value is not a fair comparison.
    recipe = Recipe().override(**{**TINY, "frozen_epochs": 3, "finetune_lr_ratio": 0.1})
    torch.manual_seed(0)
    model, preprocess, _ = build_classifier(recipe.model, len(inventory.classes), pretrained=False)
    model.backbone.eval()
    samples = inventory.samples
    hashes = [inventory.hashes[s.path] for s in samples]
    dataset = ViewDataset(samples, hashes, preprocess, recipe.augment, views=VIEWS, seed=recipe.data.seed)
    targets = torch.tensor([inventory.classes.index(s.label) for s in samples])
    name = cache_name(model.backbone, preprocess, recipe.augment, views=VIEWS, seed=recipe.data.seed)
    return model, dataset, targets, recipe, name


def test_head_trained_on_cached_features_equals_head_trained_through_the_frozen_backbone(setup, tmp_path):
    model, dataset, targets, recipe, name = setup
    table = extract_features(model.backbone, dataset, name=name, cache_dir=tmp_path / "cache", batch_size=6)
    assert table.shape[:2] == (len(dataset), VIEWS)

    def through_backbone(images: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        batch = torch.stack(
            [
                dataset.view(open_image(dataset.samples[i].path, min_size=dataset.decode_size), i, v)
                for i, v in zip(images.tolist(), views.tolist(), strict=True)
            ]
        )
        return backbone_features(model.backbone, batch, device=torch.device("cpu"), channels_last=True)

    cached_head, direct_head = copy.deepcopy(model.head), copy.deepcopy(model.head)
    cached_rows = train_head(
        cached_head, HeadData(lambda i, v: table[i, v], targets, VIEWS, table[:, 0], targets), recipe
    )
    direct_rows = train_head(direct_head, HeadData(through_backbone, targets, VIEWS, table[:, 0], targets), recipe)

    assert len(cached_rows) == 3 and [r["phase"] for r in cached_rows] == [1, 1, 1]
    assert not torch.equal(cached_head[-1].weight, model.head[-1].weight), "the head must have trained"
    for (key, cached), direct in zip(cached_head.state_dict().items(), direct_head.state_dict().values(), strict=True):
        torch.testing.assert_close(cached, direct, atol=1e-6, rtol=1e-5, msg=f"{key} differs")
    for cached, direct in zip(cached_rows, direct_rows, strict=True):
        assert cached["train_loss"] == pytest.approx(direct["train_loss"], abs=1e-5)


def test_views_are_fixed_per_file_and_differ_from_each_other(setup):
    _, dataset, _, _, _ = setup
    first, again = dataset[0], dataset[0]
    assert first.shape[0] == VIEWS
    assert torch.equal(first, again), "the same file must give the same views every time"
    assert not torch.equal(first[1], first[2]), "augmented views must differ"
    assert not torch.equal(first[0], first[1])


def test_second_extraction_reads_the_cache_and_new_weights_get_a_new_cache(setup, tmp_path):
    model, dataset, _, recipe, name = setup
    table = extract_features(model.backbone, dataset, name=name, cache_dir=tmp_path / "cache")

    class Refuses(torch.nn.Module):
        def forward(self, images):
            raise AssertionError("features must come from the cache")

    again = extract_features(Refuses(), dataset, name=name, cache_dir=tmp_path / "cache")
    assert torch.equal(table, again)
    with torch.no_grad():
        next(model.backbone.parameters()).add_(1.0)
    assert cache_name(model.backbone, dataset.preprocess, recipe.augment, views=VIEWS, seed=recipe.data.seed) != name


def test_second_training_on_the_same_data_computes_no_features(tmp_path, monkeypatch):
    import imagefit
    from imagefit.data.cache import VectorStore

    monkeypatch.setenv("IMAGEFIT_CACHE", str(tmp_path / "cache"))
    data = make_class_folders(tmp_path / "d", per_class=8)
    first = imagefit.train(data, out=tmp_path / "a", epochs=1, frozen_epochs=1, report=False, **TINY)
    spaces = VectorStore().info()
    assert sorted(s.rows for s in spaces) == [2, 14], "train features (3 views) and val features (plain view)"
    computed = []
    monkeypatch.setattr("imagefit.training.features._compute", lambda *args, **kwargs: computed.append(args[2]) or None)
    second = imagefit.train(data, out=tmp_path / "b", epochs=1, frozen_epochs=1, report=False, **TINY)
    assert computed == [], "the second run must read, not compute, the features"
    assert second.metrics["val"] == first.metrics["val"], "same seed and same features: the same head"
