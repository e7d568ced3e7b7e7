"""The shared batch iterator: same (seed, epoch) -> same batches, for every framework."""

import numpy as np
import pytest

from shared import imaging
from shared.datasets import ImageSet, batch_order, class_weights, iterate_batches, num_batches

SPEC = imaging.PreprocessSpec(32)


@pytest.fixture(scope="module")
def image_set():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    return ImageSet(images, np.arange(10) % 3, [f"img{i}" for i in range(10)])


def run(image_set, batch_size=4, **kw):
    args = {"shuffle": True, "seed": 0, "epoch": 0, "augment": True} | kw
    return list(iterate_batches(image_set, batch_size, spec=SPEC, **args))


def test_shapes_dtypes_and_last_batch(image_set):
    batches = run(image_set)
    assert [len(y) for _, y in batches] == [4, 4, 2]
    for x, y in batches:
        assert x.dtype == np.float32 and x.shape == (len(y), 32, 32, 3)
        assert y.dtype == np.int64
    assert [len(y) for _, y in run(image_set, drop_last=True)] == [4, 4]
    assert num_batches(10, 4) == 3 and num_batches(10, 4, drop_last=True) == 2


def test_same_seed_and_epoch_give_identical_batches(image_set):
    a, b = run(image_set), run(image_set)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_order_follows_the_documented_rng(image_set):
    expected = np.random.default_rng((0, 3)).permutation(10)
    assert batch_order(10, shuffle=True, seed=0, epoch=3).tolist() == expected.tolist()
    labels = np.concatenate([y for _, y in run(image_set, epoch=3, augment=False)])
    assert labels.tolist() == image_set.labels[expected].tolist()
    assert batch_order(5, shuffle=False, seed=0, epoch=3).tolist() == [0, 1, 2, 3, 4]


def test_different_epoch_or_seed_changes_order(image_set):
    e0 = batch_order(10, shuffle=True, seed=0, epoch=0)
    assert not np.array_equal(e0, batch_order(10, shuffle=True, seed=0, epoch=1))
    assert not np.array_equal(e0, batch_order(10, shuffle=True, seed=1, epoch=0))


def test_augmentation_independent_of_batch_size_and_prefetch(image_set):
    whole = np.concatenate([x for x, _ in run(image_set, batch_size=10)])
    small = np.concatenate([x for x, _ in run(image_set, batch_size=3)])
    prefetched = np.concatenate([x for x, _ in run(image_set, batch_size=3, prefetch=2)])
    np.testing.assert_array_equal(whole, small)
    np.testing.assert_array_equal(whole, prefetched)
    other_epoch = np.concatenate([x for x, _ in run(image_set, batch_size=10, epoch=1)])
    assert not np.array_equal(np.sort(whole, axis=None), np.sort(other_epoch, axis=None))


def test_no_augmentation_is_plain_normalize(image_set):
    (x, y), *_ = run(image_set, batch_size=10, shuffle=False, augment=False)
    np.testing.assert_array_equal(x, imaging.normalize(image_set.images, SPEC))
    assert y.tolist() == image_set.labels.tolist()


def test_prefetch_generator_can_stop_early(image_set):
    batches = iterate_batches(
        image_set, 2, spec=SPEC, shuffle=True, seed=0, epoch=0, augment=True, prefetch=3
    )
    next(batches)
    batches.close()


def test_wrong_size_or_batch_size(image_set):
    big = imaging.PreprocessSpec(64)
    with pytest.raises(ValueError, match="image_size=64"):
        list(iterate_batches(image_set, 4, spec=big, shuffle=False, seed=0, epoch=0, augment=False))
    with pytest.raises(ValueError, match="batch_size"):
        run(image_set, batch_size=0)


def test_class_weights():
    w = class_weights(np.array([0, 0, 0, 1, 2, 2]), 4)
    assert w.dtype == np.float32
    np.testing.assert_allclose(w[:3].mean(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(w[:3] / w[1], [1 / 3, 1, 1 / 2], rtol=1e-6)
    assert w[3] == 0
    with pytest.raises(ValueError, match="0..3"):
        class_weights(np.array([4]), 4)
