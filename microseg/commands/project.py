"""``microseg project``: list, create, export and import the app's projects.

The same projects as the app's Home page (:mod:`microseg.projects`), in the workspace
folder ``--workspace`` (default ``$MICROSEG_WORKSPACE``, else ``~/.microseg/workspace``).
A project file made here opens in the app ("Import a project file") and the other way
round.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from microseg.errors import InputError


def cmd_project(args: argparse.Namespace, progress: Callable[[str], None]) -> dict:
    """Run one project action; returns what it did."""
    from microseg import projects

    root = Path(args.workspace) if args.workspace else None
    if root is not None and root.exists() and not root.is_dir():
        raise InputError(f"--workspace {root} is a file, not a folder.")
    action = args.action
    if action == "list":
        rows = []
        for p in projects.list_projects(root):
            ws = p.workspace()
            rows.append({"slug": p.slug, "name": p.name, "images": len(ws.images())})
            progress(f"{p.slug}: {p.name} ({rows[-1]['images']} image(s))")
        return {"projects": rows}
    if action == "create":
        p = projects.create_project(args.name, root)
        progress(f"created project {p.slug}: {p.name}")
        return {"slug": p.slug, "name": p.name}
    if action == "export":
        out = Path(args.file)
        if out.suffix.lower() != ".zip":
            raise InputError(f"A project file is a .zip; {out.name} is not one.")
        if out.is_dir():
            raise InputError(f"{out} is a folder; give the .zip file to write.")
        path = projects.export_project_file(args.slug, out, root)
        progress(f"wrote project {args.slug} to {path}")
        return {"slug": args.slug, "file": str(path)}
    if action == "import":
        src = Path(args.file)
        if not src.is_file():
            raise InputError(f"The project file {src} does not exist.")
        project, summary = projects.import_project_file(src, args.name, root)
        counts: dict[str, Any] = {
            "images": summary.images,
            "stroke_frames": summary.frames,
            "models": summary.models,
            "specimen_fields": summary.fields,
        }
        progress(f"imported {src.name} as project {project.slug}: {project.name} "
                 f"({summary.images} image(s), {summary.models} model(s))")  # fmt: skip
        return {"slug": project.slug, "name": project.name, **counts}
    raise InputError(f"Unknown project action '{action}'.")
