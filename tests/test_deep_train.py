"""U-Net training: masked loss, convergence, best-model keeping, background jobs."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch
from skimage.draw import disk

from microseg.deep import TrainConfig, TrainingJob, UNetSegmenter, targets_from_masks, train_unet
from microseg.deep.losses import balanced_class_weights, cl_dice_loss, masked_cross_entropy
from microseg.deep.train import Trainer, macro_f1, split_strokes, stroke_prior_weights
from microseg.errors import InputError

SMALL = {"depth": 3, "base": 8}


def _blobs(seed: int, n: int = 10, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lab = np.zeros((size, size), np.int32)
    for i in range(n):
        rr, cc = disk(
            (rng.integers(8, size - 8), rng.integers(8, size - 8)),
            rng.integers(4, 8),
            shape=lab.shape,
        )
        lab[rr, cc] = i + 1
    img = (lab > 0) * 100.0 + rng.normal(20, 12, lab.shape)
    return img.astype(np.float32), lab


def _strokes(target: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    s = np.zeros_like(target)
    sel = rng.random(target.shape) < fraction
    s[sel] = target[sel]
    return s


def test_masked_loss_ignores_unlabelled_pixels():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 16, 16, requires_grad=True)
    target = torch.randint(0, 4, (2, 16, 16))
    target[:, :8] = 0  # top half unlabelled
    w = torch.tensor([1.0, 2.0, 0.5])
    loss = masked_cross_entropy(logits, target, w)
    (grad,) = torch.autograd.grad(loss, logits)
    other = target.clone()
    other[:, :8] = torch.randint(1, 4, (2, 8, 16))  # labels where unlabelled before
    changed = target.clone()
    # changing the logits at unlabelled pixels changes nothing either
    logits2 = logits.detach().clone()
    logits2[:, :, :8] += 5.0
    logits2.requires_grad_(True)
    loss2 = masked_cross_entropy(logits2, changed, w)
    (grad2,) = torch.autograd.grad(loss2, logits2)
    assert torch.allclose(loss, loss2)
    assert torch.allclose(grad, grad2)
    assert torch.all(grad[:, :, :8] == 0)
    # whereas labelling the top half does change it
    assert not torch.allclose(loss, masked_cross_entropy(logits, other, w))
    # nothing labelled: zero loss, still differentiable
    empty = masked_cross_entropy(logits, torch.zeros_like(target), w)
    assert empty.detach().item() == 0.0 and empty.requires_grad


def _line(width: int = 3) -> torch.Tensor:
    t = torch.zeros(1, 40, 40)
    t[0, :, 18 : 18 + width] = 1.0
    return t


def test_cl_dice_punishes_a_gap_more_than_the_same_pixels_off_a_side():
    truth = _line()
    assert cl_dice_loss(truth, truth).item() == pytest.approx(0.0, abs=1e-6)
    gap = truth.clone()
    gap[0, 15:25] = 0.0  # 30 pixels: the line is cut in two
    side = truth.clone()
    side[0, 5:35, 18] = 0.0  # 30 pixels off one side: still connected
    assert cl_dice_loss(gap, truth).item() > 0.1
    assert cl_dice_loss(side, truth).item() < 0.02
    # an unsure prediction (0.5 everywhere on the line) costs too
    assert cl_dice_loss(0.5 * truth, truth).item() > 0.2


def test_cl_dice_ignores_pixels_without_truth_and_has_a_gradient():
    truth = _line()
    pred = truth.clone()
    pred[0, 15:25] = 0.0
    valid = torch.ones_like(truth)
    valid[0, 10:30] = 0.0  # the gap lies where nothing is known
    assert cl_dice_loss(pred, truth, valid).item() < cl_dice_loss(pred, truth).item()
    p = torch.full_like(truth, 0.3, requires_grad=True)
    (g,) = torch.autograd.grad(cl_dice_loss(p, truth), p)
    assert float(g[0, :, 18:21].sum()) < 0  # raising the line's probability lowers the loss


def test_topology_weight_adds_the_cl_dice_term_on_the_boundary_class():
    img = np.zeros((64, 64), np.float32)
    img[:, 30:33] = 1.0
    img += np.random.default_rng(0).normal(0, 0.1, img.shape).astype(np.float32)
    target = targets_from_masks((img > 0.5).astype(np.uint8), "grains")
    logits = torch.randn(1, 2, 64, 64)
    y = torch.from_numpy(target[None].astype(np.int64))
    losses = {}
    for w in (0.0, 1.0):
        cfg = TrainConfig(max_steps=1, batch=2, crop=32, arch=SMALL, topology_weight=w)
        tr = Trainer([img], [target], cfg, task="grains")
        assert tr._thin_class() == 1  # "grain boundary"
        losses[w] = tr._loss(logits, y).item()
    prob = torch.softmax(logits, dim=1)[:, 1]
    topo = cl_dice_loss(prob, y == 2, y > 0).item()
    assert losses[1.0] == pytest.approx(losses[0.0] + topo, rel=1e-5)


def test_balanced_weights_favour_rare_classes():
    t = np.array([[1] * 90 + [2] * 10])
    w = balanced_class_weights([t], 3)
    assert w[1] > w[0] and w[2] == pytest.approx(w.mean() * 0 + w[2])
    assert w[:2].mean() == pytest.approx(1.0, rel=0.3)


def test_targets_from_masks():
    lab = np.zeros((12, 12), np.int32)
    lab[2:6, 2:10] = 1
    lab[6:10, 2:10] = 2  # touching nucleus
    t = targets_from_masks(lab, "nuclei")
    assert set(np.unique(t)) == {1, 2, 3}
    assert (t[lab == 0] == 1).all() and t[5, 5] == 3 and t[6, 5] == 3 and t[2, 5] == 3
    assert t[4, 5] == 2
    b = np.zeros((8, 8), np.uint8)
    b[4] = 255
    b[3] = 60  # anti-aliased fringe counts as interior
    g = targets_from_masks(b, "grains")
    assert (g[4] == 2).all() and (g[3] == 1).all()
    with pytest.raises(InputError):
        targets_from_masks(np.zeros((2, 2, 2)), "grains")


def test_split_strokes_holds_out_components():
    t = np.zeros((40, 40), np.uint8)
    for i in range(5):
        t[4 + 7 * i, 2:10] = 1
        t[4 + 7 * i, 20:30] = 2
    split = split_strokes([t], 0.2, seed=0)
    assert split is not None
    tr, va = split
    assert ((tr[0] > 0) & (va[0] > 0)).sum() == 0
    assert ((tr[0] + va[0]) == t).all() and (va[0] == 1).any() and (va[0] == 2).any()
    assert split_strokes([t[:10]], 0.2, seed=0) is None


def test_stroke_prior_weights_restore_the_image_class_balance():
    # strokes: half boundary, half interior; the image: one pixel in ten is boundary
    strokes = np.zeros((10, 20), np.uint8)
    strokes[0, :10], strokes[1, :10] = 1, 2
    proba = np.zeros((2, 10, 20), np.float32)
    proba[0], proba[1, ::10] = 0.8, 1.0  # argmax: boundary on row 0 of 10
    image_share = np.bincount(np.argmax(proba, 0).ravel(), minlength=2) / proba[0].size
    w = stroke_prior_weights([strokes], [proba], [1.0, 1.0])
    want = image_share / 0.5
    np.testing.assert_allclose(w, want / want.mean(), rtol=1e-6)
    # the weighted stroke loss then weighs the classes as the image holds them
    mass = w * np.array([10, 10])
    np.testing.assert_allclose(mass / mass.sum(), image_share, rtol=1e-6)
    # the model's own weights carry over; pseudo-labels (values above K) do not count
    w2 = stroke_prior_weights([np.where(strokes == 0, 3, strokes)], [proba], [0.5, 2.0])
    np.testing.assert_allclose(w2 / w2[0], [1.0, 4.0 * w[1] / w[0]], rtol=1e-6)
    # a class the strokes do not hold keeps its weight; the cap holds
    w3 = stroke_prior_weights([np.where(strokes == 2, 0, strokes)], [proba], [1.0, 1.0])
    np.testing.assert_allclose(w3, [1.0, 1.0])
    w4 = stroke_prior_weights([strokes], [proba], [1.0, 1.0], max_ratio=2.0)
    assert w4.max() / w4.min() == pytest.approx(2.0)


def test_finetuning_on_strokes_weighs_classes_by_their_share_of_the_image():
    img, lab, base = _base_model()
    strokes = _strokes(targets_from_masks(lab, "nuclei"), 0.03, 5)
    cfg = TrainConfig(seconds=1e9, max_steps=1, batch=4, crop=64, teacher="none")
    trainer = Trainer([img], [strokes], cfg, init=base)
    assert cfg.class_weights == "auto"
    base_w = base.metadata["training"]["class_weights"]
    want = stroke_prior_weights(trainer.data.y, [base.predict_proba(img)], base_w)
    np.testing.assert_allclose(trainer.class_weights, want, rtol=1e-4)
    scratch = Trainer([img], [strokes], dataclasses.replace(cfg, arch=SMALL), task="nuclei")
    np.testing.assert_allclose(scratch.class_weights, balanced_class_weights(scratch.data.y, 3))


def test_training_converges_on_tiny_image():
    img, lab = _blobs(0)
    target = targets_from_masks(lab, "nuclei")
    strokes = _strokes(target, 0.05, 1)
    test_img, test_lab = _blobs(1)
    untrained = UNetSegmenter.new("nuclei", ["background", "nucleus", "border"], **SMALL)
    f1_before = macro_f1(
        untrained.predict_classes(test_img), targets_from_masks(test_lab, "nuclei"), 3
    )
    log = []
    # a fixed number of steps (not seconds), so the result does not depend on the load
    cfg = TrainConfig(seconds=1e9, max_steps=100, batch=4, crop=64, arch=SMALL, val_strokes=0.0)
    model = train_unet([img], [strokes], cfg, task="nuclei", progress=log.append)
    assert model.classes == ["background", "nucleus", "border"]
    losses = [p.loss for p in log]
    assert len(losses) == 100
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:5])
    f1_after = macro_f1(model.predict_classes(test_img), targets_from_masks(test_lab, "nuclei"), 3)
    assert f1_after > f1_before + 0.2 and f1_after > 0.6
    # foreground (nucleus or border) found on the unseen image
    fg = model.predict_classes(test_img) >= 2
    assert macro_f1(fg.astype(np.uint8) + 1, (test_lab > 0).astype(np.uint8) + 1, 2) > 0.8
    summary = model.metadata["training"]
    assert summary["steps"] == len(log) and summary["validation"] == "training loss"


def test_dense_masks_and_validation_pick_best():
    img, lab = _blobs(2)
    v_img, v_lab = _blobs(3)
    log = []
    cfg = TrainConfig(seconds=1e9, max_steps=20, batch=4, crop=64, arch=SMALL, eval_every=1e-3)
    model = train_unet(
        [img],
        [lab],
        cfg,
        task="nuclei",
        masks=True,
        val_images=[v_img],
        val_targets=[targets_from_masks(v_lab, "nuclei")],
        progress=log.append,
    )
    scores = [p.val_score for p in log if p.val_score is not None]
    assert len(scores) == 20 and len(set(scores)) > 1
    best = model.metadata["training"]["best_val_score"]
    assert best >= max(scores) - 1e-6
    got = macro_f1(model.predict_classes(v_img), targets_from_masks(v_lab, "nuclei"), 3)
    assert got == pytest.approx(best, abs=0.01)


def _base_model(seed: int = 4):
    img, lab = _blobs(seed)
    cfg = TrainConfig(seconds=1e9, max_steps=40, batch=4, crop=64, arch=SMALL)
    return img, lab, train_unet([img], [lab], cfg, task="nuclei", masks=True)


def test_finetuning_keeps_a_right_model_against_a_harmful_run():
    img, lab, base = _base_model()
    strokes = _strokes(targets_from_masks(lab, "nuclei"), 0.03, 5)
    # a harmful learning rate: the starting model must be kept when nothing beats it
    cfg = TrainConfig(seconds=1e9, max_steps=12, batch=4, crop=64, lr=0.5, eval_every=1e-3)
    trainer = Trainer([img], [strokes], cfg, init=base)
    tuned = trainer.run()
    tr = tuned.metadata["training"]
    assert tr["finetuned"] and tr["validation"] == "held-out strokes, the initial model a candidate"
    step0, start_score = trainer.scores[0]
    assert step0 == 0 and tr["initial_val_score"] == pytest.approx(start_score, abs=1e-5)
    assert tr["best_val_score"] >= start_score - 1e-9
    assert trainer.step > 0 and len(trainer.scores) >= 2
    # the returned model scores its recorded best on the held-out strokes
    x, t = trainer.val[0][0], trainer.val[1][0]
    pred = (np.argmax(tuned.predict_proba(img), 0) + 1).ravel()
    assert macro_f1(pred, t.ravel(), 3) == pytest.approx(tr["best_val_score"], abs=0.02)
    assert x.shape[-2:] == t.shape
    assert tr["kept_initial"] == (tr["best_step"] == 0)
    if tr["best_step"] == 0:
        for k, v in base.net.state_dict().items():
            assert torch.equal(v, tuned.net.state_dict()[k])


def test_finetuning_replaces_a_model_the_strokes_say_is_wrong():
    # the base model learned bright nuclei on a dark background; the user's images have
    # dark nuclei on a bright one (inverted contrast): a kind of image it never saw
    _, _, base = _base_model()
    img, lab = _blobs(7, n=12)
    new_kind = img.max() + img.min() - img
    test_img, test_lab = _blobs(8, n=12)
    test_img = test_img.max() + test_img.min() - test_img
    truth = targets_from_masks(test_lab, "nuclei")
    before = macro_f1(base.predict_classes(test_img), truth, 3)
    strokes = _strokes(targets_from_masks(lab, "nuclei"), 0.04, 9)
    cfg = TrainConfig(seconds=1e9, max_steps=80, batch=4, crop=64, eval_every=1e-3)
    trainer = Trainer([new_kind], [strokes], cfg, init=base)
    tuned = trainer.run()
    tr = tuned.metadata["training"]
    assert tr["teacher"] == "random forest on the strokes" and tr["pseudo_labelled_pixels"] > 0
    assert not tr["kept_initial"] and tr["best_val_score"] > tr["initial_val_score"]
    after = macro_f1(tuned.predict_classes(test_img), truth, 3)
    assert after > before + 0.1, (before, after)  # better on an image it did not train on


def test_forest_teaches_only_when_it_beats_the_starting_model_by_the_margin(monkeypatch):
    # a forest as good as the starting model on the held-out strokes teaches nothing:
    # its pseudo-labels would pull a good model towards its errors elsewhere
    import microseg.deep.train as train_mod

    img, lab, base = _base_model()
    strokes = _strokes(targets_from_masks(lab, "nuclei"), 0.03, 5)
    start = base.predict_proba(img)
    monkeypatch.setattr(train_mod, "_classical_teacher", lambda *a: [start.copy()])
    cfg = TrainConfig(seconds=1e9, max_steps=1, batch=4, crop=64)
    tied = Trainer([img], [strokes], cfg, init=base)
    assert cfg.teacher == "classical" and tied.teacher == "none" and tied.pseudo_labelled == 0
    assert tied.teacher_val_score == pytest.approx(tied._initial_score, abs=1e-6)
    # a forest that is right on every held-out stroke where the model is not does teach
    truth = targets_from_masks(lab, "nuclei")
    sure = np.moveaxis(np.eye(3, dtype=np.float32)[truth - 1], -1, 0)
    monkeypatch.setattr(train_mod, "_classical_teacher", lambda *a: [sure])
    better = Trainer([img], [strokes], cfg, init=base)
    gain = better.teacher_val_score - better._initial_score
    assert better.teacher_val_score == pytest.approx(1.0) and gain > better.replace_margin
    assert better.teacher == "random forest on the strokes" and better.pseudo_labelled > 0


def test_anchor_weight_mixes_agreement_with_the_initial_map():
    img, lab, base = _base_model()
    strokes = _strokes(targets_from_masks(lab, "nuclei"), 0.03, 5)
    cfg = TrainConfig(seconds=1e9, max_steps=6, batch=4, crop=64, anchor_weight=0.5,
                      teacher="none")  # fmt: skip
    trainer = Trainer([img], [strokes], cfg, init=base)
    tuned = trainer.run()
    assert tuned.metadata["training"]["validation"].startswith("held-out strokes and agreement")
    assert trainer.anchor is not None and trainer.distill == 0.0
    pred = (np.argmax(tuned.predict_proba(img), 0) + 1).ravel()
    t = trainer.val[1][0].ravel()
    got = 0.5 * macro_f1(pred, t, 3) + 0.5 * macro_f1(pred, trainer.anchor, 3)
    assert got == pytest.approx(tuned.metadata["training"]["best_val_score"], abs=0.02)


def test_teacher_pseudo_labels_only_unlabelled_confident_pixels():
    img, lab = _blobs(3)
    target = targets_from_masks(lab, "nuclei")
    strokes = _strokes(target, 0.03, 2)
    cfg = TrainConfig(seconds=1e9, max_steps=1, batch=2, crop=32, arch=SMALL, val_strokes=0.0)
    trainer = Trainer([img], [strokes], cfg, task="nuclei")
    y = trainer.data.y[0]
    painted = strokes > 0
    np.testing.assert_array_equal(y[painted], strokes[painted])  # strokes untouched
    pseudo = y > 3
    assert pseudo.sum() == trainer.pseudo_labelled > 0.3 * y.size
    assert not (pseudo & painted).any()
    # most pseudo-labels are right: the random forest separates these blobs easily
    assert np.mean((y[pseudo] - 3) == target[pseudo]) > 0.8
    off = Trainer([img], [strokes], dataclasses.replace(cfg, teacher="none"), task="nuclei")
    assert off.pseudo_labelled == 0 and off.distill == 0.0 and int(off.data.y[0].max()) <= 3
    with pytest.raises(InputError, match="teacher"):
        Trainer([img], [strokes], dataclasses.replace(cfg, teacher="oracle"), task="nuclei")


def test_wrong_inputs_are_refused():
    img, lab = _blobs(0)
    with pytest.raises(InputError, match="no labelled"):
        train_unet([img], [np.zeros_like(lab)], TrainConfig(seconds=1, arch=SMALL))
    with pytest.raises(InputError, match="match"):
        train_unet([img], [np.ones((5, 5), np.uint8)], TrainConfig(seconds=1, arch=SMALL))


def test_training_job_start_stop_keeps_best_and_continues():
    img, lab = _blobs(0)
    strokes = _strokes(targets_from_masks(lab, "nuclei"), 0.05, 2)
    cfg = TrainConfig(seconds=60, batch=4, crop=64, arch=SMALL, preview_every=0.5)
    job = TrainingJob([img], [strokes], cfg, task="nuclei", preview_image=img).start()
    t0 = time.time()
    while (job.progress.step < 15 or job.progress.preview is None) and time.time() - t0 < 30:
        time.sleep(0.2)
    assert job.running
    snap = job.progress
    assert snap.running and snap.step >= 1 and 0 < snap.fraction < 1 and snap.eta > 0
    model = job.stop()
    assert not job.running and job.error is None and model is not None
    assert time.time() - t0 < 40
    p = job.progress
    assert len(p.losses) == p.step and p.preview is not None and p.preview.shape == (3, 96, 96)
    steps_first = model.metadata["training"]["steps"]
    # continue with more strokes from the current weights
    more = _strokes(targets_from_masks(lab, "nuclei"), 0.1, 3)
    job.continue_training([more], seconds=2)
    result = job.join(30)
    assert job.error is None and result is not None and result is not model
    assert result.metadata["training"]["finetuned"] and steps_first > 0


def test_training_job_runs_its_after_step_in_the_thread_and_survives_its_failure():
    img, lab = _blobs(0)
    strokes = _strokes(targets_from_masks(lab, "nuclei"), 0.05, 2)
    cfg = TrainConfig(seconds=60, max_steps=3, batch=2, crop=64, arch=SMALL)
    job = TrainingJob([img], [strokes], cfg, task="nuclei")
    seen = []
    job.after = lambda model: seen.append(job.running) or model.metadata["training"]["steps"]
    model = job.start().join(60)
    assert model is not None and job.after_result == 3
    assert seen == [True]  # the job still counts as running while its after step works
    failing = TrainingJob([img], [strokes], cfg, task="nuclei")
    failing.after = lambda model: 1 / 0
    assert failing.start().join(60) is not None
    assert failing.error is None and failing.after_result is None


@pytest.mark.parametrize("seconds", [float("nan"), float("inf"), 0, -5, 1e12, "abc"])
def test_a_training_time_that_never_ends_is_refused(seconds):
    from microseg.deep.train import check_seconds

    with pytest.raises(InputError, match="at most a week"):
        TrainConfig(seconds=seconds)
    with pytest.raises(InputError, match=r"^--seconds must be a number of seconds"):
        check_seconds(seconds, "--seconds")
    assert TrainConfig(seconds=1e9, max_steps=3).seconds == 1e9  # bounded by steps


def test_continuing_with_nan_seconds_is_refused():
    img, lab = _blobs(3)
    cfg = TrainConfig(seconds=1e9, max_steps=1, batch=2, crop=32, arch=SMALL, val_strokes=0.0)
    trainer = Trainer([img], [targets_from_masks(lab, "nuclei")], cfg, task="nuclei")
    trainer.run()
    with pytest.raises(InputError, match="at most a week"):
        trainer.run(seconds=float("nan"))
