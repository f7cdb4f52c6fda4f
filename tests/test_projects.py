"""Projects on one server: create, rename, delete, list; export and import through a file."""

from __future__ import annotations

import numpy as np
import pytest

from microseg import projects
from microseg.errors import InputError


def test_the_workspace_folder_is_the_default_project(tmp_path):
    (default,) = projects.list_projects(tmp_path)
    assert (default.slug, default.name, default.root) == ("default", "Default project", tmp_path)
    with pytest.raises(InputError, match="default project cannot be deleted"):
        projects.delete_project("default", tmp_path)
    renamed = projects.rename_project("default", "  Lab   bench ", tmp_path)
    assert renamed.name == "Lab bench" and projects.list_projects(tmp_path)[0].name == "Lab bench"


def test_create_rename_and_delete_keep_projects_apart(tmp_path):
    steel = projects.create_project("Steel 4140 — tempering", tmp_path)
    alumina = projects.create_project("Alumina", tmp_path)
    assert steel.slug == "steel-4140-tempering" and steel.root.parent == tmp_path / "projects"
    assert [p.name for p in projects.list_projects(tmp_path)] == [
        "Default project", "Alumina", "Steel 4140 — tempering"]  # fmt: skip
    steel.workspace().add_image(b"steel", "s.tif")
    assert alumina.workspace().images() == [] and len(steel.workspace().images()) == 1
    with pytest.raises(InputError, match="exists already"):
        projects.create_project("alumina", tmp_path)
    with pytest.raises(InputError, match="exists already"):
        projects.rename_project(steel.slug, "ALUMINA", tmp_path)
    projects.rename_project(steel.slug, "Steel", tmp_path)
    assert projects.get_project(steel.slug, tmp_path).name == "Steel"
    projects.delete_project(steel.slug, tmp_path)
    assert [p.slug for p in projects.list_projects(tmp_path)] == ["default", "alumina"]
    assert not steel.root.exists() and not list((tmp_path / "projects").glob(".deleted-*"))


@pytest.mark.parametrize(
    ("name", "words"),
    [("", "Give the project a name"), ("   ", "Give the project a name"), (None, "a name"),
     ("x" * 81, "at most 80 characters"), ("a\x00b", "control characters"), (3, "a name")],
)  # fmt: skip
def test_bad_project_names_are_one_sentence(tmp_path, name, words):
    with pytest.raises(InputError, match=words):
        projects.create_project(name, tmp_path)
    assert len(projects.list_projects(tmp_path)) == 1


@pytest.mark.parametrize("slug", ["nope", "../..", "default/../x", "", None, "A" * 300])
def test_an_unknown_project_is_one_sentence(tmp_path, slug):
    with pytest.raises(InputError, match="There is no project"):
        projects.get_project(slug, tmp_path)


def test_names_that_make_the_same_folder_get_distinct_folders(tmp_path):
    a = projects.create_project("Ti-6Al-4V", tmp_path)
    b = projects.create_project("Ti 6Al 4V", tmp_path)
    c = projects.create_project("ééé", tmp_path)
    assert a.slug == "ti-6al-4v" and b.slug == "ti-6al-4v-2" and c.slug == "eee"
    assert projects.create_project("Default", tmp_path).slug == "default-2"


def test_export_and_import_moves_a_project_to_another_server(tmp_path):
    here, there = tmp_path / "here", tmp_path / "there"
    study = projects.create_project("Nuclei study", here)
    ws = study.workspace()
    image = ws.add_image(b"cells", "cells.tif")
    ws.save_strokes(image.id, 0, np.eye(5, dtype=np.uint8), classes=[{"name": "bg"}], task="nuclei")
    path = projects.export_project_file(study.slug, tmp_path / "study.zip", here)

    first, summary = projects.import_project_file(path, root=there)
    assert first.name == "Nuclei study" and summary.images == 1 and summary.frames == 1
    (record,) = first.workspace().images()
    assert np.array_equal(first.workspace().load_strokes(record.id).frames[0], np.eye(5))
    second, _ = projects.import_project_file(path.read_bytes(), root=there)
    assert second.name == "Nuclei study (2)" and second.slug != first.slug
    third, _ = projects.import_project_file(path, name="Copy for Anna", root=there)
    assert third.name == "Copy for Anna"


def test_a_refused_import_leaves_no_project_behind(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(InputError, match="not a microseg project file"):
        projects.import_project_file(bad, root=tmp_path / "srv")
    assert [p.slug for p in projects.list_projects(tmp_path / "srv")] == ["default"]


def test_an_import_refused_halfway_removes_the_new_project(tmp_path):
    import pickle
    import zipfile

    from tests.test_archive import _model_file, _rewrite

    study = projects.create_project("With a model", tmp_path / "here")
    ws = study.workspace()
    ws.add_image(b"img", "a.tif")
    ws.add_model(_model_file(tmp_path / "m.safetensors"), "forest")
    good = projects.export_project_file(study.slug, tmp_path / "good.zip", tmp_path / "here")
    model = next(n for n in zipfile.ZipFile(good).namelist() if n.startswith("models/"))
    bad = _rewrite(good, tmp_path / "bad.zip", change={model: pickle.dumps(1)}, fix_manifest=True)
    with pytest.raises(InputError) as err:  # found after the image was added
        projects.import_project_file(bad, root=tmp_path / "there")
    assert str(err.value).startswith("forest ") and ".incoming" not in str(err.value)
    assert [p.slug for p in projects.list_projects(tmp_path / "there")] == ["default"]
    assert not list((tmp_path / "there" / "projects").iterdir())


def test_signed_in_users_see_only_their_own_projects(tmp_path):
    anna = projects.home_project("anna", tmp_path)
    assert anna.name == "anna's project" and anna.owner == "anna"
    assert projects.home_project("anna", tmp_path) == anna  # the same one next time
    ben = projects.create_project("Steel", tmp_path, user="ben")
    projects.create_project("Steel", tmp_path, user="anna")  # names are per user
    assert [p.name for p in projects.list_projects(tmp_path, "anna")] == [
        "anna's project", "Steel"]  # fmt: skip
    assert [p.slug for p in projects.list_projects(tmp_path, "ben")] == [ben.slug]
    assert len(projects.list_projects(tmp_path)) == 4  # no sign-in: everything
    for act in (
        lambda: projects.get_project(ben.slug, tmp_path, "anna"),
        lambda: projects.get_project("default", tmp_path, "anna"),
        lambda: projects.rename_project(ben.slug, "Mine now", tmp_path, "anna"),
        lambda: projects.delete_project(ben.slug, tmp_path, "anna"),
        lambda: projects.export_project_file(ben.slug, tmp_path / "x.zip", tmp_path, "anna"),
    ):
        with pytest.raises(InputError, match="There is no project"):
            act()
    assert ben.root.is_dir() and not (tmp_path / "x.zip").exists()
    path = projects.export_project_file(ben.slug, tmp_path / "ben.zip", tmp_path, "ben")
    copy, _ = projects.import_project_file(path, root=tmp_path, user="anna")
    assert copy.owner == "anna" and copy.name == "Steel (2)"
