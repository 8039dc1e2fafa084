"""GET /api/v1/datasets/: the whole catalog, and whether each set is available offline now
(bundled digits always; Keras sets once their cache files exist; GTSRB once its folder does)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from workers.engine.catalog import DATASETS

URL = "/api/v1/datasets/"


@pytest.fixture
def keras_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty KERAS_HOME. Once Keras is imported its own setting wins (see
    ``keras_cache_dir``), so the test hides it for its duration."""
    home = tmp_path / "keras"
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.delitem(sys.modules, "keras.src.backend.config", raising=False)
    return home / "datasets"


def _by_name(api_client: Any, user: Any) -> dict[str, Any]:
    response = api_client(user).get(URL)
    assert response.status_code == 200
    assert isinstance(response.json(), list)  # one list, not paginated
    return {entry["name"]: entry for entry in response.json()}


def test_every_catalog_set_is_listed_with_its_facts(api_client: Any, viewer: Any, keras_home: Path) -> None:
    entries = _by_name(api_client, viewer)
    assert list(entries) == list(DATASETS)
    digits = entries["digits"]
    assert digits == {
        "name": "digits",
        "label": DATASETS["digits"].title,
        "kind": "image",
        "classes": 10,
        "input_shape": [8, 8, 1],
        "bundled": True,
        "available": True,
        "missing_files": [],
        "how_to_get": digits["how_to_get"],
    }
    assert entries["imdb"]["kind"] == "text" and entries["imdb"]["classes"] == 2


def test_keras_set_is_unavailable_until_its_cache_file_exists(api_client: Any, outsider: Any, keras_home: Path) -> None:
    mnist = _by_name(api_client, outsider)["mnist"]
    assert (mnist["available"], mnist["bundled"], mnist["missing_files"]) == (False, False, ["mnist.npz"])
    assert "mnist.npz" in mnist["how_to_get"] and "$KERAS_HOME/datasets" in mnist["how_to_get"]
    assert str(keras_home) not in str(mnist)  # no server paths

    keras_home.mkdir(parents=True)
    (keras_home / "mnist.npz").write_bytes(b"cached")
    entries = _by_name(api_client, outsider)
    assert entries["mnist"]["available"] is True and entries["mnist"]["missing_files"] == []
    assert entries["fashion_mnist"]["available"] is False


def test_fashion_mnist_needs_all_four_files(api_client: Any, viewer: Any, keras_home: Path) -> None:
    folder = keras_home / "fashion-mnist"
    folder.mkdir(parents=True)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"x")
    entry = _by_name(api_client, viewer)["fashion_mnist"]
    assert entry["available"] is False and len(entry["missing_files"]) == 3


def test_gtsrb_is_available_once_its_folder_exists(api_client: Any, viewer: Any, keras_home: Path) -> None:
    assert _by_name(api_client, viewer)["gtsrb"]["available"] is False
    (keras_home / "gtsrb").mkdir(parents=True)
    assert _by_name(api_client, viewer)["gtsrb"]["available"] is True


def test_anonymous_is_refused(api_client: Any, db: None) -> None:
    assert api_client(None).get(URL).status_code in (401, 403)


def test_the_catalog_is_read_only(api_client: Any, member: Any) -> None:
    assert api_client(member).post(URL, {"name": "svhn"}).status_code == 405
