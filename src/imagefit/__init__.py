"""imagefit: turn a folder of labelled images into the best classifier it can, by transfer learning.

>>> import imagefit
>>> sorted(imagefit.Recipe().to_dict())
['augment', 'data', 'engine', 'model', 'optim', 'schedule']
"""

__version__ = "0.1.0"

from imagefit.config import Recipe  # noqa: E402
from imagefit.errors import UserError  # noqa: E402
from imagefit.runs import Run, load_run  # noqa: E402
from imagefit.train import train  # noqa: E402

__all__ = ["Recipe", "Run", "UserError", "__version__", "load_run", "train"]
