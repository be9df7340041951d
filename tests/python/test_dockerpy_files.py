"""docker-py against berthd: a container's files (put_archive/get_archive, export, diff,
commit) as a Python program uses them."""
import io
import tarfile

import docker
import pytest

from conftest import busybox_rootfs


@pytest.fixture(scope="module")
def image(client):
    client.api.import_image_from_data(busybox_rootfs(), repository="pyfiles", tag="v1")
    yield "pyfiles:v1"


def tar_of(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, (data, mode, mtime) in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.mtime = mtime
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_put_get_archive(client, image):
    c = client.containers.run(image, ["sleep", "300"], detach=True)
    try:
        assert c.put_archive("/tmp", tar_of({"hello.txt": (b"hi there\n", 0o600, 1234567890)}))
        bits, stat = c.get_archive("/tmp/hello.txt")
        assert stat["name"] == "hello.txt"
        assert stat["size"] == 9
        assert stat["mode"] & 0o777 == 0o600
        with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as t:
            m = t.getmember("hello.txt")
            assert (m.mode, m.mtime) == (0o600, 1234567890)
            assert t.extractfile(m).read() == b"hi there\n"
        # a directory comes back under its own name
        bits, stat = c.get_archive("/tmp")
        assert stat["mode"] & (1 << 31)
        with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as t:
            assert "tmp/hello.txt" in t.getnames()
        with pytest.raises(docker.errors.NotFound):
            c.get_archive("/does/not/exist")
        with pytest.raises(docker.errors.APIError) as e:
            c.put_archive("/tmp/hello.txt", tar_of({"x": (b"", 0o644, 0)}))
        assert e.value.status_code == 400
    finally:
        c.remove(force=True)


def test_diff_commit_export(client, image):
    c = client.containers.run(image, ["sh", "-c", "echo v > /made && rm /etc/passwd"], detach=True)
    try:
        assert c.wait()["StatusCode"] == 0
        changes = {(d["Path"], d["Kind"]) for d in c.diff()}
        assert ("/made", 1) in changes
        assert ("/etc/passwd", 2) in changes
        assert ("/etc", 0) in changes
        img = c.commit(repository="pycommit", tag="v1", message="py", changes=["ENV FROM_PY=1"])
        assert "pycommit:v1" in img.tags
        out = client.containers.run("pycommit:v1", ["sh", "-c", "cat /made; echo $FROM_PY"], remove=True)
        assert out == b"v\n1\n"
        data = b"".join(c.export())
        with tarfile.open(fileobj=io.BytesIO(data)) as t:
            names = t.getnames()
        assert "made" in names and "bin/busybox" in names
        assert "etc/passwd" not in names
    finally:
        c.remove(force=True)
