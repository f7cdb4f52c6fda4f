"""Task roles: which classes a task has and what they mean.

Strokes follow one convention everywhere: 0 = unlabelled, k = class k (1..K).
"""

from __future__ import annotations

from dataclasses import dataclass

from microseg.errors import InputError


@dataclass(frozen=True)
class TaskSpec:
    """Default classes of a task (names and display colours, class k = index k-1)."""

    name: str
    classes: tuple[str, ...]
    colours: tuple[str, ...]
    optional: tuple[str, ...] = ()


TASKS: dict[str, TaskSpec] = {
    # nuclei: class 3 "border" (between touching nuclei) is optional for strokes;
    # models trained from dense masks use it to separate touching nuclei.
    "nuclei": TaskSpec("nuclei", ("background", "nucleus"), ("#1f77b4", "#ff7f0e"), ("border",)),
    "grains": TaskSpec("grains", ("grain interior", "grain boundary"), ("#1f77b4", "#d62728")),
    "semantic": TaskSpec("semantic", ("class 1", "class 2"), ("#1f77b4", "#ff7f0e")),
}

PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip


def task_spec(task: str) -> TaskSpec:
    """Return the :class:`TaskSpec` of ``task`` or raise a clear error."""
    try:
        return TASKS[task]
    except KeyError:
        raise InputError(f"Unknown task '{task}'; choose one of {', '.join(TASKS)}.") from None


def class_colours(task: str, classes: list[str] | tuple[str, ...]) -> list[str]:
    """A display colour per class: the task's colour where the name is one of its
    classes, else the palette's colour of that position."""
    spec = TASKS.get(task)
    known = dict(zip(spec.classes + spec.optional, spec.colours, strict=False)) if spec else {}
    return [known.get(name) or PALETTE[k % len(PALETTE)] for k, name in enumerate(classes)]
