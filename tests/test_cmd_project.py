"""``microseg project``: the app's projects from the shell, and project files that move
between the command line and the app."""

from __future__ import annotations

import json

import numpy as np
import pytest

from microseg.cli import main
from microseg.projects import get_project, list_projects


def _run(capsys, *argv: str) -> tuple[int, dict | None, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, (json.loads(out.out) if out.out.strip() else None), out.err


def test_create_list_export_import(tmp_path, capsys):
    root = tmp_path / "ws"
    code, res, _ = _run(capsys, "project", "--workspace", str(root), "create", "Steel study")
    assert code == 0 and res == {"slug": "steel-study", "name": "Steel study"}
    ws = get_project("steel-study", root).workspace()
    img = ws.add_image(b"pixels" * 50, "field1.tif", info={"shape": [8, 8]},
                       source={"kind": "upload"})  # fmt: skip
    strokes = np.zeros((8, 8), np.uint8)
    strokes[1, :4], strokes[6, 4:] = 1, 2
    ws.save_strokes(img.id, 0, strokes, classes=[{"name": "a", "colour": "#ff0000"},
                                                  {"name": "b", "colour": "#00ff00"}],
                    task="grains")  # fmt: skip
    code, res, _ = _run(capsys, "project", "--workspace", str(root), "list")
    assert code == 0
    assert {(p["slug"], p["images"]) for p in res["projects"]} == {
        ("default", 0),
        ("steel-study", 1),
    }
    file = tmp_path / "steel.zip"
    assert (
        _run(capsys, "project", "--workspace", str(root), "export", "steel-study", str(file))[0]
        == 0
    )
    other = tmp_path / "other_machine"
    code, res, _ = _run(capsys, "project", "--workspace", str(other), "import", str(file),
                        "--name", "From the lab")  # fmt: skip
    assert code == 0 and (res["name"], res["images"], res["stroke_frames"]) == (
        "From the lab",
        1,
        1,
    )
    (moved,) = [p for p in list_projects(other) if p.slug != "default"]
    (image,) = moved.workspace().images()
    assert image.name == "field1.tif"
    assert np.array_equal(moved.workspace().load_strokes(image.id).frames[0], strokes)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["export", "nope", "x.zip"], "no project 'nope'"),
        (["export", "default", "x.tar"], "is a .zip"),
        (["import", "missing.zip"], "does not exist"),
        (["create", ""], "name"),
    ],
)
def test_project_errors_are_one_sentence(tmp_path, capsys, argv, says):
    argv = [str(tmp_path / a) if a.endswith((".zip", ".tar")) else a for a in argv]
    code, _, err = _run(capsys, "project", "--workspace", str(tmp_path / "ws"), *argv)
    assert code == 2 and says in err and "Traceback" not in err


def test_a_file_that_is_no_project_is_refused_and_nothing_is_left(tmp_path, capsys):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip
    root = tmp_path / "ws"
    code, _, err = _run(capsys, "project", "--workspace", str(root), "import", str(bad))
    assert code == 2 and "not a microseg project file" in err
    assert [p.slug for p in list_projects(root)] == ["default"]
