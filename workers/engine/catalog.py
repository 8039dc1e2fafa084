"""The data sets the platform knows, by name. Pure data: no TensorFlow, no Django.

The web side validates study input against this table; the engine loads the sets.
"""
from __future__ import annotations

from dataclasses import dataclass

IMAGE = "image"
TEXT = "text"


# Text sets: options ``vocab_size`` (token ids run 0..vocab_size-1; 0 pads, unknown words get
# an out-of-vocabulary id) and ``sequence_length`` (every sample padded or truncated to it).
DEFAULT_VOCAB_SIZE = 10_000
DEFAULT_SEQUENCE_LENGTH = 200
# Uploads: the largest file accepted unless ``options["max_bytes"]`` says otherwise.
DEFAULT_MAX_UPLOAD_BYTES = 512 * 1024 * 1024
UPLOAD = "upload"  # the name of a user's own file (``options["path"]``), not in DATASETS

DIGIT_NAMES = tuple(str(digit) for digit in range(10))
FASHION_MNIST_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
CIFAR10_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CIFAR100_NAMES = tuple(
    """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
    butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch
    crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo
    keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse
    mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy
    porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper
    snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television
    tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split()
)  # the fine labels, in label order (alphabetical)
GTSRB_NAMES = (  # by official class id 0..42
    "Speed limit (20km/h)", "Speed limit (30km/h)", "Speed limit (50km/h)",
    "Speed limit (60km/h)", "Speed limit (70km/h)", "Speed limit (80km/h)",
    "End of speed limit (80km/h)", "Speed limit (100km/h)", "Speed limit (120km/h)",
    "No passing", "No passing for vehicles over 3.5 metric tons",
    "Right-of-way at the next intersection", "Priority road", "Yield", "Stop", "No vehicles",
    "Vehicles over 3.5 metric tons prohibited", "No entry", "General caution",
    "Dangerous curve to the left", "Dangerous curve to the right", "Double curve", "Bumpy road",
    "Slippery road", "Road narrows on the right", "Road work", "Traffic signals", "Pedestrians",
    "Children crossing", "Bicycles crossing", "Beware of ice/snow", "Wild animals crossing",
    "End of all speed and passing limits", "Turn right ahead", "Turn left ahead", "Ahead only",
    "Go straight or right", "Go straight or left", "Keep right", "Keep left",
    "Roundabout mandatory", "End of no passing",
    "End of no passing by vehicles over 3.5 metric tons",
)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    kind: str  # IMAGE or TEXT
    title: str
    n_classes: int
    bundled: bool  # ships with an installed package: available offline
    # Per sample, as the engine delivers it: (H, W, C) for images; (DEFAULT_SEQUENCE_LENGTH,)
    # for text, where the ``sequence_length`` option changes it.
    input_shape: tuple[int, ...] = ()
    class_names: tuple[str, ...] = ()  # label i is class_names[i]


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            "digits", IMAGE, "scikit-learn digits (8x8, bundled)", 10, True,
            (8, 8, 1), DIGIT_NAMES,
        ),
        DatasetInfo(
            "mnist", IMAGE, "MNIST handwritten digits", 10, False, (28, 28, 1), DIGIT_NAMES
        ),
        DatasetInfo(
            "fashion_mnist", IMAGE, "Fashion-MNIST", 10, False, (28, 28, 1), FASHION_MNIST_NAMES
        ),
        DatasetInfo("cifar10", IMAGE, "CIFAR-10", 10, False, (32, 32, 3), CIFAR10_NAMES),
        DatasetInfo("cifar100", IMAGE, "CIFAR-100", 100, False, (32, 32, 3), CIFAR100_NAMES),
        DatasetInfo(
            "gtsrb", IMAGE, "German Traffic Sign Recognition Benchmark", 43, False,
            (32, 32, 3), GTSRB_NAMES,
        ),
        DatasetInfo(
            "imdb", TEXT, "IMDB movie reviews (sentiment)", 2, False,
            (DEFAULT_SEQUENCE_LENGTH,), ("negative", "positive"),
        ),
        DatasetInfo(
            "reuters", TEXT, "Reuters newswire topics", 46, False,
            (DEFAULT_SEQUENCE_LENGTH,), tuple(f"topic {i}" for i in range(46)),
        ),
    )
}


def dataset_info(name: str) -> DatasetInfo:
    """The catalogue entry; ``KeyError`` names the known sets."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}") from None
