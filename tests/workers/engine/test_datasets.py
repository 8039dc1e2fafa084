"""``workers.engine.datasets``: every source read for real, from files the tests write.

Nothing here reaches the network: the download hosts point at a closed local port, Keras'
cache is a temporary ``KERAS_HOME``, and Keras' hash check is patched where a test writes its
own stand-in for a downloaded file. No database either.
"""
from __future__ import annotations

import gzip
import json
import math
import os
import pickle
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from workers.engine import catalog, datasets
from workers.engine.datasets import Dataset, DatasetError, load_dataset, split_indices

ROOT = Path(__file__).resolve().parents[3]
CLOSED_PORT = ("127.0.0.1", 9)  # discard: nothing listens, the connection is refused at once


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in datasets.DOWNLOAD_HOSTS:
        monkeypatch.setitem(datasets.DOWNLOAD_HOSTS, key, CLOSED_PORT)


@pytest.fixture
def keras_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Keras cache. Keras reads KERAS_HOME once, at import: patch both."""
    from keras.src.backend import config
    from keras.src.utils import file_utils

    home = tmp_path / "keras-home"
    (home / "datasets").mkdir(parents=True)
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setattr(config, "_KERAS_DIR", str(home))

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a test tried to download {args[:1]}")

    monkeypatch.setattr(file_utils, "urlretrieve", no_network)
    assert datasets.keras_cache_dir() == home / "datasets"
    return home / "datasets"


@pytest.fixture
def trusted_cache(keras_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The cache, with Keras' hash check accepting the tests' small stand-in files."""
    from keras.src.utils import file_utils

    monkeypatch.setattr(file_utils, "validate_file", lambda *args, **kwargs: True)
    return keras_cache


def assert_split_ok(data: Dataset, *, kind: str, shape: tuple[int, ...], n_classes: int) -> None:
    assert data.kind == kind
    assert data.input_shape == shape
    assert data.x_train.shape[1:] == shape and data.x_val.shape[1:] == shape
    assert len(data.x_train) == len(data.y_train) >= 1 and len(data.x_val) == len(data.y_val) >= 1
    assert data.y_train.dtype == np.int32 and data.y_val.dtype == np.int32
    labels = np.concatenate([data.y_train, data.y_val])
    assert labels.min() >= 0 and labels.max() < n_classes == data.n_classes
    assert len(data.class_names) == n_classes
    if kind == catalog.IMAGE:
        assert data.x_train.dtype == np.float32 and data.vocab_size is None
        assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    else:
        assert data.x_train.dtype == np.int32 and data.vocab_size is not None
        assert 0 <= data.x_train.min() and data.x_train.max() < data.vocab_size


# --- module, digits, splitting --------------------------------------------------------------

def test_import_is_light_and_cache_dir_follows_keras_home(tmp_path: Path) -> None:
    code = (
        "import sys, workers.engine.datasets as d; "
        "heavy = ('django', 'tensorflow', 'keras', 'sklearn'); "
        "print(sorted(m for m in heavy if m in sys.modules)); "
        "print(d.keras_cache_dir())"
    )
    env = {**os.environ, "KERAS_HOME": str(tmp_path)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True, timeout=60).stdout.splitlines()
    assert out == ["[]", str(tmp_path / "datasets")]


def test_digits_are_scaled_nhwc_images_with_int_labels() -> None:
    data = load_dataset("digits")
    assert_split_ok(data, kind=catalog.IMAGE, shape=(8, 8, 1), n_classes=10)
    assert data.name == "digits" and data.class_names == [str(d) for d in range(10)]
    assert len(data.x_val) == round(1797 * 0.2) and len(data.x_train) == 1797 - len(data.x_val)
    assert data.x_train.max() == 1.0  # 16/16: scaled to the full range, not by 255
    assert set(np.unique(data.y_train)) == set(range(10))


