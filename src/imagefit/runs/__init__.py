"""The run folder: the one description of every file `imagefit train` writes, atomic writes, and loading it back.

Nothing in a run folder is unpickled when it is loaded. `RunFiles` names every file; writers go
through a temporary file and a rename, so a crash never leaves half a file. This package imports
no training and no inference code.
"""

from imagefit.files import output_folder, write_json, write_rows, write_text
from imagefit.runs.files import FORMAT_VERSION, HISTORY_COLUMNS, RunFiles, read_history, read_json
from imagefit.runs.folders import dataset_name, new_run_dir
from imagefit.runs.load import Inference, Run, check_run_folder, load_run
from imagefit.runs.record import ConfigRecord

__all__ = [
    "FORMAT_VERSION",
    "HISTORY_COLUMNS",
    "ConfigRecord",
    "Inference",
    "Run",
    "RunFiles",
    "check_run_folder",
    "dataset_name",
    "load_run",
    "new_run_dir",
    "output_folder",
    "read_history",
    "read_json",
    "write_json",
    "write_rows",
    "write_text",
]
