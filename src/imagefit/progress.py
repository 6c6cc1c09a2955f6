"""The progress bar of long passes (features, embeddings): on stderr, in a terminal only."""

from __future__ import annotations

from rich.console import Console
from rich.progress import Progress


def transient_progress() -> Progress:
    """A Rich bar that disappears when done; a log (CI, nohup) gets no bar and no blank lines."""
    console = Console(stderr=True)
    return Progress(transient=True, console=console, disable=not console.is_terminal)