def test_same_seed_gives_identical_arrays_and_another_seed_differs() -> None:
    first = load_dataset("digits", seed=7, sample_fraction=0.3)
    again = load_dataset("digits", seed=7, sample_fraction=0.3)
    other = load_dataset("digits", seed=8, sample_fraction=0.3)
    for field in ("x_train", "y_train", "x_val", "y_val"):
        np.testing.assert_array_equal(getattr(first, field), getattr(again, field))
    assert not np.array_equal(first.y_train, other.y_train)


def test_validation_split_carves_disjoint_parts_out_of_all_samples() -> None:
    data = load_dataset("digits", validation_split=0.5)
    assert len(data.x_val) == round(1797 * 0.5) and len(data.x_train) + len(data.x_val) == 1797
    train = {row.tobytes() for row in data.x_train}
    assert not any(row.tobytes() in train for row in data.x_val[:50])  # digits has no duplicates


def test_sample_fraction_keeps_a_deterministic_nested_subset_of_each_part() -> None:
    data = load_dataset("digits", sample_fraction=0.1, validation_split=0.2)
    assert len(data.x_train) == round(1438 * 0.1) and len(data.x_val) == round(359 * 0.1)
    small = split_indices(1000, seed=3, validation_split=0.2, sample_fraction=0.1)
    large = split_indices(1000, seed=3, validation_split=0.2, sample_fraction=0.5)
    assert set(small[0]) <= set(large[0]) and set(small[1]) <= set(large[1])
    assert not set(large[0]) & set(large[1])
    tiny = load_dataset("digits", sample_fraction=1e-6)
    assert len(tiny.x_train) == 1 and len(tiny.x_val) == 1


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5, math.nan, "0.5", True, None])
def test_sample_fraction_outside_0_to_1_is_refused(fraction: Any) -> None:
    with pytest.raises(DatasetError, match=r"sample_fraction is .*0 < sample_fraction <= 1"):
        load_dataset("digits", sample_fraction=fraction)


@pytest.mark.parametrize("split", [0, 0.51, 1.0])
def test_validation_split_outside_0_to_half_is_refused(split: float) -> None:
    with pytest.raises(DatasetError, match=r"0 < validation_split <= 0.5"):
        load_dataset("digits", validation_split=split)


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(DatasetError) as caught:
        load_dataset("imagenet")
    message = str(caught.value)
    assert "'imagenet'" in message
    for name in [*catalog.DATASETS, "upload"]:
        assert name in message


# --- uploads: images ------------------------------------------------------------------------

def save_npz(tmp_path: Path, name: str = "upload.npz", **arrays: Any) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def upload(path: Path, **options: Any) -> Dataset:
    return load_dataset("upload", options={"path": str(path), **options})


def labels(n: int, k: int = 3) -> np.ndarray:
    return np.arange(n) % k


def test_upload_uint8_grayscale_images_get_a_channel_and_are_scaled(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, size=(40, 6, 5), dtype=np.uint8)
    x[0, 0, 0] = 255
    data = upload(save_npz(tmp_path, x=x, y=labels(40)))
    assert_split_ok(data, kind=catalog.IMAGE, shape=(6, 5, 1), n_classes=3)
    assert data.class_names == ["0", "1", "2"]
    everything = np.concatenate([data.x_train, data.x_val])
    assert everything.max() == 1.0
    recovered = np.round(everything[..., 0] * 255).astype(np.uint8)
    assert sorted(row.tobytes() for row in recovered) == sorted(row.tobytes() for row in x)


def test_upload_float_rgb_images_keep_their_values(tmp_path: Path) -> None:
    x = np.random.default_rng(1).random((20, 4, 4, 3))
    names = np.array(["cat", "dog"])
    data = upload(save_npz(tmp_path, x=x, y=labels(20, 2).reshape(-1, 1), class_names=names))
    assert_split_ok(data, kind=catalog.IMAGE, shape=(4, 4, 3), n_classes=2)
    assert data.class_names == ["cat", "dog"]
    originals = {np.float32(row).tobytes() for row in x}
    assert all(row.tobytes() in originals for row in data.x_train)


