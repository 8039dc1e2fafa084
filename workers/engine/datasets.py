"""Data sets by name, as NumPy arrays ready for Keras. Pure ML: never imports Django.

``load_dataset(name, ...)`` is the one entry point. NumPy is the only import at module level;
scikit-learn, Keras and TensorFlow are imported by the loaders that need them, so the web side
can import this module (for ``DatasetError``, ``keras_cache_dir``) without paying for them.

What comes back, for every source:

* Images: float32 in [0, 1], NHWC. Text: int32 token ids, padded or truncated ("pre", as
  ``keras.utils.pad_sequences``) to ``sequence_length``; id 0 pads. Labels: int32, 0..n-1.
* Validation is always carved out of the source's training data: the samples are shuffled with
  ``np.random.default_rng(seed)``, the first ``validation_split`` of them (at least one) become
  the validation set, the rest the training set. Not stratified. The test splits of the Keras
  sets are never used: they stay a held-out set. ``sample_fraction`` then keeps the first
  fraction (at least one sample) of each part, so a smaller fraction is a subset of a larger
  one and the same seed always gives the same, identically ordered arrays.
* Sets that Keras downloads are read from ``keras_cache_dir()``. When a file is missing the
  download host is probed first (``PROBE_TIMEOUT_S``), because Keras' own download has no
  timeout: offline, loading fails within seconds with a message naming the files and folder.

Every failure the caller can fix is a ``DatasetError`` whose message says what was wrong and
what is allowed. No module state is written, so calls are thread-safe, except that two
processes downloading the same file at once race inside Keras (it does not lock its cache).
"""
from __future__ import annotations

import csv
import io
import logging
import math
import numbers
import os
import re
import shutil
import socket
import ssl
import sys
import threading
import time
import urllib.request
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

from workers.engine import catalog
from workers.engine.catalog import IMAGE, TEXT

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 3.0
GTSRB_IMAGE_SIZE = (32, 32)
GTSRB_LAYOUT = (
    "the official GTSRB training layout (Final_Training/Images/00000/*.ppm with GT-00000.csv "
    "in each class folder) or one folder per class id (<class_id>/*.ppm or *.png)"
)
IMAGE_SUFFIXES = (".ppm", ".pgm", ".png", ".jpg", ".jpeg")
UPLOAD_SUFFIXES = (".npz", ".csv")
MIN_UPLOAD_SAMPLES = 10
# Where each downloadable set comes from; tests point these at a closed local port.
DOWNLOAD_HOSTS: dict[str, tuple[str, int]] = {
    "google": ("storage.googleapis.com", 443),
    "toronto": ("www.cs.toronto.edu", 443),
    "erda": ("sid.erda.dk", 443),
}
# The official GTSRB training archive (GTSRB/Final_Training/Images/<class>/ inside).
GTSRB_URL = (
    "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/"
    "GTSRB_Final_Training_Images.zip"
)
DOWNLOAD_TIMEOUT_S = 60.0
_FASHION_FILES = ("train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz",
                  "t10k-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz")
# The exact names ``keras.datasets.<set>.load_data()`` looks for under the cache folder
# (keras/src/datasets/*.py; an archive is kept as "<fname>_archive" and re-extracted on load).
KERAS_CACHE_FILES: dict[str, tuple[tuple[str, ...], str]] = {
    "mnist": (("mnist.npz",), "google"),
    "fashion_mnist": (tuple(f"fashion-mnist/{f}" for f in _FASHION_FILES), "google"),
    "cifar10": (("cifar-10-batches-py-target_archive",), "toronto"),
    "cifar100": (("cifar-100-python-target_archive",), "toronto"),
    "imdb": (("imdb.npz",), "google"),
    "reuters": (("reuters.npz",), "google"),
}
# Already extracted CIFAR folders (Keras 3's extraction, then the older tf.keras one) are read
# directly: faster than Keras, which unpacks the whole archive again on every load.
_CIFAR_FOLDERS = {
    "cifar10": ("cifar-10-batches-py-target/cifar-10-batches-py", "cifar-10-batches-py"),
    "cifar100": ("cifar-100-python-target/cifar-100-python", "cifar-100-python"),
}
_WORD = re.compile(r"\w+")
_PNM_SEP = rb"(?:\s|#[^\n]*\n)+"
_PNM_HEADER = re.compile(rb"(P[56])" + (_PNM_SEP + rb"(\d+)") * 3 + rb"\s")

