"""Unit tests of the data module: the stratified split, subsets, normalisation and on-device batching."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cifarbudget.data.core import DeviceSplit, Split, normalization_stats, stratified_split, subset
from cifarbudget.data.synthetic import make_synthetic
from cifarbudget.errors import DataError


def test_stratified_split_keeps_class_shares_and_is_fixed_by_the_seed() -> None:
    labels = torch.tensor([0] * 600 + [1] * 300 + [2] * 100)
    train, val = stratified_split(labels, 100, seed=7)
    assert len(val) == 100 and len(train) == 900
    assert torch.bincount(labels[val]).tolist() == [60, 30, 10]
    assert (
        set(train.tolist()).isdisjoint(val.tolist()) and len(set(train.tolist()) | set(val.tolist())) == 1000
    )
    again_train, again_val = stratified_split(labels, 100, seed=7)
    assert torch.equal(val, again_val) and torch.equal(train, again_train)
    assert not torch.equal(val, stratified_split(labels, 100, seed=8)[1])


def test_stratified_split_rounding_fills_with_the_largest_remainders() -> None:
    labels = torch.tensor([0] * 5 + [1] * 5 + [2] * 5)
    _, val = stratified_split(labels, 4, seed=0)
    assert len(val) == 4 and sorted(torch.bincount(labels[val], minlength=3).tolist()) == [1, 1, 2]


@pytest.mark.parametrize("size", [-1, 10])
def test_stratified_split_rejects_impossible_sizes(size: int) -> None:
    with pytest.raises(DataError, match="--val-size"):
        stratified_split(torch.arange(10) % 2, size, seed=0)


def test_subset_and_split_checks() -> None:
    data = make_synthetic(40, seed=0)
    part = subset(data, torch.tensor([3, 1, 4]))
    assert (
        torch.equal(part.images[0], data.images[3])
        and part.labels.tolist() == data.labels[[3, 1, 4]].tolist()
    )
    with pytest.raises(DataError, match="must be uint8"):
        Split(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.long), ["a"])
    with pytest.raises(DataError, match="labels outside"):
        Split(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 5]), ["a", "b"])


def test_normalization_stats_equal_a_direct_computation() -> None:
    images = make_synthetic(300, seed=1).images
    mean, std = normalization_stats(images)
    x = images.double() / 255
    assert mean == pytest.approx(x.mean(dim=(0, 2, 3)).tolist(), abs=1e-12)
    assert std == pytest.approx(x.std(dim=(0, 2, 3), unbiased=False).tolist(), abs=1e-9)


def test_device_split_batches_normalise_and_cover_every_image_once() -> None:
    data = make_synthetic(100, seed=2)
    mean, std = normalization_stats(data.images)
    split = DeviceSplit.from_split(data, torch.device("cpu"), mean, std)
    expected = (data.images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
        1, 3, 1, 1
    )
    x, y = next(split.batches(100, shuffle=False, drop_last=False))
    assert torch.allclose(x, expected, atol=1e-5) and torch.equal(y, data.labels)
    assert [len(b) for b, _ in split.batches(32, shuffle=False, drop_last=False)] == [32, 32, 32, 4]
    assert [len(b) for b, _ in split.batches(32, shuffle=False, drop_last=True)] == [32, 32, 32]
    torch.manual_seed(0)
    order = torch.cat(list(split.index_batches(32, shuffle=True, drop_last=False)))
    assert sorted(order.tolist()) == list(range(100)) and order.tolist() != list(range(100))
    torch.manual_seed(0)
    shuffled = list(split.batches(32, shuffle=True, drop_last=False))
    assert torch.equal(torch.cat([yb for _, yb in shuffled]), data.labels[order])  # the same order, same RNG
    assert split.steps(32, drop_last=True) == 3 and split.steps(32, drop_last=False) == 4


def test_channels_last_batches_hold_the_same_numbers() -> None:
    data = make_synthetic(16, seed=3)
    mean, std = normalization_stats(data.images)
    plain = DeviceSplit.from_split(data, torch.device("cpu"), mean, std)
    cl = DeviceSplit.from_split(data, torch.device("cpu"), mean, std, channels_last=True)
    (a, _), (b, _) = (
        next(plain.batches(16, shuffle=False, drop_last=False)),
        next(cl.batches(16, shuffle=False, drop_last=False)),
    )
    assert b.is_contiguous(memory_format=torch.channels_last) and torch.equal(a, b)


def test_a_channels_last_split_keeps_its_uint8_images_channels_last_and_gathers_them_so() -> None:
    """The uint8 images of a channels_last split are stored channels_last (a batch is then
    normalised without a transposition); :meth:`DeviceSplit.take` and the shuffled batches gather
    them as such, and either layout gives the same values; a split of contiguous batches keeps the
    images as they were given."""
    data = make_synthetic(40, seed=4)
    mean, std = normalization_stats(data.images)
    cpu = torch.device("cpu")
    cl = DeviceSplit.from_split(data, cpu, mean, std, channels_last=True)
    assert cl.images.is_contiguous(memory_format=torch.channels_last) and not cl.images.is_contiguous()
    planar = cl.laid_out(channels_last=False)
    assert planar.images.is_contiguous() and planar.labels is cl.labels
    assert planar.laid_out(channels_last=False) is planar and cl.laid_out(channels_last=True) is cl
    index = torch.tensor([5, 0, 39, 5, 17])
    taken = cl.take(index)
    assert taken.is_contiguous(memory_format=torch.channels_last) and not taken.is_contiguous()
    assert torch.equal(taken, data.images[index]) and torch.equal(planar.take(index), data.images[index])
    assert planar.take(index).is_contiguous()
    for split in (cl, planar):  # the same shuffled batches (values and channels_last layout)
        torch.manual_seed(0)
        batches = list(split.batches(16, shuffle=True, drop_last=False))
        assert all(x.is_contiguous(memory_format=torch.channels_last) for x, _ in batches)
        if split is cl:
            first = batches
    for (a, ya), (b, yb) in zip(first, batches, strict=True):
        assert torch.equal(a, b) and torch.equal(ya, yb)
    given = data.images.contiguous(memory_format=torch.channels_last)
    plain = DeviceSplit.from_tensors(given, data.labels, cpu, mean, std)  # not channels_last: as given
    assert plain.images.is_contiguous(memory_format=torch.channels_last) and not plain.channels_last


# --- decoding and image folders: what a user's files can be ----------------------------------------
def _png(path: Path, image: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)  # type: ignore[attr-defined]
    return path


def test_a_16_bit_png_is_scaled_to_8_bits_and_float_pixels_are_refused(tmp_path: Path) -> None:
    """``convert("RGB")`` clips 16-bit grayscale to white: the pixels are scaled instead."""
    from PIL import Image

    from cifarbudget.data.decode import decode_image

    wide = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    path = _png(tmp_path / "gray16.png", Image.fromarray(wide))
    with Image.open(path) as img:
        assert img.mode.startswith("I;16")
    rgb = decode_image(path.read_bytes(), str(path))
    assert rgb.shape == (1, 4, 3) and rgb.dtype == np.uint8
    assert rgb[0, :, 0].tolist() == [0, 1, 128, 255] and (rgb[..., 0] == rgb[..., 2]).all()
    floats = _png(tmp_path / "float.tif", Image.fromarray(np.ones((2, 2), dtype=np.float32)))
    with pytest.raises(DataError, match=r"float\.tif has floating-point pixels \(PIL mode F\): convert it"):
        decode_image(floats.read_bytes(), str(floats))


def _tree(root: Path) -> Path:
    from PIL import Image

    for split in ("train", "test"):
        for c, name in enumerate(("cat", "dog")):
            for i in range(3):
                _png(root / split / name / f"{i}.png", Image.new("RGB", (8, 8), (40 * c, i, 0)))
    return root


def test_a_second_copy_of_an_archive_is_refused_not_read_twice(tmp_path: Path) -> None:
    from cifarbudget.data.imagefolder import imagefolder_metadata

    folder = _tree(tmp_path / "tree")
    data = tmp_path / "data"
    data.mkdir()
    with zipfile.ZipFile(data / "data.zip", "w") as zf:
        for f in sorted(folder.rglob("*.png")):
            zf.write(f, f.relative_to(folder).as_posix())
    assert imagefolder_metadata(data)["n_train"] == 6
    shutil.copy(data / "data.zip", data / "data (1).zip")
    with pytest.raises(
        DataError,
        match=r"train image cat/0\.png is in the data twice: .*data \(1\)\.zip:train/cat/0\.png and .*data\.zip:train/cat/0\.png",
    ):
        imagefolder_metadata(data)


def _zip_tree(folder: Path, archive: Path) -> Path:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(folder.rglob("*.png")):
            zf.write(f, f.relative_to(folder).as_posix())
    return archive


def test_a_zip_is_listed_once_per_version_and_opened_only_to_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The archive's directory is read once however often a run lists it (the data id, each
    split's cache key); a changed archive is read again, so the fingerprint follows the data; a
    split whose images are cached never opens the archive."""
    from PIL import Image

    from cifarbudget.data import imagefolder as im

    monkeypatch.setenv("CIFARBUDGET_CACHE", str(tmp_path / "cache"))
    folder = _tree(tmp_path / "tree")
    data = tmp_path / "data"
    _zip_tree(folder, data / "data.zip")
    opened: list[str] = []
    real = zipfile.ZipFile

    def counting(file: object, *args: object, **kwargs: object) -> zipfile.ZipFile:
        opened.append(str(file))
        return real(file, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(im.zipfile, "ZipFile", counting)
    first = im.imagefolder_metadata(data)
    train = im.load_imagefolder(data, train=True)  # decodes: the archive is opened to read
    assert im.imagefolder_metadata(data) == first
    assert len(opened) == 2  # one listing, one reader
    again = im.load_imagefolder(data, train=True)  # from the decode cache: nothing opened
    assert len(opened) == 2 and torch.equal(again.images, train.images)

    _png(folder / "train" / "cat" / "0.png", Image.new("RGB", (8, 8), (255, 255, 255)))
    _zip_tree(folder, data / "data.zip")  # the same names, one image changed
    changed = im.imagefolder_metadata(data)
    assert changed["fingerprint"] != first["fingerprint"] and changed["n_train"] == first["n_train"]
    assert im.load_imagefolder(data, train=True).images[0].max() == 255


def test_a_broken_link_is_one_line_and_a_folder_named_like_an_image_is_not_an_image(tmp_path: Path) -> None:
    from cifarbudget.data.imagefolder import imagefolder_metadata, load_imagefolder

    root = _tree(tmp_path / "data")
    (root / "train" / "cat" / "folder.jpg").mkdir()
    assert imagefolder_metadata(root)["n_train"] == 6
    (root / "train" / "dog" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    with pytest.raises(DataError, match=r"cannot read image .*gone\.jpg: No such file or directory"):
        imagefolder_metadata(root)
    with pytest.raises(DataError, match=r"cannot read image .*gone\.jpg"):
        load_imagefolder(root, train=True)


def test_an_image_of_another_size_is_named(tmp_path: Path) -> None:
    from PIL import Image

    from cifarbudget.data.imagefolder import load_imagefolder

    root = _tree(tmp_path / "data")  # 8x8 images
    _png(root / "train" / "dog" / "odd.png", Image.new("RGB", (9, 8)))  # 8 rows of 9 pixels
    with pytest.raises(DataError, match=r"odd\.png is 8x9, most are 8x8 \(height x width\); resize them"):
        load_imagefolder(root, train=True)
