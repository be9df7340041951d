"""docker-py against berthd: push, pull and login with a local registry (`berth registry
serve` on a free loopback port; 127.0.0.1 is insecure by default, as with dockerd)."""
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
import warnings

import docker
import pytest

from conftest import BIN_DIR, busybox_rootfs

USER, PASSWORD = "pyuser", "pys3cret"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """`berth registry serve` in its own directory, optionally with htpasswd Basic auth."""

    def __init__(self, name, auth=False):
        self.dir = f"/tmp/berth-pytest/registry-{name}-{os.getpid()}"
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.host = f"127.0.0.1:{free_port()}"
        args = [os.path.join(BIN_DIR, "berth"), "registry", "serve",
                "--addr", self.host, "--root", os.path.join(self.dir, "storage")]
        if auth:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                import crypt  # bcrypt through libxcrypt: registries accept only bcrypt
                # cost 4: the registry checks the hash on every request
                hashed = crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
            htpasswd = os.path.join(self.dir, "htpasswd")
            with open(htpasswd, "w") as f:
                f.write(f"{USER}:{hashed}\n")
            args += ["--htpasswd", htpasswd]
        self.log = open(os.path.join(self.dir, "registry.log"), "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log, start_new_session=True)
        deadline = time.time() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
                break
            except urllib.error.HTTPError:
                break  # 401 with auth: it is up
            except Exception:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    raise RuntimeError("registry did not start")
                time.sleep(0.05)

    def manifest_digest(self, repo, tag):
        req = urllib.request.Request(
            f"http://{self.host}/v2/{repo}/manifests/{tag}", method="HEAD",
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        return urllib.request.urlopen(req, timeout=5).headers["Docker-Content-Digest"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def registry():
    r = Registry("open")
    yield r
    r.stop()


@pytest.fixture(scope="module")
def auth_registry():
    r = Registry("auth", auth=True)
    yield r
    r.stop()


@pytest.fixture(scope="module")
def pybox(client):
    out = client.api.import_image_from_data(busybox_rootfs(), repository="pyreg", tag="base")
    assert "sha256:" in json.dumps(out)
    return client.images.get("pyreg:base")


def test_push_then_pull_by_tag_and_digest(client, registry, pybox):
    repo = f"{registry.host}/py/box"
    assert pybox.tag(repo, "v1")
    lines = list(client.images.push(repo, tag="v1", stream=True, decode=True))
    assert not [l for l in lines if "error" in l], lines
    assert any(l.get("status") == "Pushed" for l in lines), lines
    aux = [l["aux"] for l in lines if "aux" in l]
    assert aux and aux[-1]["Tag"] == "v1"
    digest = aux[-1]["Digest"]
    # The registry serves the manifest under the digest push reported.
    assert registry.manifest_digest("py/box", "v1") == digest
    assert f"{repo}@{digest}" in client.images.get(f"{repo}:v1").attrs["RepoDigests"]

    # Pushing again: every layer is already there.
    lines = list(client.images.push(repo, tag="v1", stream=True, decode=True))
    assert any(l.get("status") == "Layer already exists" for l in lines), lines

    client.images.remove(f"{repo}:v1")
    client.images.remove(pybox.id, force=True)
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(pybox.id)

    img = client.images.pull(repo, tag="v1")
    assert img.id == pybox.id
    assert f"{repo}:v1" in img.tags
    assert f"{repo}@{digest}" in img.attrs["RepoDigests"]

    # The low-level stream is dockerd's: Pulling from / Pull complete / Digest / Status.
    client.images.remove(f"{repo}:v1", force=True)
    events = list(client.api.pull(repo, tag="v1", stream=True, decode=True))
    statuses = [e.get("status", "") for e in events]
    assert statuses[0] == "Pulling from py/box", statuses
    assert "Pull complete" in statuses, statuses
    assert f"Digest: {digest}" in statuses, statuses
    assert statuses[-1] == f"Status: Downloaded newer image for {repo}:v1", statuses

    # By digest: already there, and it runs.
    img = client.images.pull(f"{repo}@{digest}")
    assert img.id == pybox.id
    out = client.containers.run(f"{repo}:v1", ["echo", "pulled"], remove=True)
    assert out == b"pulled\n"


def test_pull_errors(client, registry):
    with pytest.raises(docker.errors.NotFound):
        client.images.pull(f"{registry.host}/py/nothing", tag="v1")
    with pytest.raises(docker.errors.APIError) as e:
        client.images.pull(f"127.0.0.1:{free_port()}/py/box", tag="v1")
    assert e.value.status_code == 500
    assert client.ping()


def test_login_then_push_and_pull_with_credentials(daemon, client, auth_registry, pybox):
    host = auth_registry.host
    with pytest.raises(docker.errors.APIError) as e:
        client.login(username=USER, password="wrong", registry=host, reauth=True)
    assert e.value.status_code == 401
    r = client.login(username=USER, password=PASSWORD, registry=host, reauth=True)
    assert r["Status"] == "Login Succeeded"

    repo = f"{host}/secret/box"
    assert pybox.tag(repo, "v1")
    # Without credentials the push is refused; docker-py's login kept them for the client.
    anon = docker.APIClient(base_url=f"unix://{daemon.sock}", version="auto")
    lines = list(anon.push(repo, tag="v1", stream=True, decode=True))
    assert any("error" in l for l in lines), lines
    lines = list(client.images.push(repo, tag="v1", stream=True, decode=True,
                                    auth_config={"username": USER, "password": PASSWORD}))
    assert not [l for l in lines if "error" in l], lines

    client.images.remove(f"{repo}:v1")
    with pytest.raises(docker.errors.APIError):
        anon.pull(repo, tag="v1")
    img = client.images.pull(repo, tag="v1",
                             auth_config={"username": USER, "password": PASSWORD})
    assert img.id == pybox.id
    anon.close()