_T = TypeVar("_T")
Features = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class Dataset:
    """One loaded data set, split; arrays in shuffled order (see the module docstring)."""

    name: str
    kind: str  # catalog.IMAGE or catalog.TEXT
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    n_classes: int
    input_shape: tuple[int, ...]  # per sample: (H, W, C) for images, (sequence_length,) for text
    vocab_size: int | None  # text only: token ids are < vocab_size
    class_names: list[str]


class DatasetError(ValueError):
    """A data set that cannot be loaded; the message says why and what would work."""


@dataclass
class _Source:
    """A set read but not yet split: labels now, features on demand for the chosen indices."""

    kind: str
    labels: np.ndarray
    n_classes: int
    class_names: list[str]
    features: Features  # (train indices, validation indices) -> (x_train, x_val)
    vocab_size: int | None = None


def known_names() -> list[str]:
    return [*catalog.DATASETS, catalog.UPLOAD]


def load_dataset(name: str, *, seed: int = 0, sample_fraction: float = 1.0,
                 validation_split: float = 0.2, options: dict[str, Any] | None = None) -> Dataset:
    """Load ``name`` (a ``catalog.DATASETS`` key or ``"upload"``) and split it.

    ``options``: ``path`` (upload, gtsrb), ``vocab_size`` and ``sequence_length`` (text),
    ``max_bytes`` (upload). Deterministic for a given seed; raises ``DatasetError``.
    """
    loader = _LOADERS.get(name)
    if loader is None:
        raise DatasetError(f"unknown data set {name!r}; known: {', '.join(known_names())}")
    _check_fraction("sample_fraction", sample_fraction, upper=1.0)
    _check_fraction("validation_split", validation_split, upper=0.5)
    if options is not None and not isinstance(options, dict):
        raise DatasetError(f"options must be a dict, not {type(options).__name__}")
    options = dict(options or {})
    started = time.perf_counter()
    source = loader(name, options)
    read = time.perf_counter()
    train, val = split_indices(len(source.labels), seed=seed, validation_split=validation_split,
                               sample_fraction=sample_fraction)
    x_train, x_val = source.features(train, val)
    logger.info("data set %s: read in %.2f s, %d train and %d validation samples prepared in "
                "%.2f s", name, read - started, len(train), len(val), time.perf_counter() - read)
    return Dataset(
        name=name, kind=source.kind, x_train=x_train, y_train=source.labels[train],
        x_val=x_val, y_val=source.labels[val], n_classes=source.n_classes,
        input_shape=tuple(int(d) for d in x_train.shape[1:]), vocab_size=source.vocab_size,
        class_names=list(source.class_names),
    )


