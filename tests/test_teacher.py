"""The teacher: trained once per (data, split, config), cached with its per-view logits."""

import json
from dataclasses import replace

import pytest
import torch
from datagen import learnable_dataset

from defect_nas.core.errors import DefectNasError
from defect_nas.data import make_split
from defect_nas.evaluators.augment import dihedral
from defect_nas.evaluators.scoring import chance_score, learned, val_counts
from defect_nas.evaluators.teacher import TeacherConfig, cache_key, ensure_teacher, usable_teacher
from defect_nas.evaluators.trainer import predict_logits

CFG = TeacherConfig(init="scratch", epochs=1, input_size=32, fc_hidden=16)


@pytest.fixture(scope="module")
def setup():
    ds = learnable_dataset(classes=3, per_class=12, size=32)
    return ds, make_split(ds, seed=0)


def test_second_call_loads_the_cached_teacher(setup, tmp_path):
    ds, split = setup
    messages = []
    first = ensure_teacher(ds, split, CFG, tmp_path, log=messages.append)
    assert not first.from_cache and any("training the vgg16 teacher" in m for m in messages)
    assert first.logits.shape == (len(split.train), 8, 3)
    messages.clear()
    second = ensure_teacher(ds, split, CFG, tmp_path, log=messages.append)
    assert second.from_cache and not messages
    assert torch.equal(first.logits, second.logits)
    assert second.test_accuracy == first.test_accuracy
    # the reloaded model is the trained one: same logits on the same images
    x = ds.images[split.train][:4]
    assert torch.allclose(predict_logits(second.model, x, input_size=32), first.logits[:4, 0], atol=1e-2)


def test_cached_logits_are_those_of_each_view(setup, tmp_path):
    ds, split = setup
    t = ensure_teacher(ds, split, CFG, tmp_path)
    x = ds.images[split.train][:3]
    for v in (1, 5):
        direct = predict_logits(t.model, dihedral(x, v), input_size=32)
        assert torch.allclose(direct, t.logits[:3, v], atol=1e-2)


def test_cache_key_follows_data_split_and_config(setup):
    ds, split = setup
    key = cache_key(ds, split, CFG)
    assert cache_key(ds, make_split(ds, seed=1), CFG) != key
    assert cache_key(ds, split, TeacherConfig(init="scratch", epochs=2, input_size=32, fc_hidden=16)) != key
    assert cache_key(ds, split, CFG) == key


def test_damaged_cache_is_rebuilt_not_trusted(setup, tmp_path):
    ds, split = setup
    t = ensure_teacher(ds, split, CFG, tmp_path)
    (t.cache_dir / "logits.safetensors").write_bytes(b"garbage")
    messages = []
    again = ensure_teacher(ds, split, CFG, tmp_path, log=messages.append)
    assert not again.from_cache and any("unreadable" in m for m in messages)


def test_bad_teacher_options_are_clear():
    with pytest.raises(DefectNasError, match="unknown teacher 'resnet': choose --teacher vgg16, efficientnet-lite0"):
        TeacherConfig(arch="resnet")
    with pytest.raises(DefectNasError, match="no such file"):
        TeacherConfig(weights_file="/nonexistent/vgg.pth")


def test_a_teacher_cut_short_by_the_time_budget_is_cached_and_said_so_on_every_load(setup, tmp_path):
    """A search gives a teacher not yet cached at most a share of its --time-budget; its workers
    then load that same teacher, and each load says it is not the full training."""
    ds, split = setup
    long = TeacherConfig(init="scratch", epochs=10_000, input_size=32, fc_hidden=16)
    first = ensure_teacher(ds, split, long, tmp_path, time_budget_s=3.0)
    meta = json.loads((first.cache_dir / "meta.json").read_text())
    assert not first.from_cache and meta["stop_reason"] == "time" and meta["epochs_run"] < 10_000
    messages = []
    again = ensure_teacher(ds, split, long, tmp_path, log=messages.append)
    assert again.from_cache and any("cut short by a --time-budget" in m and "of 10000 epochs" in m
                                    for m in messages)


