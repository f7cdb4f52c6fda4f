"""Crash test of the workspace: a process saving strokes is killed with SIGKILL at a
random moment; the workspace it leaves opens consistent, with the last committed
strokes, and what the killed save left behind is swept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from microseg.store import Workspace
from tests.conftest import ROOT

WRITER = """
import sys, numpy as np
from microseg.store import Workspace
ws = Workspace.open(sys.argv[1])
rec = ws.add_image(b"crash-test-image" * 64, "img.png")
print("image", rec.id, flush=True)
for seed in range(100000):
    labels = np.random.default_rng(seed).integers(0, 3, size=(256, 256)).astype(np.uint8)
    ws.save_strokes(rec.id, seed % 3, labels, ["a", "b"])
    print("saved", seed, flush=True)
"""


def _labels(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 3, size=(256, 256)).astype(np.uint8)


@pytest.mark.parametrize("delay_s", [0.7, 1.3, 2.1])
def test_a_killed_save_leaves_a_consistent_workspace(tmp_path, delay_s):
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    lines = []
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until saving is under way, then kill it mid-flight
        lines.append(proc.stdout.readline())
        if lines[-1].startswith("saved"):
            break
    time.sleep(delay_s)
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    lines += out.splitlines()
    image_id = int(next(line for line in lines if line.startswith("image")).split()[1])
    saved = [int(line.split()[1]) for line in lines if line.startswith("saved")]
    assert saved, "the writer never saved"
    last = saved[-1]

    ws = Workspace.open(tmp_path)
    got = ws.load_strokes(image_id)
    # every frame holds the last save that was confirmed for it, or the one in flight
    for t in range(3):
        candidates = {s for s in saved if s % 3 == t}
        candidates = {max(candidates)} if candidates else set()
        if (last + 1) % 3 == t:
            candidates.add(last + 1)  # killed after its commit, before it said so
        assert any(np.array_equal(got.frames[t], _labels(s)) for s in candidates), t
    # once old enough, nothing is left that no row points to
    ws.sweep_leftovers(older_than_s=0)
    files = {p.relative_to(tmp_path).as_posix() for p in (tmp_path / "strokes").rglob("*.npy")}
    assert len(files) == len(got.frames) == 3
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
