"""Projects: several studies on one server, each a workspace of its own.

The workspace folder (:func:`~microseg.store.default_root`) is the default project;
every other project is a workspace folder ``projects/<slug>/`` beside its database,
with its name in ``project.json``. A project holds its images, strokes, models and
specimen fields; it can be exported to one file and imported on another machine
(:mod:`microseg.archive`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path

from microseg.archive import ImportSummary, export_project, import_project, read_manifest
from microseg.errors import InputError
from microseg.store import Workspace, default_root

DEFAULT_SLUG = "default"
DEFAULT_NAME = "Default project"
NAME_FILE = "project.json"
MAX_NAME = 80
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")


@dataclass(frozen=True)
class Project:
    """One project: its ``slug`` (in folder names and addresses), name, folder and the
    user who owns it (``None``: everyone's, when the server has no per-user sign-in)."""

    slug: str
    name: str
    root: Path
    owner: str | None = None

    def workspace(self) -> Workspace:
        """The project's workspace (created on first use)."""
        return Workspace.open(self.root)


def _base(root: str | os.PathLike | None) -> Path:
    return Path(root).expanduser() if root is not None else default_root()


def _folder(slug: str, root: str | os.PathLike | None) -> Path:
    base = _base(root)
    return base if slug == DEFAULT_SLUG else base / "projects" / slug


def _read_info(folder: Path, fallback: str) -> tuple[str, str | None]:
    """(name, owner) from the folder's ``project.json``."""
    try:
        info = json.loads((folder / NAME_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return fallback, None
    if not isinstance(info, dict):
        return fallback, None
    name, owner = info.get("name"), info.get("owner")
    name = name if isinstance(name, str) and name.strip() else fallback
    return name, owner if isinstance(owner, str) and owner else None


def _write_name(folder: Path, name: str, owner: str | None) -> None:
    tmp = folder / f".{NAME_FILE}.{uuid.uuid4().hex}"
    info = {"name": name} if owner is None else {"name": name, "owner": owner}
    try:
        tmp.write_text(json.dumps(info), encoding="utf-8")
        os.replace(tmp, folder / NAME_FILE)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(
            f"The project's name cannot be saved in {folder} ({exc.strerror or exc})."
        ) from exc


def check_name(name: object) -> str:
    """``name`` stripped, or :class:`InputError`: 1 to 80 printable characters."""
    if not isinstance(name, str) or not name.strip():
        raise InputError("Give the project a name.")
    name = " ".join(name.split())
    if len(name) > MAX_NAME:
        raise InputError(f"A project name has at most {MAX_NAME} characters, not {len(name)}.")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise InputError("A project name must not hold control characters.")
    return name


def _all_projects(root: str | os.PathLike | None) -> list[Project]:
    base = _base(root)
    name, owner = _read_info(base, DEFAULT_NAME)
    projects = [Project(DEFAULT_SLUG, name, base, owner)]
    others = []
    folder = base / "projects"
    if folder.is_dir():
        for sub in folder.iterdir():
            if _SLUG.match(sub.name) and sub.name != DEFAULT_SLUG and sub.is_dir():
                name, owner = _read_info(sub, sub.name)
                others.append(Project(sub.name, name, sub, owner))
    return projects + sorted(others, key=lambda p: (p.name.casefold(), p.slug))


def list_projects(root: str | os.PathLike | None = None, user: str | None = None) -> list[Project]:
    """The projects ``user`` sees, the default one first, the others by name.

    ``user=None`` (no per-user sign-in): every project. A signed-in user sees only the
    projects they own (the default project belongs to no one, so it is not among them).
    """
    everything = _all_projects(root)
    if user is None:
        return everything
    return [p for p in everything if p.owner == user]


def get_project(
    slug: object, root: str | os.PathLike | None = None, user: str | None = None
) -> Project:
    """The project ``slug`` as ``user`` sees it; :class:`InputError` when there is none."""
    if isinstance(slug, str) and (slug == DEFAULT_SLUG or _SLUG.match(slug)):
        folder = _folder(slug, root)  # only this project's folder is read
        if slug == DEFAULT_SLUG or folder.is_dir():
            name, owner = _read_info(folder, DEFAULT_NAME if slug == DEFAULT_SLUG else slug)
            if user is None or owner == user:
                return Project(slug, name, folder, owner)
    shown = str(slug)[:60]
    raise InputError(f"There is no project '{shown}' on this server.")


def _slug_for(name: str, taken: set[str]) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:40] or "project"
    slug, n = stem, 2
    while slug in taken or slug == DEFAULT_SLUG:
        slug, n = f"{stem}-{n}", n + 1
    return slug


def create_project(
    name: object, root: str | os.PathLike | None = None, user: str | None = None
) -> Project:
    """A new, empty project called ``name``, owned by ``user`` when given (names are
    unique among the projects the user sees, case aside)."""
    name = check_name(name)
    if any(p.name.casefold() == name.casefold() for p in list_projects(root, user)):
        raise InputError(f"A project called '{name}' exists already; choose another name.")
    slug = _slug_for(name, {p.slug for p in _all_projects(root)})
    folder = _folder(slug, root)
    try:
        folder.mkdir(parents=True, exist_ok=False)
    except FileExistsError:  # made in another session this instant: another folder
        return create_project(f"{name} ({uuid.uuid4().hex[:4]})", root, user)
    except OSError as exc:
        raise InputError(
            f"The project folder {folder} cannot be made ({exc.strerror or exc})."
        ) from exc
    _write_name(folder, name, user)
    Workspace.open(folder)
    return Project(slug, name, folder, user)


def rename_project(
    slug: str, name: object, root: str | os.PathLike | None = None, user: str | None = None
) -> Project:
    """Give project ``slug`` a new name (its folder and address stay)."""
    project = get_project(slug, root, user)
    name = check_name(name)
    if any(
        p.slug != slug and p.name.casefold() == name.casefold() for p in list_projects(root, user)
    ):
        raise InputError(f"A project called '{name}' exists already; choose another name.")
    _write_name(project.root, name, project.owner)
    return Project(project.slug, name, project.root, project.owner)


def delete_project(
    slug: str, root: str | os.PathLike | None = None, user: str | None = None
) -> None:
    """Remove project ``slug`` with everything in it (the default project cannot go)."""
    project = get_project(slug, root, user)
    if project.slug == DEFAULT_SLUG:
        raise InputError("The default project cannot be deleted; delete its images instead.")
    gone = project.root.with_name(f".deleted-{project.slug}-{uuid.uuid4().hex[:8]}")
    try:
        project.root.rename(gone)  # at once: no session sees half a project
    except OSError as exc:
        raise InputError(
            f"The project '{project.name}' cannot be deleted ({exc.strerror or exc})."
        ) from exc
    shutil.rmtree(gone, ignore_errors=True)


def export_project_file(
    slug: str, dest: str | Path, root: str | os.PathLike | None = None, user: str | None = None
) -> Path:
    """Write project ``slug`` to the project file ``dest`` (see :mod:`microseg.archive`)."""
    project = get_project(slug, root, user)
    return export_project(project.workspace(), dest, name=project.name)


def import_project_file(
    source: str | Path | bytes,
    name: object = None,
    root: str | os.PathLike | None = None,
    user: str | None = None,
) -> tuple[Project, ImportSummary]:
    """A new project (owned by ``user`` when given) from a project file; named ``name``,
    else as in the file (with a number added when that name is taken). Nothing is left
    behind when it is refused."""
    manifest = read_manifest(source)
    if name in (None, ""):
        name = str(manifest.get("name") or "")[:MAX_NAME].strip() or "Imported project"
    wanted = check_name(name)
    taken = {p.name.casefold() for p in list_projects(root, user)}
    final, n = wanted, 2
    while final.casefold() in taken:
        final, n = f"{wanted} ({n})", n + 1
    project = create_project(final, root, user)
    try:
        summary = import_project(source, project.workspace())
    except BaseException:
        delete_project(project.slug, root, user)
        raise
    return project, summary


def home_project(user: str | None, root: str | os.PathLike | None = None) -> Project:
    """The project a session lands in: the default one without per-user sign-in, else
    the user's first, or a new one of their own."""
    if user is None:
        return get_project(DEFAULT_SLUG, root)
    own = list_projects(root, user)
    return own[0] if own else create_project(f"{user[:60]}'s project", root, user)