def test_upload_rgba_images_are_accepted(tmp_path: Path) -> None:
    x = np.zeros((10, 3, 3, 4), dtype=np.uint8)
    assert upload(save_npz(tmp_path, x=x, y=labels(10, 2))).input_shape == (3, 3, 4)


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (np.zeros((10, 5), np.uint8), labels(10),
         r"x has shape \(10, 5\); expected \(N, H, W\) or \(N, H, W, C\) with C in 1, 3, 4"),
        (np.zeros((10, 4, 4, 2), np.uint8), labels(10), r"x has shape \(10, 4, 4, 2\)"),
        (np.zeros((9, 4, 4), np.uint8), labels(9), r"x has 9 samples; at least 10"),
        (np.zeros((10, 4, 4), np.int64), labels(10), r"x has dtype int64; expected uint8"),
        (np.full((10, 4, 4), 2.0), labels(10), r"x holds floats from 2 to 2; .* \[0, 1\]"),
        (np.full((10, 4, 4), np.nan), labels(10), r"x holds floats"),
        (np.zeros((10, 4, 4), np.uint8), labels(12), r"x has 10 samples but y has 12 labels"),
        (np.zeros((10, 4, 4), np.uint8), labels(10).reshape(5, 2), r"y has shape \(5, 2\)"),
        (np.zeros((10, 4, 4), np.uint8), labels(10) - 1, r"y has the label -1; .*0\.\.K-1"),
        (np.zeros((10, 4, 4), np.uint8), labels(10) * 2, r"never 1, 3; .*every class present"),
        (np.zeros((10, 4, 4), np.uint8), labels(10) + 0.5, r"y has dtype float64; .*integers"),
        (np.zeros((10, 4, 4), np.uint8), np.ones(10, np.int64), r"only one class \(1\)"),
    ],
    ids=["2d", "two-channels", "too-few", "int64", "floats-over-1", "nan", "lengths",
         "label-shape", "negative", "gap", "fractional", "one-class"],
)
def test_bad_image_uploads_say_what_is_wrong(tmp_path: Path, x: np.ndarray, y: np.ndarray,
                                             message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        upload(save_npz(tmp_path, x=x, y=y))


def test_whole_float_labels_are_accepted(tmp_path: Path) -> None:
    data = upload(save_npz(tmp_path, x=np.zeros((10, 2, 2)), y=labels(10).astype(float)))
    assert data.n_classes == 3 and data.y_train.dtype == np.int32


def test_upload_without_x_or_y_names_the_missing_array(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"has no array y; .*needs x .* and y .*found: \['x'\]"):
        upload(save_npz(tmp_path, x=np.zeros((10, 4, 4), np.uint8)))
    with pytest.raises(DatasetError, match=r"has no array x or y"):
        upload(save_npz(tmp_path, images=np.zeros((10, 4, 4), np.uint8)))


def test_upload_of_object_arrays_is_refused_without_unpickling(tmp_path: Path) -> None:
    x = np.empty(10, dtype=object)
    with pytest.raises(DatasetError, match=r"x is an object array"):
        upload(save_npz(tmp_path, x=x, y=labels(10)))


def test_upload_file_problems(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"needs options\['path'\]"):
        load_dataset("upload")
    text = tmp_path / "images.txt"
    text.write_text("hello")
    with pytest.raises(DatasetError, match=r"extension '.txt'; allowed: .npz .* or .csv"):
        upload(text)
    with pytest.raises(DatasetError, match=r"does not exist"):
        upload(tmp_path / "missing.npz")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip file")
    with pytest.raises(DatasetError, match=r"not a readable .npz file"):
        upload(broken)


def test_upload_over_max_bytes_is_refused(tmp_path: Path) -> None:
    path = save_npz(tmp_path, x=np.zeros((100, 8, 8), np.uint8), y=labels(100))
    with pytest.raises(DatasetError, match=r"upload.npz is \d+\.\d KiB; the limit is 1.0 KiB"):
        upload(path, max_bytes=1024)
    compressed = tmp_path / "compressed.npz"
    np.savez_compressed(compressed, x=np.zeros((1000, 32, 32), np.uint8), y=labels(1000))
    limit = compressed.stat().st_size + 1
    with pytest.raises(DatasetError, match=r"unpacks to .* KiB; the limit is"):
        upload(compressed, max_bytes=limit)
    with pytest.raises(DatasetError, match=r"option max_bytes is 0"):
        upload(path, max_bytes=0)


# --- uploads: text --------------------------------------------------------------------------

REVIEWS = [
    ("A wonderful, moving film", "good"), ("Terrible plot and worse acting", "bad"),
    ("I loved every minute", "good"), ("Boring, slow, and far too long", "bad"),
    ("Great cast, great story", "good"), ("The worst film of the year", "bad"),
    ("Wonderful music and a great ending", "good"), ("Slow and terrible", "bad"),
    ('She said "great", and she was right', "good"), ("Long, boring, bad", "bad"),
    ("Loved it", "good"), ("Worst. Film. Ever.", "bad"),
]


def write_csv(tmp_path: Path, rows: list[tuple[str, Any]], header: str = "text,label") -> Path:
    import csv

    path = tmp_path / "reviews.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header.split(","))
        writer.writerows(rows)
    return path


def test_csv_upload_tokenizes_pads_and_names_string_labels(tmp_path: Path) -> None:
    path = write_csv(tmp_path, REVIEWS)
    data = upload(path, vocab_size=12, sequence_length=6, )
    assert_split_ok(data, kind=catalog.TEXT, shape=(6,), n_classes=2)
    assert data.class_names == ["bad", "good"] and data.vocab_size == 12
    assert data.x_train.max() <= 11
    assert (data.x_train[:, -1] > 0).all()  # padded at the front, every review has a word
    again = upload(path, vocab_size=12, sequence_length=6)
    np.testing.assert_array_equal(data.x_val, again.x_val)


def test_csv_vocabulary_comes_from_training_rows_only(tmp_path: Path) -> None:
    rows = [(f"common word{i}", i % 2) for i in range(20)]
    data = load_dataset("upload", validation_split=0.5,
                        options={"path": str(write_csv(tmp_path, rows)), "sequence_length": 2})
    # "common" is in every row (id 2); each validation row's own word was never seen (id 1).
    assert (data.x_val == [2, 1]).all()
    assert (data.x_train[:, 0] == 2).all() and (data.x_train[:, 1] > 2).all()


def test_csv_integer_labels_map_in_numeric_order(tmp_path: Path) -> None:
    rows = [(text, [10, 2, 1][i % 3]) for i, (text, _) in enumerate(REVIEWS)]
    data = upload(write_csv(tmp_path, rows))
    assert data.class_names == ["1", "2", "10"] and data.n_classes == 3
    assert data.input_shape == (catalog.DEFAULT_SEQUENCE_LENGTH,)


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        (REVIEWS, "review,label", r"has the columns \['review', 'label'\]; .*text,label"),
        (REVIEWS[:9], "text,label", r"has 9 rows; at least 10"),
        ([(text, "good") for text, _ in REVIEWS], "text,label", r"only one label \('good'\)"),
        ([*REVIEWS, ("no label here", "")], "text,label", r"line 14 of reviews.csv has no label"),
    ],
    ids=["missing-column", "too-few", "one-class", "empty-label"],
)
def test_bad_csv_uploads_say_what_is_wrong(tmp_path: Path, rows: list[tuple[str, Any]],
                                           header: str, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        upload(write_csv(tmp_path, rows, header))


@pytest.mark.parametrize("options", [{"vocab_size": 2}, {"sequence_length": 0},
                                     {"sequence_length": "200"}])
def test_bad_text_options_are_refused(tmp_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(DatasetError, match=r"option \w+ is .*; it must be an integer from"):
        upload(write_csv(tmp_path, REVIEWS), **options)


# --- GTSRB ----------------------------------------------------------------------------------

def ppm(image: np.ndarray) -> bytes:
    height, width, _ = image.shape
    return b"P6\n# written by a test\n%d %d\n255\n" % (width, height) + image.tobytes()


def png(image: np.ndarray) -> bytes:
    import tensorflow as tf

    return bytes(tf.io.encode_png(image).numpy())


def sign(color: int, height: int = 20, width: int = 24) -> np.ndarray:
    """A coloured square on a black 2-pixel border (the border lies outside the ROI)."""
    image = np.zeros((height, width, 3), np.uint8)
    image[2:-2, 2:-2, color] = 255
    return image


def write_official_gtsrb(root: Path, class_ids: tuple[int, ...] = (0, 14, 42)) -> Path:
    images = root / "GTSRB" / "Final_Training" / "Images"
    for class_id in class_ids:
        folder = images / f"{class_id:05d}"
        folder.mkdir(parents=True)
        lines = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
        for track in range(4):
            name = f"{track:05d}_00000.ppm"
            (folder / name).write_bytes(ppm(sign(class_id % 3)))
            lines.append(f"{name};24;20;2;2;21;17;{class_id}")
        (folder / f"GT-{class_id:05d}.csv").write_text("\n".join(lines) + "\n")
    return root


def test_gtsrb_official_layout_is_cropped_resized_and_named(tmp_path: Path) -> None:
    root = write_official_gtsrb(tmp_path / "gtsrb")
    data = load_dataset("gtsrb", options={"path": str(root)})
    assert_split_ok(data, kind=catalog.IMAGE, shape=(32, 32, 3), n_classes=3)
    assert data.class_names == ["Speed limit (20km/h)", "Stop",
                                "End of no passing by vehicles over 3.5 metric tons"]
    assert len(data.x_train) + len(data.x_val) == 12
    # Cropped to the ROI: the black border is gone, so every pixel is in the sign's colour.
    for image, label in zip(data.x_train, data.y_train):
        colour = (0, 14, 42)[label] % 3
        assert image[..., colour].min() > 0.99 and image.sum(axis=-1).max() < 1.01


def test_gtsrb_one_folder_per_class_with_png_and_ppm(tmp_path: Path) -> None:
    root = tmp_path / "signs"
    for class_id, color in ((3, 0), (7, 2)):
        folder = root / str(class_id)
        folder.mkdir(parents=True)
        for i in range(3):
            (folder / f"{i}.png").write_bytes(png(sign(color, 40, 36)))
            (folder / f"{i}.ppm").write_bytes(ppm(sign(color, 12, 10)))
        (folder / "notes.txt").write_text("not an image")
    data = load_dataset("gtsrb", options={"path": str(root)}, validation_split=0.5)
    assert_split_ok(data, kind=catalog.IMAGE, shape=(32, 32, 3), n_classes=2)
    assert data.class_names == ["Speed limit (60km/h)", "Speed limit (100km/h)"]
    assert len(data.x_train) + len(data.x_val) == 12
    images = np.concatenate([data.x_train, data.x_val])
    classes = np.concatenate([data.y_train, data.y_val])
    assert (images[classes == 0][..., 0].mean(axis=(1, 2)) > 0.3).all()  # class 3: red
    assert (images[classes == 1][..., 0] == 0).all()  # class 7: blue
    assert (images[classes == 1][..., 2].mean(axis=(1, 2)) > 0.3).all()


def test_gtsrb_is_read_from_the_keras_cache_when_no_path_is_given(keras_cache: Path) -> None:
    with pytest.raises(DatasetError) as caught:
        load_dataset("gtsrb")
    message = str(caught.value)
    assert str(keras_cache / "gtsrb") in message and "Final_Training/Images/00000" in message
    write_official_gtsrb(keras_cache / "gtsrb", class_ids=(1, 2))
    assert load_dataset("gtsrb").n_classes == 2


def test_gtsrb_folder_without_images_and_unreadable_images(tmp_path: Path) -> None:
    (tmp_path / "empty" / "00000").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"no GTSRB images found in .*empty; expected"):
        load_dataset("gtsrb", options={"path": str(tmp_path / "empty")})
    broken = tmp_path / "broken" / "0"
    broken.mkdir(parents=True)
    for i in range(3):
        (broken / f"{i}.ppm").write_bytes(b"P6\n10 10\n255\n" + b"\0" * 7)
        (broken.parent / "1").mkdir(exist_ok=True)
        (broken.parent / "1" / f"{i}.ppm").write_bytes(ppm(sign(0)))
    with pytest.raises(DatasetError, match=r"cannot read the image .*\.ppm: truncated"):
        load_dataset("gtsrb", options={"path": str(broken.parent)})


# --- Keras sets -----------------------------------------------------------------------------

def test_mnist_from_the_cache(trusted_cache: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(trusted_cache / "mnist.npz",
             x_train=rng.integers(0, 256, (30, 28, 28), dtype=np.uint8), y_train=labels(30, 10),
             x_test=np.zeros((5, 28, 28), np.uint8), y_test=labels(5, 10))
    assert datasets.missing_cache_files("mnist") == []
    data = load_dataset("mnist", seed=1)
    assert_split_ok(data, kind=catalog.IMAGE, shape=(28, 28, 1), n_classes=10)
    assert len(data.x_train) + len(data.x_val) == 30  # the test split is held back


def test_fashion_mnist_from_the_cache(keras_cache: Path) -> None:
    folder = keras_cache / "fashion-mnist"
    folder.mkdir()
    for prefix, n in (("train", 20), ("t10k", 4)):
        with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as handle:
            handle.write(b"\0" * 8 + bytes(labels(n, 10).astype(np.uint8)))
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as handle:
            handle.write(b"\0" * 16 + bytes(np.full((n, 28, 28), 51, np.uint8)))
    data = load_dataset("fashion_mnist")  # no hash to check for these files
    assert_split_ok(data, kind=catalog.IMAGE, shape=(28, 28, 1), n_classes=10)
    assert np.allclose(data.x_train, 0.2) and data.class_names[9] == "Ankle boot"


def cifar_batch(path: Path, n: int, label_key: str, offset: int = 0) -> None:
    data = np.zeros((n, 3, 32, 32), np.uint8)
    data[:, 2] = 255  # blue: checks the NCHW -> NHWC transpose
    with path.open("wb") as handle:
        pickle.dump({b"data": data.reshape(n, -1),
                     label_key.encode(): [(offset + i) % 10 for i in range(n)]}, handle)


def test_cifar10_from_an_extracted_folder(keras_cache: Path) -> None:
    folder = keras_cache / "cifar-10-batches-py-target" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i in range(1, 6):
        cifar_batch(folder / f"data_batch_{i}", 4, "labels", offset=i)
    assert datasets.missing_cache_files("cifar10") == []
    data = load_dataset("cifar10")
    assert_split_ok(data, kind=catalog.IMAGE, shape=(32, 32, 3), n_classes=10)
    assert len(data.x_train) + len(data.x_val) == 20
    assert (data.x_train[..., 2] == 1.0).all() and (data.x_train[..., :2] == 0.0).all()


def test_cifar100_from_the_cached_archive(trusted_cache: Path, tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    cifar_batch(folder / "train", 12, "fine_labels")
    cifar_batch(folder / "test", 3, "fine_labels")
    with tarfile.open(trusted_cache / "cifar-100-python-target_archive", "w:gz") as archive:
        archive.add(folder, arcname="cifar-100-python")
    data = load_dataset("cifar100")
    assert_split_ok(data, kind=catalog.IMAGE, shape=(32, 32, 3), n_classes=100)
    assert len(data.x_train) + len(data.x_val) == 12 and data.class_names[0] == "apple"


def ragged(rows: list[list[int]]) -> np.ndarray:
    array = np.empty(len(rows), dtype=object)
    array[:] = rows
    return array


def test_imdb_from_the_cache_is_padded_and_clipped_to_the_vocabulary(trusted_cache: Path) -> None:
    reviews = ragged([list(range(1, 5 + i)) for i in range(20)])  # lengths 4..23, ids up to 23
    np.savez(trusted_cache / "imdb.npz", x_train=reviews, y_train=labels(20, 2),
             x_test=reviews[:4], y_test=labels(4, 2))
    (trusted_cache / "imdb_word_index.json").write_text(json.dumps({"the": 1}))
    data = load_dataset("imdb", options={"vocab_size": 10, "sequence_length": 8})
    assert_split_ok(data, kind=catalog.TEXT, shape=(8,), n_classes=2)
    assert data.vocab_size == 10 and data.class_names == ["negative", "positive"]
    everything = np.concatenate([data.x_train, data.x_val])
    # Keras' ids: 0 pads, 1 starts a review, 2 is out of vocabulary, words from 3 (here < 10).
    assert (everything == 0).any() and (everything == 2).any() and everything.max() < 10
    assert sorted(map(list, everything[(everything == 0).any(axis=1)])) == [
        [0, 0, 0, 1, 4, 5, 6, 7], [0, 0, 1, 4, 5, 6, 7, 8], [0, 1, 4, 5, 6, 7, 8, 9]]


def test_reuters_from_the_cache(trusted_cache: Path) -> None:
    np.savez(trusted_cache / "reuters.npz", x=ragged([[5, 6, 7]] * 30), y=labels(30, 46))
    data = load_dataset("reuters", sample_fraction=0.5)
    assert_split_ok(data, kind=catalog.TEXT, shape=(catalog.DEFAULT_SEQUENCE_LENGTH,),
                    n_classes=46)
    assert data.vocab_size == catalog.DEFAULT_VOCAB_SIZE


def test_offline_set_missing_from_the_cache_fails_fast_naming_the_files(keras_cache: Path) -> None:
    started = time.monotonic()
    with pytest.raises(DatasetError) as caught:
        load_dataset("mnist")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert message == (f"mnist is not in the cache and the download host 127.0.0.1:9 cannot be "
                       f"reached; put mnist.npz in {keras_cache}")
    with pytest.raises(DatasetError, match=r"imdb.npz in .*keras-home"):
        load_dataset("imdb")
    assert datasets.missing_cache_files("fashion_mnist") == [
        f"fashion-mnist/{name}" for name in datasets._FASHION_FILES]


def test_unreachable_host_probe_is_bounded_by_its_timeout() -> None:
    started = time.monotonic()
    assert not datasets._reachable("10.255.255.1", 443, timeout=0.5)  # unroutable: no answer
    assert time.monotonic() - started < 2


def test_a_failing_keras_loader_becomes_a_dataset_error(trusted_cache: Path) -> None:
    (trusted_cache / "mnist.npz").write_bytes(b"truncated download")
    with pytest.raises(DatasetError, match=r"loading mnist failed \(.*\); check or replace "
                                           r"mnist.npz in the cache folder .*keras-home"):
        load_dataset("mnist")


def test_gtsrb_is_downloaded_into_the_cache_when_online(
    keras_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import functools
    import http.server
    import shutil
    import threading

    # The official archive's layout, zipped and served from loopback.
    source = write_official_gtsrb(tmp_path / "archive-source", class_ids=(5, 9))
    served = tmp_path / "served"
    served.mkdir()
    shutil.make_archive(str(served / "GTSRB_Final_Training_Images"), "zip", source)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(datasets, "_reachable", lambda host, port: True)
        monkeypatch.setattr(
            datasets, "GTSRB_URL", f"http://127.0.0.1:{server.server_port}/GTSRB_Final_Training_Images.zip"
        )
        data = load_dataset("gtsrb")
    finally:
        server.shutdown()
    assert data.n_classes == 2 and data.class_names[0] == "Speed limit (80km/h)"
    assert (keras_cache / "gtsrb" / "GTSRB" / "Final_Training" / "Images" / "00005").is_dir()
    assert not list(keras_cache.glob("*.partial"))
