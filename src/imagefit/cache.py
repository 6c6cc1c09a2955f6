"""Where imagefit keeps what it computes once per image (embeddings, features): $IMAGEFIT_CACHE or ~/.cache."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def cache_root() -> Path:
    """$IMAGEFIT_CACHE when set, else ~/.cache/imagefit (read at each call, so tests and tools can point it)."""
    return Path(os.environ.get("IMAGEFIT_CACHE") or Path.home() / ".cache" / "imagefit")


def digest(*parts) -> str:
    """A short stable name for JSON-able parts (model, weights, transform ...)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]
