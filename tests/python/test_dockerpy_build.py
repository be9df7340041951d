"""docker-py against berthd: `images.build` (the legacy builder's /build stream) as a Python
program uses it — a context directory, a file object Dockerfile, build args, labels, target,
the cache, errors, and `prune_builds`."""
import io
import os
import tarfile
import tempfile

import docker
import pytest

from conftest import busybox_rootfs


@pytest.fixture(scope="module")
def busybox(client):
    client.api.import_image_from_data(busybox_rootfs(), repository="busybox", tag="latest")
    return client.images.get("busybox:latest")


def write(d, path, text):
    p = os.path.join(d, path)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w") as f:
        f.write(text)


def test_build_from_directory_runs(client, busybox):
    with tempfile.TemporaryDirectory() as d:
        write(d, "Dockerfile", (
            "FROM busybox AS build\n"
            "ARG NAME=world\n"
            "RUN echo \"hello $NAME\" > /greeting\n"
            "FROM busybox AS skipped\n"
            "RUN exit 1\n"
            "FROM busybox\n"
            "COPY --from=build /greeting /greeting\n"
            "COPY app/ /app/\n"
            "CMD [\"sh\", \"-c\", \"cat /greeting /app/x\"]\n"
        ))
        write(d, "app/x", "from app\n")
        img, logs = client.images.build(path=d, tag="pybuild:1", buildargs={"NAME": "py"},
                                        labels={"built.by": "docker-py"})
        text = "".join(l.get("stream", "") for l in logs)
        assert "Successfully built" in text
        assert img.labels["built.by"] == "docker-py"
        out = client.containers.run("pybuild:1", remove=True)
        assert out == b"hello py\nfrom app\n"

        # the same build again is all cache
        _, logs = client.images.build(path=d, tag="pybuild:1", buildargs={"NAME": "py"},
                                      labels={"built.by": "docker-py"})
        text = "".join(l.get("stream", "") for l in logs)
        assert text.count("Using cache") == 6, text  # ARG, RUN, 2 COPY, CMD, --label

        # --target
        img, _ = client.images.build(path=d, tag="pybuild:stage", target="build")
        out = client.containers.run("pybuild:stage", ["cat", "/greeting"], remove=True)
        assert out == b"hello world\n"


def test_build_from_fileobj_and_custom_context(client, busybox):
    df = io.BytesIO(b"FROM busybox\nENV A=1\nENTRYPOINT [\"echo\"]\nCMD [\"default\"]\n")
    img, _ = client.images.build(fileobj=df, tag="pybuild:fileobj", rm=True)
    assert img.attrs["Config"]["Entrypoint"] == ["echo"]
    assert img.attrs["Config"]["Cmd"] == ["default"]
    assert "A=1" in img.attrs["Config"]["Env"]

    # a custom (gzip) context tar with a Dockerfile under another name
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        data = b"FROM busybox\nCOPY f /f\n"
        ti = tarfile.TarInfo("build/Custom.dockerfile")
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
        ti = tarfile.TarInfo("f")
        ti.size = 3
        t.addfile(ti, io.BytesIO(b"abc"))
    buf.seek(0)
    img, _ = client.images.build(fileobj=buf, custom_context=True, encoding="gzip",
                                 dockerfile="build/Custom.dockerfile", tag="pybuild:custom")
    out = client.containers.run("pybuild:custom", ["cat", "/f"], remove=True)
    assert out == b"abc"


def test_build_errors(client, busybox):
    with pytest.raises(docker.errors.BuildError) as e:
        client.images.build(fileobj=io.BytesIO(b"FROM busybox\nRUN exit 7\n"), forcerm=True)
    assert "returned a non-zero code: 7" in str(e.value)
    with pytest.raises((docker.errors.APIError, docker.errors.BuildError)) as e:
        client.images.build(fileobj=io.BytesIO(b"FROM busybox\nNOPE x\n"))
    assert "line 2" in str(e.value)


def test_prune_builds(client, busybox):
    client.images.build(fileobj=io.BytesIO(b"FROM busybox\nRUN echo prune-me\n"))
    r = client.api.prune_builds()
    assert "SpaceReclaimed" in r
    assert len(r["CachesDeleted"] or []) >= 1
