"""docker-py against berthd: the image API as a Python program uses it."""
import json

import docker
import pytest

from conftest import busybox_rootfs


def test_version_and_ping(client):
    assert client.ping()
    v = client.version()
    assert v["ApiVersion"] == "1.50"
    assert v["MinAPIVersion"] == "1.24"
    assert client.info()["Driver"] == "overlay2"


def test_hello_world_listed(client):
    tags = [t for i in client.images.list() for t in i.tags]
    assert "hello-world:latest" in tags


def test_import_tag_save_load_remove(client):
    # import through the low-level API (docker-py's images has no import helper)
    out = client.api.import_image_from_data(busybox_rootfs(), repository="pybox", tag="v1")
    assert "sha256:" in json.dumps(out)
    img = client.images.get("pybox:v1")
    assert img.tags == ["pybox:v1"]

    assert img.tag("pybox", "v2")
    assert set(client.images.get(img.id).tags) == {"pybox:v1", "pybox:v2"}

    data = b"".join(img.save(named=True))
    client.images.remove("pybox:v2")
    client.images.remove(img.id, force=True)
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("pybox:v1")

    loaded = client.images.load(data)
    assert [i.id for i in loaded] == [img.id]
    assert "pybox:v1" in client.images.get(img.id).tags

    hist = client.images.get("pybox:v1").history()
    assert hist and hist[0]["Id"] == img.id


def test_errors_map_to_exceptions(client):
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get("does-not-exist:1")
    with pytest.raises(docker.errors.APIError) as e:
        client.api.tag("hello-world", "Bad/Name")
    assert e.value.status_code == 400
    with pytest.raises(docker.errors.APIError) as e:
        client.images.load(b"not a tar archive" * 10)
    assert 400 <= e.value.status_code < 500 or "error" in str(e.value).lower()
    assert client.ping()