def split_indices(n: int, *, seed: int, validation_split: float,
                  sample_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation indices into ``n`` samples, as the module docstring says."""
    if n < 2:
        raise DatasetError(f"the data set has {n} sample(s); at least 2 are needed to split")
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, round(n * validation_split)))
    val, train = order[:n_val], order[n_val:]
    return _keep(train, sample_fraction), _keep(val, sample_fraction)


def keras_cache_dir() -> Path:
    """The folder Keras' ``get_file`` caches data sets in: ``$KERAS_HOME/datasets``, by default
    ``~/.keras/datasets``. Keras reads ``KERAS_HOME`` once, at import: once it is imported its
    value wins, so this folder is always the one the loaders use."""
    config = sys.modules.get("keras.src.backend.config")
    if config is not None:
        home = str(config.keras_home())
    elif "KERAS_HOME" in os.environ:
        home = os.environ["KERAS_HOME"]
    else:
        user = os.path.expanduser("~")
        home = os.path.join(user if os.access(user, os.W_OK) else "/tmp", ".keras")
    home = os.path.expanduser(home)
    if os.path.exists(home) and not os.access(home, os.W_OK):
        home = "/tmp/.keras"  # get_file's own fallback for a read-only home
    return Path(home) / "datasets"


def missing_cache_files(name: str) -> list[str]:
    """The files a Keras set still needs in ``keras_cache_dir()`` (empty: loads offline)."""
    files, _ = KERAS_CACHE_FILES[name]
    cache = keras_cache_dir()
    if name in _CIFAR_FOLDERS and _cifar_folder(name) is not None:
        return []
    return [f for f in files if not (cache / f).exists()]


# --- checks ---------------------------------------------------------------------------------

def _check_fraction(label: str, value: object, *, upper: float) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (ok and 0 < float(value) <= upper):  # type: ignore[arg-type]
        raise DatasetError(
            f"{label} is {value!r}; it must be a number with 0 < {label} <= {upper:g}"
        )


def _int_option(options: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DatasetError(f"option {key} is {value!r}; it must be an integer from {low} to {high}")
    return value


def _keep(indices: np.ndarray, fraction: float) -> np.ndarray:
    return indices[: max(1, round(len(indices) * fraction))]


def _per_split(convert: Callable[[np.ndarray], np.ndarray]) -> Features:
    """Features made the same way for both parts: ``convert(indices) -> x``."""
    return lambda train, val: (convert(train), convert(val))


# --- bundled and Keras sets -----------------------------------------------------------------

def _to_unit_float(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32) / np.float32(255.0)


def _image_source(name: str, images: np.ndarray, labels: np.ndarray) -> _Source:
    """uint8 images (N, H, W) or (N, H, W, C) from a catalogue set."""
    if images.ndim == 3:
        images = images[..., np.newaxis]
    info = catalog.DATASETS[name]
    return _Source(IMAGE, labels.reshape(-1).astype(np.int32), info.n_classes,
                   list(info.class_names), _per_split(lambda rows: _to_unit_float(images[rows])))


def _load_digits(name: str, options: dict[str, Any]) -> _Source:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images[..., np.newaxis] / 16.0).astype(np.float32)  # pixel values 0..16
    info = catalog.DATASETS[name]
    return _Source(IMAGE, digits.target.astype(np.int32), info.n_classes, list(info.class_names),
                   _per_split(lambda rows: images[rows]))


def _load_keras_images(name: str, options: dict[str, Any]) -> _Source:
    if name in _CIFAR_FOLDERS and (folder := _cifar_folder(name)) is not None:
        images = _guarded(name, lambda: _read_cifar_folder(name, folder), str(folder))
        return _image_source(name, *images)

    def load() -> tuple[np.ndarray, np.ndarray]:
        import keras

        module = {"mnist": keras.datasets.mnist, "fashion_mnist": keras.datasets.fashion_mnist,
                  "cifar10": keras.datasets.cifar10, "cifar100": keras.datasets.cifar100}[name]
        (x_train, y_train), _ = module.load_data()
        return x_train, y_train

    return _image_source(name, *_from_keras_cache(name, load))


def _load_keras_text(name: str, options: dict[str, Any]) -> _Source:
    vocab_size, length = _text_options(options)

    def load() -> tuple[np.ndarray, np.ndarray]:
        import keras

        module = keras.datasets.imdb if name == "imdb" else keras.datasets.reuters
        (x_train, y_train), _ = module.load_data(num_words=vocab_size)
        return x_train, y_train

    sequences, labels = _from_keras_cache(name, load)
    info = catalog.DATASETS[name]
    return _Source(
        TEXT, np.asarray(labels).reshape(-1).astype(np.int32), info.n_classes,
        list(info.class_names),
        _per_split(lambda rows: _pad(list(sequences[rows]), length)),
        vocab_size=vocab_size,
    )


def _from_keras_cache(name: str, load: Callable[[], _T]) -> _T:
    """Run a Keras loader, but fail fast instead of hanging on a download that cannot work."""
    missing = missing_cache_files(name)
    if missing:
        host, port = DOWNLOAD_HOSTS[KERAS_CACHE_FILES[name][1]]
        if not _reachable(host, port):
            files = ", ".join(KERAS_CACHE_FILES[name][0])
            raise DatasetError(
                f"{name} is not in the cache and the download host {host}:{port} cannot be "
                f"reached; put {files} in {keras_cache_dir()}"
            )
        logger.info("data set %s: downloading %s from %s", name, ", ".join(missing), host)
    return _guarded(name, load)


def _guarded(name: str, load: Callable[[], _T], source: str | None = None) -> _T:
    try:
        return load()
    except DatasetError:
        raise
    except Exception as error:  # a failed download, a hash mismatch, a damaged file
        files = source or ", ".join(KERAS_CACHE_FILES[name][0])
        raise DatasetError(
            f"loading {name} failed ({type(error).__name__}: {error}); check or replace "
            f"{files} in the cache folder {keras_cache_dir()}"
        ) from error


def _reachable(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Does ``host`` complete a TLS handshake within ``timeout``, name lookup included?

    A bare TCP connect is not enough: sandboxes and firewalls often accept every connection
    and reset it at the first byte. The probe runs in a thread because ``getaddrinfo`` has
    no timeout of its own."""
    connected: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout) as raw:
                with ssl.create_default_context().wrap_socket(raw, server_hostname=host):
                    connected.append(True)
        except (OSError, ValueError):  # ssl.SSLError is an OSError
            pass

    probe = threading.Thread(target=connect, name="dataset-host-probe", daemon=True)
    probe.start()
    probe.join(timeout)
    return bool(connected)


