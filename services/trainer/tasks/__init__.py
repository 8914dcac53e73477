"""The tasks the trainer trains, one class each, behind one interface (`base.Task`).

`task_for` picks the task from the project's type and the run's preset, and refuses
the options set that the task does not use.
"""

from __future__ import annotations

from typing import Any

from visiondock.vocabulary import DETECTION, FACE, MULTICLASS, MULTILABEL, PROJECT_TYPES

from ..data import TrainingDataError
from ..options import OptionError
from .base import RunContext, Task
from .classification import FaceTask, MulticlassTask, MultilabelTask
from .detection import DetectionTask

TASKS: dict[str, type[Task[Any, Any]]] = {MULTICLASS: MulticlassTask, MULTILABEL: MultilabelTask, FACE: FaceTask,
                                DETECTION: DetectionTask}

__all__ = ["TASKS", "RunContext", "Task", "task_for"]


def task_for(run: RunContext) -> Task[Any, Any]:
    project_type = run.project.project["type"]
    if project_type not in PROJECT_TYPES:
        raise TrainingDataError(f"project {run.options.project!r} is a {project_type} project; this trainer trains "
                                f"{', '.join(PROJECT_TYPES)} projects")
    task = project_type
    if run.options.task_preset == FACE:
        if project_type != MULTICLASS:
            raise OptionError("the face preset trains from a multiclass project: one tag per person (and `unknown` "
                              f"for people to reject); {run.options.project!r} is {project_type}")
        task = FACE
    run.options.check_applies(task)
    return TASKS[task](run)
