"""The data sets the platform knows, by name. Pure data: no TensorFlow, no Django.

The web side validates study input against this table; the engine loads the sets.
"""
from __future__ import annotations

from dataclasses import dataclass

IMAGE = "image"
TEXT = "text"


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    kind: str  # IMAGE or TEXT
    title: str
    n_classes: int
    bundled: bool  # ships with an installed package: available offline


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("digits", IMAGE, "scikit-learn digits (8x8, bundled)", 10, True),
        DatasetInfo("mnist", IMAGE, "MNIST handwritten digits", 10, False),
        DatasetInfo("fashion_mnist", IMAGE, "Fashion-MNIST", 10, False),
        DatasetInfo("cifar10", IMAGE, "CIFAR-10", 10, False),
        DatasetInfo("cifar100", IMAGE, "CIFAR-100", 100, False),
        DatasetInfo("gtsrb", IMAGE, "German Traffic Sign Recognition Benchmark", 43, False),
        DatasetInfo("imdb", TEXT, "IMDB movie reviews (sentiment)", 2, False),
        DatasetInfo("reuters", TEXT, "Reuters newswire topics", 46, False),
    )
}


def dataset_info(name: str) -> DatasetInfo:
    """The catalogue entry; ``KeyError`` names the known sets."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}") from None
