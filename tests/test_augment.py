"""Batch augmentation: the 8 dihedral views, per-sample views, crops, one-off resizing."""

import torch

from defect_nas.data.preprocess import resize_uint8
from defect_nas.evaluators.augment import (
    NUM_VIEWS,
    apply_views,
    dihedral,
    gather_views,
    random_resized_crop,
)


def test_the_eight_views_are_distinct_and_form_the_dihedral_group():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)  # no symmetry: all 8 views differ
    views = [dihedral(x, v) for v in range(NUM_VIEWS)]
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8
    assert torch.equal(dihedral(dihedral(x, 1), 3), x)  # rotations compose
    assert torch.equal(dihedral(dihedral(x, 4), 4), x)  # a transpose is its own inverse


def test_apply_views_puts_each_sample_in_its_own_view():
    x = torch.rand(10, 2, 6, 6)
    views = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 3, 5])
    out = apply_views(x, views)
    for i, v in enumerate(views.tolist()):
        assert torch.equal(out[i], dihedral(x[i : i + 1], v)[0])


def test_the_gpu_path_gives_the_same_views_as_the_cpu_path():
    x = torch.randint(0, 256, (12, 3, 7, 7), dtype=torch.uint8)  # uint8 as the trainer feeds it
    views = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 7, 0, 2, 4])
    assert torch.equal(gather_views(x, views), apply_views(x, views))


def test_random_resized_crop_keeps_shape_and_follows_the_generator():
    x = torch.rand(4, 1, 20, 20)
    a = random_resized_crop(x, 0.5, torch.Generator().manual_seed(1))
    b = random_resized_crop(x, 0.5, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.allclose(a, x)
    # scale 1 with no shift is the identity
    assert torch.allclose(random_resized_crop(x, 1.0, torch.Generator().manual_seed(0)), x, atol=1e-5)


def test_resize_uint8_once_to_a_proxy_size():
    x = torch.randint(0, 256, (3, 1, 40, 40), dtype=torch.uint8)
    y = resize_uint8(x, 20)
    assert y.shape == (3, 1, 20, 20) and y.dtype == torch.uint8
    assert resize_uint8(x, 40) is x
    flat = torch.full((1, 1, 40, 40), 77, dtype=torch.uint8)
    assert (resize_uint8(flat, 13) == 77).all()


def test_non_square_batches_get_only_the_views_that_keep_their_shape():
    from defect_nas.evaluators.augment import views_for

    assert views_for(8, 8).tolist() == list(range(NUM_VIEWS))
    x = torch.rand(4, 1, 6, 10)
    for v in views_for(6, 10).tolist():
        assert dihedral(x, v).shape == x.shape
    assert len(views_for(6, 10)) == 4
