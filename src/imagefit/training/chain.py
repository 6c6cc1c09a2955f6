"""A chain of students (`train --unlabelled`) survives an interruption: `--resume` continues the round it was in.

The chain's first run records what was asked when it is made (config.json `unlabelled`: the images, or null for
the competition layout's test/, and the whole command's time limit), and `students` when its chain has ended (the
rounds run, the run kept). A resume of that run, or of any of its students, finishes what it resumed and then walks
the chain again (students.student_rounds): a finished student of its round is judged again from its val
predictions (no training), an interrupted one is resumed, and the rounds after it run as in a new run. A resumed
chain gets the students' part of the time limit again, counted from the resume: a resume cannot know how long the
machine was away.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imagefit import runs
from imagefit.config import Recipe, parse_duration

UNLABELLED = "unlabelled"  # config.json of the chain's first run: {"images": ..., "time_limit_s": ...}
ENDED = "students"  # config.json of the chain's first run, once its chain has ended
STUDENT = "-student"


def asked(unlabelled: str | Path | None) -> bool:
    """Whether UNLABELLED names images (not None, not 'none')."""
    return str(unlabelled or "none").lower() != "none"


def request(unlabelled: str | Path | None, time_limit: float) -> dict:
    """The config.json field a new run records: its UNLABELLED images (an absolute path where it is one; None: the
    competition layout's test/; 'none': no students) and the whole command's TIME_LIMIT in seconds (0: none)."""
    images = unlabelled
    if asked(unlabelled) and Path(unlabelled).exists():
        images = str(Path(unlabelled).resolve())
    return {UNLABELLED: {"images": None if images is None else str(images), "time_limit_s": time_limit}}


def run_root(path: Path) -> Path:
    """The first run of the chain (RUN of RUN-student2), whose name the students take."""
    name = path.name
    if STUDENT in name and name.rsplit(STUDENT, 1)[1].isdigit():
        return path.with_name(name.rsplit(STUDENT, 1)[0])
    return path


def student_path(root: Path, round_number: int) -> Path:
    return root.with_name(f"{root.name}{STUDENT}{round_number}")


@dataclass(frozen=True)
class Left:
    """A chain whose students are still owed: its first run, the images asked, the time its students have (s)."""

    root: Path
    images: str | None
    time_limit: float
    run_seconds: float  # what a round costs at first: the first run's own share of the limit (0: no limit)


def left_of(run_dir: Path) -> Left | None:
    """The chain RUN_DIR belongs to, when it asked for students that have not ended; else None."""
    root = run_root(Path(run_dir))
    record = runs.ConfigRecord(runs.RunFiles(root))
    if not record.exists():
        return None
    config = record.values()
    asked_for = config.get(UNLABELLED)
    if not isinstance(asked_for, dict) or ENDED in config or asked_for.get("images") == "none":
        return None
    recipe = Recipe.from_dict(config["recipe"]) if "recipe" in config else Recipe()
    if recipe.model.init_weights:  # a student (or a distilled run) makes no students of its own
        return None
    total, share = float(asked_for.get("time_limit_s") or 0.0), parse_duration(recipe.schedule.time_limit)
    students = max(total - share, 1.0) if total else (1.0 if share else 0.0)  # as at first: nothing left, or no limit
    return Left(root, asked_for.get("images"), students, share)


def student_of(teacher: runs.Run, round_number: int) -> Path | None:
    """The folder of round ROUND_NUMBER made from TEACHER (its config.json says so), or None."""
    path = student_path(run_root(teacher.path), round_number)
    record = runs.ConfigRecord(runs.RunFiles(path))
    if not record.exists():
        return None
    config = record.values()
    if config.get("student_of") != str(teacher.path.resolve()) or config.get("pseudo_round") != round_number:
        return None
    return path


def ended(root: Path, rounds: int, kept: Path) -> None:
    """Record on the chain's first run that its chain has ended: a resume then has nothing of it left to do."""
    runs.ConfigRecord(runs.RunFiles(root)).set_students({"rounds": rounds, "kept": kept.name})
