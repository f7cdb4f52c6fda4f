"""AppTest: the QC review page reads a batch run, or checks a folder of images now."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from microseg.cli import main
from microseg.synth import synth_grains
from tests.apphelpers import new_app

pytestmark = pytest.mark.timeout(300)
QC = "pages/7_QC_review.py"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("qc_in")
    tifffile.imwrite(d / "grains.tif", synth_grains((256, 256), 60, seed=4).image)
    rng = np.random.default_rng(0)
    tifffile.imwrite(d / "noise.tif", rng.integers(0, 255, (256, 256), dtype=np.uint8))
    (d / "broken.tif").write_bytes(b"II*\x00" + b"\x00" * 8)
    return d


def _open_folder(at, path) -> None:
    at.text_input(key="qc_folder_input").set_value(str(path)).run()


def test_a_batch_run_is_listed_worst_first(folder, tmp_path):
    out = tmp_path / "out"
    assert main(["batch", "--task", "grains", "--model", "builtin:grains", "--out", str(out),
                 str(folder / "grains.tif"), str(folder / "noise.tif"),
                 str(folder / "broken.tif")]) == 0  # fmt: skip
    at = new_app()
    at.switch_page(QC).run()
    assert not at.exception
    assert any("Type the path" in i.value for i in at.info)
    _open_folder(at, out)
    assert not at.exception
    verdicts = [m.value for m in at.markdown if m.value.startswith(":material/")]
    assert len(verdicts) == 3
    assert "could not be processed" in verdicts[0]  # the broken file first
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Could not be processed"] == "1"
    assert sum(int(metrics[k]) for k in ("Do not trust", "Check this", "Looks fine")) == 2


def test_a_folder_of_images_is_checked_on_request(folder):
    at = new_app()
    at.switch_page(QC).run()
    _open_folder(at, folder)
    assert any("holds no batch run" in i.value for i in at.info)
    at.button(key="qc_check").click().run(timeout=240)
    assert not at.exception
    run = at.session_state["qc_run"]
    assert run["n_inputs"] == 3 and run["n_failed"] == 1
    assert {r["verdict"] for r in run["qc"]} <= {"failed", "ok", "check", "do_not_trust"}
    # opening an image switches to the Grains page with it
    at.button(key="qc_open_1").click().run()
    assert not at.exception


def test_a_missing_folder_says_so():
    at = new_app()
    at.switch_page(QC).run()
    _open_folder(at, "/no/such/folder")
    assert "There is no folder" in at.error[0].value
