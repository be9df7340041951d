"""docker-py volume APIs against berthd: volumes.create/list/get/remove/prune, and
containers.run with named volumes, binds, tmpfs and an image VOLUME."""
import os
import shutil
import tempfile

import docker
import pytest

from conftest import busybox_rootfs


@pytest.fixture(scope="module")
def image(client):
    client.api.import_image_from_data(busybox_rootfs(), repository="vbox", tag="latest",
                                      changes=["VOLUME /etc"])
    return "vbox:latest"


def test_create_list_get_remove(client):
    v = client.volumes.create("pyvol", labels={"team": "a"})
    assert v.name == "pyvol"
    assert v.attrs["Driver"] == "local"
    assert v.attrs["Labels"] == {"team": "a"}
    assert v.attrs["Mountpoint"].endswith("/volumes/pyvol/_data")
    assert "pyvol" in [x.name for x in client.volumes.list()]
    assert [x.name for x in client.volumes.list(filters={"label": "team=a"})] == ["pyvol"]
    assert client.volumes.get("pyvol").attrs["Scope"] == "local"
    v.remove()
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get("pyvol")


def test_run_with_volumes_and_rm(client, image):
    client.volumes.create("pydata")
    host = tempfile.mkdtemp(prefix="berth-py-bind-")
    try:
        out = client.containers.run(
            image, ["sh", "-c", "echo hi > /data/f; echo b > /h/g; grep -c ' /t ' /proc/mounts; cat /etc/passwd"],
            volumes={"pydata": {"bind": "/data", "mode": "rw"}, host: {"bind": "/h", "mode": "rw"}},
            tmpfs={"/t": "size=1m"}, name="pyw")
        assert out.decode().splitlines() == ["1", "root:x:0:0:root:/root:/bin/sh"]
        with open(os.path.join(host, "g")) as f:
            assert f.read() == "b\n"
        c = client.containers.get("pyw")
        mounts = {m["Destination"]: m for m in c.attrs["Mounts"]}
        assert mounts["/data"]["Name"] == "pydata"
        assert mounts["/h"]["Type"] == "bind" and mounts["/h"]["Source"] == host
        anon = mounts["/etc"]["Name"]
        # in use: 409
        with pytest.raises(docker.errors.APIError) as e:
            client.volumes.get("pydata").remove()
        assert e.value.status_code == 409
        assert "volume is in use" in str(e.value)
        c.remove(v=True)
        names = [v.name for v in client.volumes.list()]
        assert anon not in names and "pydata" in names
        out = client.containers.run(image, ["cat", "/data/f"], volumes=["pydata:/data:ro"], remove=True)
        assert out == b"hi\n"
    finally:
        shutil.rmtree(host, ignore_errors=True)


def test_prune(client):
    client.volumes.create("keepme")
    anon = client.volumes.create()
    res = client.volumes.prune()
    assert anon.name in (res["VolumesDeleted"] or [])
    assert "keepme" in [v.name for v in client.volumes.list()]
    res = client.volumes.prune(filters={"all": "true"})
    assert "keepme" in res["VolumesDeleted"]