def test_a_scratch_bn_teacher_is_vgg16_with_batch_norm_and_reloads_as_trained(setup, tmp_path):
    """Kim et al.'s scratch contrast needs a scratch VGG16 that learns: --teacher-init scratch-bn. Its
    cache must reload with the batch norms (their running statistics are part of what was trained)."""
    from defect_nas.inspection.analysis import conv_activations

    ds, split = setup
    cfg = TeacherConfig(init="scratch-bn", epochs=1, input_size=32, fc_hidden=16)
    first = ensure_teacher(ds, split, cfg, tmp_path)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in first.model.modules()) == 13
    assert len(conv_activations(first.model)) == 13  # the analysis sees every conv through its batch norm
    again = ensure_teacher(ds, split, cfg, tmp_path)
    assert again.from_cache
    x = ds.images[split.train][:4]
    assert torch.allclose(predict_logits(again.model, x, input_size=32), first.logits[:4, 0], atol=1e-2)
    assert cache_key(ds, split, cfg) != cache_key(ds, split, CFG)


def test_freezing_counts_vgg16_blocks_with_or_without_batch_norm():
    from defect_nas.evaluators.teacher import build_teacher

    for init in ("scratch", "scratch-bn"):
        model = build_teacher(TeacherConfig(init=init, freeze_blocks=2, fc_hidden=16), 3, 1)
        frozen = [not p.requires_grad for p in model.features.parameters()]
        convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
        assert [all(not p.requires_grad for p in c.parameters()) for c in convs] == [True] * 4 + [False] * 9
        assert any(frozen) and not all(frozen)


def test_scratch_bn_is_for_vgg16_only():
    with pytest.raises(DefectNasError, match="scratch-bn adds batch norm to VGG16"):
        TeacherConfig(arch="efficientnet-lite0", init="scratch-bn")


def test_a_teacher_at_chance_is_dropped_with_a_warning_and_a_learned_one_kept(setup, tmp_path):
    """Distilling from a teacher that learned nothing teaches noise: the search and `train` drop it
    and say so (budget_wall's imbalanced data once kept an 8-epoch VGG16 at 16.67%)."""
    ds, split = setup
    trained = ensure_teacher(ds, split, CFG, tmp_path, log=lambda m: None)
    rate = chance_score(ds, val_counts(ds, split))
    assert rate == pytest.approx(100 * torch.bincount(ds.labels[split.val]).max().item() / len(split.val))
    messages = []
    kept, why = usable_teacher(replace(trained, val_accuracy=99.0), ds, split, log=messages.append)
    assert kept is not None and why is None and not messages
    dropped, why = usable_teacher(replace(trained, val_accuracy=rate), ds, split, log=messages.append)
    assert dropped is None and messages == [why] and "no better than chance" in why and "--teacher none" in why


def test_chance_on_balanced_six_class_validation_is_one_sixth_plus_three_standard_errors():
    """NEU's shape: 6 balanced classes, a stratified validation part; always answering one class
    scores 16.67%, and a model that learned nothing rarely beats that by more than 3 standard errors."""
    ds = learnable_dataset(classes=6, per_class=40, size=8)
    split = make_split(ds, seed=0)
    n = len(split.val)
    assert chance_score(ds, val_counts(ds, split)) == pytest.approx(100 / 6)
    bound = 100 / 6 + 300 * ((1 / 6) * (5 / 6) / n) ** 0.5
    assert not learned(bound - 0.1, ds, split) and learned(bound + 0.1, ds, split)


def test_a_search_drops_a_teacher_at_chance_with_a_warning(tmp_path, monkeypatch):
    """The search's students train without distillation when the teacher learned nothing, and the
    warning is logged and kept for the run's summary notes; every worker rebuilds the same context."""
    from PIL import Image

    from defect_nas.core.search_config import SearchConfig
    from defect_nas.nas import context

    ds = learnable_dataset(classes=3, per_class=6, size=32)
    root = tmp_path / "parts"
    for i, (img, label) in enumerate(zip(ds.images, ds.labels)):
        (root / ds.class_names[int(label)]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0].numpy()).save(root / ds.class_names[int(label)] / f"{i}.png")
    monkeypatch.setenv("DEFECT_NAS_CACHE", str(tmp_path / "cache"))
    real = context.ensure_teacher
    monkeypatch.setattr(context, "ensure_teacher", lambda *a, **k: replace(real(*a, **k), val_accuracy=0.0))
    config = SearchConfig(dataset=str(root), teacher="vgg16", teacher_init="scratch", teacher_epochs=1,
                          teacher_input_size=32)
    messages = []
    ctx = context.load_context(config, tmp_path / "run", log=messages.append)
    assert ctx.teacher is None and ctx.config.kd != "none"  # asked for, and dropped
    # and the students then train without distillation: with kd still "kl" and no teacher logits, every
    # trial raised in the trainer and killed its worker (a 20-minute search ended after 8 worker deaths)
    assert context.train_config(ctx, 2, None, 0).kd == "none"
    assert ctx.teacher_note in messages and "no better than chance" in ctx.teacher_note