def _cifar_folder(name: str) -> Path | None:
    cache = keras_cache_dir()
    first = "data_batch_1" if name == "cifar10" else "train"
    return next((cache / f for f in _CIFAR_FOLDERS[name] if (cache / f / first).is_file()), None)


def _read_cifar_folder(name: str, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    from keras.src.datasets.cifar import load_batch  # a restricted unpickler: arrays only

    if name == "cifar10":
        batches = [load_batch(str(folder / f"data_batch_{i}")) for i in range(1, 6)]
    else:
        batches = [load_batch(str(folder / "train"), label_key="fine_labels")]
    images = np.concatenate([data for data, _ in batches]).transpose(0, 2, 3, 1)  # NCHW -> NHWC
    return images, np.concatenate([np.asarray(labels) for _, labels in batches])


# --- text -----------------------------------------------------------------------------------

def _text_options(options: dict[str, Any]) -> tuple[int, int]:
    return (_int_option(options, "vocab_size", catalog.DEFAULT_VOCAB_SIZE, 3, 1_000_000),
            _int_option(options, "sequence_length", catalog.DEFAULT_SEQUENCE_LENGTH, 1, 100_000))


def _pad(sequences: list[Any], length: int) -> np.ndarray:
    from keras.utils import pad_sequences

    return np.asarray(pad_sequences(sequences, maxlen=length, dtype="int32"), dtype=np.int32)


def _tokenize(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _text_features(texts: list[str], vocab_size: int, length: int) -> Features:
    """Token ids from a vocabulary of the training rows' most frequent words (never the
    validation rows': they must not leak in). 0 pads, 1 is any other word."""
    tokens = [_tokenize(text) for text in texts]

    def features(train: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        counts = Counter(word for i in train for word in tokens[i])
        index = {word: i + 2 for i, (word, _) in enumerate(counts.most_common(vocab_size - 2))}

        def encode(rows: np.ndarray) -> np.ndarray:
            return _pad([[index.get(word, 1) for word in tokens[i]] for i in rows], length)

        return encode(train), encode(val)

    return features


# --- GTSRB ----------------------------------------------------------------------------------

def _load_gtsrb(name: str, options: dict[str, Any]) -> _Source:
    root = Path(options["path"]) if options.get("path") else keras_cache_dir() / "gtsrb"
    if not options.get("path") and not root.is_dir():
        _download_gtsrb(root)
    samples = _gtsrb_samples(root)
    class_ids = sorted({class_id for _, class_id, _ in samples})
    label_of = {class_id: i for i, class_id in enumerate(class_ids)}
    names = [catalog.GTSRB_NAMES[c] if c < len(catalog.GTSRB_NAMES) else str(c) for c in class_ids]
    labels = np.array([label_of[class_id] for _, class_id, _ in samples], dtype=np.int32)

    def read(rows: np.ndarray) -> np.ndarray:
        return np.stack([_gtsrb_image(samples[i][0], samples[i][2]) for i in rows])

    return _Source(IMAGE, labels, len(class_ids), names, _per_split(read))


def _download_gtsrb(root: Path) -> None:
    """Fetch and unpack the official archive into ``root`` (the default cache folder), or
    fail at once, naming the folder, when the host cannot be reached."""
    host, port = DOWNLOAD_HOSTS["erda"]
    if not _reachable(host, port):
        raise DatasetError(
            f"gtsrb is not in {root} and the download host {host}:{port} cannot be reached; "
            f"put {GTSRB_LAYOUT} there, or give the folder's path"
        )
    archive = root.with_name("GTSRB_Final_Training_Images.zip.partial")
    archive.parent.mkdir(parents=True, exist_ok=True)
    logger.info("data set gtsrb: downloading %s", GTSRB_URL)
    try:
        with urllib.request.urlopen(GTSRB_URL, timeout=DOWNLOAD_TIMEOUT_S) as response, archive.open("wb") as out:
            shutil.copyfileobj(response, out)
        unpacking = root.with_name("gtsrb.partial")
        shutil.rmtree(unpacking, ignore_errors=True)
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(unpacking)
        unpacking.rename(root)  # only a complete folder ever appears under the final name
    except (OSError, zipfile.BadZipFile) as error:
        raise DatasetError(
            f"downloading gtsrb from {GTSRB_URL} failed ({error}); put {GTSRB_LAYOUT} in {root}"
        ) from error
    finally:
        archive.unlink(missing_ok=True)


def _gtsrb_samples(root: Path) -> list[tuple[Path, int, tuple[int, int, int, int] | None]]:
    """(image file, class id, region of interest or None) for every image under ``root``."""
    if not root.is_dir():
        raise DatasetError(f"the GTSRB folder {root} does not exist; put {GTSRB_LAYOUT} there")
    candidates = [root / "Final_Training" / "Images", root / "GTSRB" / "Final_Training" / "Images",
                  root / "Images", root]
    samples: list[tuple[Path, int, tuple[int, int, int, int] | None]] = []
    for images in (c for c in candidates if c.is_dir()):
        for folder in sorted(p for p in images.iterdir() if p.is_dir() and p.name.isdigit()):
            samples += _gtsrb_class_folder(folder, int(folder.name))
        if samples:
            return samples
    raise DatasetError(f"no GTSRB images found in {root}; expected {GTSRB_LAYOUT}")


def _gtsrb_class_folder(folder: Path, class_id: int
                        ) -> list[tuple[Path, int, tuple[int, int, int, int] | None]]:
    annotations = sorted(folder.glob("GT-*.csv"))
    if not annotations:
        return [(path, class_id, None) for path in sorted(folder.iterdir())
                if path.suffix.lower() in IMAGE_SUFFIXES]
    rows: list[tuple[Path, int, tuple[int, int, int, int] | None]] = []
    try:
        with annotations[0].open(newline="", encoding="utf-8-sig") as handle:
            for row in csv.DictReader(handle, delimiter=";"):
                roi = (int(row["Roi.X1"]), int(row["Roi.Y1"]), int(row["Roi.X2"]),
                       int(row["Roi.Y2"]))
                rows.append((folder / row["Filename"], int(row["ClassId"]), roi))
    except (KeyError, ValueError, TypeError, csv.Error) as error:
        raise DatasetError(
            f"{annotations[0]} is not a GTSRB annotation file (Filename;Width;Height;Roi.X1;"
            f"Roi.Y1;Roi.X2;Roi.Y2;ClassId): {type(error).__name__}: {error}"
        ) from None
    return rows


def _gtsrb_image(path: Path, roi: tuple[int, int, int, int] | None) -> np.ndarray:
    """One sign, cropped to its region of interest (corners inclusive), resized, in [0, 1]."""
    try:
        image = _read_image(path)
    except (OSError, ValueError) as error:
        raise DatasetError(f"cannot read the image {path}: {error}") from None
    if roi is not None:
        x1, y1, x2, y2 = roi
        cropped = image[max(0, y1): y2 + 1, max(0, x1): x2 + 1]
        image = cropped if cropped.shape[0] > 1 and cropped.shape[1] > 1 else image
    return _resize(image, GTSRB_IMAGE_SIZE)


def _read_image(path: Path) -> np.ndarray:
    """uint8 (H, W, 3). PPM/PGM by hand (TensorFlow cannot), the rest by PIL or TensorFlow."""
    data = path.read_bytes()
    if path.suffix.lower() in (".ppm", ".pgm"):
        return _decode_pnm(data)
    try:
        from PIL import Image
    except ImportError:
        import tensorflow as tf

        try:
            return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
        except tf.errors.InvalidArgumentError as error:
            raise ValueError(error.message) from None
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def _decode_pnm(data: bytes) -> np.ndarray:
    header = _PNM_HEADER.match(data)
    if header is None:
        raise ValueError("not a binary PPM (P6) or PGM (P5) file")
    magic, width, height, maxval = header.group(1), *(int(header.group(i)) for i in (2, 3, 4))
    channels = 3 if magic == b"P6" else 1
    dtype = np.dtype(np.uint8) if maxval < 256 else np.dtype(">u2")
    count = width * height * channels
    pixels = np.frombuffer(data, dtype=dtype, count=count, offset=header.end()) if (
        len(data) - header.end() >= count * dtype.itemsize) else None
    if pixels is None or maxval < 1:
        raise ValueError(f"truncated or invalid {width}x{height} PNM data")
    image = pixels.reshape(height, width, channels)
    if maxval != 255:
        image = np.round(image.astype(np.float32) * (255.0 / maxval)).astype(np.uint8)
    return np.repeat(image, 3, axis=2) if channels == 1 else image


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W, 3) to float32 (size..., 3) in [0, 1], bilinear with antialiasing."""
    try:
        from PIL import Image
    except ImportError:
        import tensorflow as tf

        resized = tf.image.resize(image, size, antialias=True).numpy()
    else:
        resized = np.asarray(Image.fromarray(image).resize(size[::-1], Image.BILINEAR),
                             dtype=np.float32)
    return np.clip(resized, 0.0, 255.0).astype(np.float32) / np.float32(255.0)


# --- uploads --------------------------------------------------------------------------------

def _load_upload(name: str, options: dict[str, Any]) -> _Source:
    """``options["path"]``: a .npz of images (``x``, ``y``, optional ``class_names``) or a .csv
    of texts (header ``text,label``). Everything is checked before anything is trained."""
    path_option = options.get("path")
    if not path_option:
        raise DatasetError("an upload needs options['path']: a .npz (images: arrays x, y) or a "
                           ".csv (text: columns text,label)")
    path = Path(path_option)
    if path.suffix.lower() not in UPLOAD_SUFFIXES:
        raise DatasetError(f"{path.name} has the extension {path.suffix or '(none)'!r}; allowed: "
                           ".npz (images: arrays x, y) or .csv (text: columns text,label)")
    if not path.is_file():
        raise DatasetError(f"the uploaded file {path} does not exist")
    max_bytes = _int_option(options, "max_bytes", catalog.DEFAULT_MAX_UPLOAD_BYTES, 1, 2**62)
    size = path.stat().st_size
    if size > max_bytes:
        raise DatasetError(f"{path.name} is {_size(size)}; the limit is {_size(max_bytes)}")
    if path.suffix.lower() == ".npz":
        return _npz_source(path, max_bytes)
    return _csv_source(path, options)


def _size(n: int) -> str:
    exponent = min(int(math.log(n, 1024)), 3) if n > 0 else 0
    return f"{n / 1024 ** exponent:.1f} {('bytes', 'KiB', 'MiB', 'GiB')[exponent]}"


def _npz_source(path: Path, max_bytes: int) -> _Source:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DatasetError(f"{path.name} is not a readable .npz file: {error}") from None
    with archive:
        # A small .npz can inflate enormously; the limit applies to the arrays too.
        unpacked = sum(member.file_size for member in archive.zip.infolist())
        if unpacked > max_bytes:
            raise DatasetError(f"{path.name} unpacks to {_size(unpacked)}; the limit is "
                               f"{_size(max_bytes)}")
        missing = [key for key in ("x", "y") if key not in archive.files]
        if missing:
            raise DatasetError(f"{path.name} has no array {' or '.join(missing)}; an image upload "
                               f"needs x (images) and y (labels); found: {archive.files}")
        x, y = _npz_array(archive, "x"), _npz_array(archive, "y")
        names = _npz_array(archive, "class_names") if "class_names" in archive.files else None
    images = _checked_images(x)
    labels = _checked_labels(y, len(images))
    n_classes = int(labels.max()) + 1
    if names is None:
        class_names = [str(i) for i in range(n_classes)]
    elif names.shape != (n_classes,):
        raise DatasetError(f"class_names has shape {names.shape}; expected ({n_classes},), one "
                           "name per label")
    else:
        class_names = [str(n) for n in names]
    if images.dtype == np.uint8:
        return _Source(IMAGE, labels, n_classes, class_names,
                       _per_split(lambda rows: _to_unit_float(images[rows])))
    return _Source(IMAGE, labels, n_classes, class_names,
                   _per_split(lambda rows: images[rows].astype(np.float32)))


def _npz_array(archive: Any, key: str) -> np.ndarray:
    try:
        return np.asarray(archive[key])
    except ValueError:  # an object array: it would need pickle, which is never allowed
        raise DatasetError(f"{key} is an object array; save plain numeric arrays "
                           "(np.savez(path, x=..., y=...))") from None


def _checked_images(x: np.ndarray) -> np.ndarray:
    """(N, H, W, C) uint8 0-255 or float 0-1, at least MIN_UPLOAD_SAMPLES of them."""
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if x.ndim != 4 or x.shape[3] not in (1, 3, 4) or 0 in x.shape[1:]:
        raise DatasetError(f"x has shape {x.shape}; expected (N, H, W) or (N, H, W, C) with C in "
                           "1, 3, 4")
    if len(x) < MIN_UPLOAD_SAMPLES:
        raise DatasetError(f"x has {len(x)} samples; at least {MIN_UPLOAD_SAMPLES} are needed")
    if np.issubdtype(x.dtype, np.floating):
        low, high = float(np.min(x)), float(np.max(x))
        if not (0.0 <= low and high <= 1.0):  # also false for NaN
            raise DatasetError(f"x holds floats from {low:g} to {high:g}; float images must lie "
                               "in [0, 1] (or send uint8 0-255)")
    elif x.dtype != np.uint8:
        raise DatasetError(f"x has dtype {x.dtype}; expected uint8 (0-255) or float (0-1)")
    return x


def _checked_labels(y: np.ndarray, n: int) -> np.ndarray:
    """int32 labels 0..K-1, one per sample, every class present, K >= 2."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.reshape(-1)
    if y.ndim != 1:
        raise DatasetError(f"y has shape {y.shape}; expected (N,), one integer label per sample")
    if len(y) != n:
        raise DatasetError(f"x has {n} samples but y has {len(y)} labels; they must match")
    floats = np.issubdtype(y.dtype, np.floating)
    whole = floats and bool(np.all(np.isfinite(y) & (y == np.round(y))))
    if not (np.issubdtype(y.dtype, np.integer) or whole):
        raise DatasetError(f"y has dtype {y.dtype}; labels must be integers 0..K-1")
    if y.min() < 0:
        raise DatasetError(f"y has the label {y.min():g}; labels must be integers 0..K-1")
    labels = y.astype(np.int64)
    present = np.unique(labels)
    if len(present) < 2:
        raise DatasetError(f"y has only one class ({present[0]}); at least 2 are needed")
    absent = sorted(set(range(int(present[-1]) + 1)) - set(present.tolist()))
    if absent:
        shown = ", ".join(map(str, absent[:10])) + (", ..." if len(absent) > 10 else "")
        raise DatasetError(f"y uses labels up to {present[-1]} but never {shown}; labels must be "
                           "0..K-1 with every class present")
    return labels.astype(np.int32)


def _csv_source(path: Path, options: dict[str, Any]) -> _Source:
    vocab_size, length = _text_options(options)
    texts, raw_labels = _read_text_csv(path)
    if len(texts) < MIN_UPLOAD_SAMPLES:
        raise DatasetError(f"{path.name} has {len(texts)} rows; at least {MIN_UPLOAD_SAMPLES} "
                           "are needed")
    if all(re.fullmatch(r"-?\d+", label) for label in raw_labels):
        class_names = [str(v) for v in sorted({int(label) for label in raw_labels})]
        raw_labels = [str(int(label)) for label in raw_labels]  # "01" and "1" are one class
    else:
        class_names = sorted(set(raw_labels))
    if len(class_names) < 2:
        raise DatasetError(f"{path.name} has only one label ({class_names[0]!r}); at least 2 "
                           "classes are needed")
    index = {label: i for i, label in enumerate(class_names)}
    labels = np.array([index[label] for label in raw_labels], dtype=np.int32)
    return _Source(TEXT, labels, len(class_names), class_names,
                   _text_features(texts, vocab_size, length), vocab_size=vocab_size)


def _read_text_csv(path: Path) -> tuple[list[str], list[str]]:
    try:
        content = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path.name} is not UTF-8 text: {error}") from None
    reader = csv.DictReader(io.StringIO(content, newline=""))
    columns = [c.strip().lower() for c in reader.fieldnames or []]
    if "text" not in columns or "label" not in columns:
        raise DatasetError(f"{path.name} has the columns {columns}; a text upload needs a header "
                           "row with the columns text,label")
    reader.fieldnames = columns
    texts, labels = [], []
    try:
        for row in reader:
            label = (row.get("label") or "").strip()
            if not label:
                raise DatasetError(f"line {reader.line_num} of {path.name} has no label")
            texts.append(row.get("text") or "")
            labels.append(label)
    except csv.Error as error:
        raise DatasetError(
            f"line {reader.line_num} of {path.name} is not valid CSV: {error}"
        ) from None
    return texts, labels


_LOADERS: dict[str, Callable[[str, dict[str, Any]], _Source]] = {
    "digits": _load_digits,
    "mnist": _load_keras_images,
    "fashion_mnist": _load_keras_images,
    "cifar10": _load_keras_images,
    "cifar100": _load_keras_images,
    "gtsrb": _load_gtsrb,
    "imdb": _load_keras_text,
    "reuters": _load_keras_text,
    catalog.UPLOAD: _load_upload,
}
