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


def test_secret_mount_stays_out_of_layers_and_history(client, busybox):
    import base64
    import json
    secret = b"s3cr3t-value"
    hdr = base64.b64encode(json.dumps({"tok": base64.b64encode(secret).decode()}).encode())
    df = (b"FROM busybox\n"
          b"RUN --mount=type=secret,id=tok grep -q 3cr3t-val /run/secrets/tok && echo secret-ok\n"
          b"RUN --mount=type=secret,id=tok,target=/etc/tok,mode=0440 stat -c '%a' /etc/tok\n"
          b"RUN --mount=type=secret,id=missing,required=false true\n")
    client.api.headers["X-Berth-Build-Secrets"] = hdr.decode()
    try:
        img, logs = client.images.build(fileobj=io.BytesIO(df), tag="pybuild:secret")
    finally:
        del client.api.headers["X-Berth-Build-Secrets"]
    text = "".join(l.get("stream", "") for l in logs)
    assert "secret-ok" in text and "440" in text, text
    for h in img.history():
        assert b"s3cr3t" not in json.dumps(h).encode()
    # nothing of the secret (content or mount point) in any layer
    raw = b"".join(img.save())
    with tarfile.open(fileobj=io.BytesIO(raw)) as outer:
        for m in outer.getmembers():
            if not m.isfile():
                continue
            data = outer.extractfile(m).read()
            assert secret not in data
            if m.name.endswith(".tar") or m.name.startswith("blobs/"):
                try:
                    with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                        names = layer.getnames()
                except tarfile.TarError:
                    continue
                assert not any(n.endswith("secrets/tok") or n.endswith("etc/tok") for n in names), names

    # a required secret that was not sent fails the step
    with pytest.raises(docker.errors.BuildError) as e:
        client.images.build(fileobj=io.BytesIO(b"FROM busybox\nRUN --mount=type=secret,id=nope,required=true true\n"))
    assert "nope" in str(e.value)


def test_cache_mount_persists_between_builds(client, busybox):
    df = b"FROM busybox\nARG N\nRUN --mount=type=cache,target=/var/cache/x echo $N >> /var/cache/x/log && cat /var/cache/x/log | wc -l\n"
    _, logs1 = client.images.build(fileobj=io.BytesIO(df), buildargs={"N": "1"})
    _, logs2 = client.images.build(fileobj=io.BytesIO(df), buildargs={"N": "2"})
    t2 = "".join(l.get("stream", "") for l in logs2)
    assert "\n2\n" in t2, t2
