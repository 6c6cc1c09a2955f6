"""What follows a run survives an interruption: `--resume` goes on with its refit and its students' rounds.

A command's first run records what was asked when it is made (config.json `unlabelled`: the images, or null for
the competition layout's test/, and the whole command's time limit; its recipe says whether a refit follows), and
the run the students start from records `students` when their chain has ended (the rounds, the run kept). A resume
of the first run, its refit or any student finishes what it resumed, then makes or resumes the refit, then walks
the chain again (students.student_rounds): a finished student of its round is judged again from its val
predictions (no training), an interrupted one is resumed, and the rounds after it run as in a new run. What
follows gets its part of the time limit again, counted from the resume: a resume cannot know how long the machine
was away.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imagefit import runs
from imagefit.config import Recipe, parse_duration
from imagefit.training.finish import nothing_left

UNLABELLED = "unlabelled"  # config.json of the chain's first run: {"images": ..., "time_limit_s": ...}
ENDED = "students"  # config.json of the run the students start from, once their chain has ended
STUDENT = "-student"
# config.json of a --quality best member: the command's members, options and ensemble folder, so --resume goes on.
ENSEMBLE = "quality_best"


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
class Owed:
    """What a command asked after its first run and has not done: the refit, the students, and their time."""

    source: Path  # the command's first run
    refit: Path | None  # its refit folder, when the recipe asks for one (made or not)
    students: bool  # a chain of students is owed: asked, with images to label, and not ended
    images: str | None  # the unlabelled images asked (None: the competition layout's test/)
    time_limit: float  # seconds for what follows the first run, from the resume (0: no limit)
    run_seconds: float  # what a round costs at first: the first run's own share of the limit (0: no limit)

    @property
    def follows(self) -> Path:
        """The run the students start from: the refit when one is asked, else the first run."""
        return self.refit or self.source


def first_run(path: Path) -> Path:
    """The command's first run of PATH (RUN of RUN-student2, RUN-refit and RUN-refit-student1)."""
    root = run_root(Path(path))
    record = runs.ConfigRecord(runs.RunFiles(root))
    refit_of = record.values().get("refit_of") if record.exists() else None
    return Path(refit_of) if refit_of else root


def owed(run_dir: Path, *, students: bool = True) -> Owed | None:
    """What RUN_DIR's command still owes after its first run (its refit, and with STUDENTS its students); None when
    nothing."""
    source = first_run(run_dir)
    record = runs.ConfigRecord(runs.RunFiles(source))
    if not record.exists():
        return None
    config = record.values()
    recipe = Recipe.from_dict(config["recipe"]) if "recipe" in config else Recipe()
    if recipe.model.init_weights:  # a student (or a distilled run) makes no students of its own
        return None
    refit = source.with_name(f"{source.name}-refit") if recipe.schedule.refit else None
    follows = runs.RunFiles(refit or source)
    asked_for = config.get(UNLABELLED) if isinstance(config.get(UNLABELLED), dict) else {"images": "none"}
    images = asked_for.get("images")
    some = asked(images) or (images is None and follows.unlabelled.exists())  # the competition layout's test/
    chain = students and some and not (follows.config.exists() and ENDED in runs.ConfigRecord(follows).values())
    if not chain and (refit is None or follows.stage() == "finished"):
        return None
    total, share = float(asked_for.get("time_limit_s") or 0.0), parse_duration(recipe.schedule.time_limit)
    after = max(total - share, 1.0) if total else (1.0 if share else 0.0)  # as at first: nothing left, or no limit
    return Owed(source, refit, chain, images, after, share)


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


def carry_on(folder: Path, *, train, console, report: bool, said: str = "") -> runs.Run:
    """A run folder from before an interruption (a student, a refit, a member): as it is when nothing of it is left
    (finish.nothing_left), else resumed alone (TRAIN is pipeline.train; no students of its own); one line, after SAID,
    says which."""
    if nothing_left(runs.RunFiles(folder), report=report):
        console.print(f"{said}{folder.name} was trained before; taken as it is", highlight=False)
        return runs.load_run(folder)
    console.print(f"{said}{folder.name} was interrupted; resumed", highlight=False)
    return train(resume=folder, console=console, report=report, unlabelled="none")


def ended(root: Path, rounds: int, kept: Path) -> None:
    """Record on the chain's first run that its chain has ended: a resume then has nothing of it left to do."""
    runs.ConfigRecord(runs.RunFiles(root)).set_students({"rounds": rounds, "kept": kept.name})
