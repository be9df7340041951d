"""docker-py against berthd: the container API as a Python program uses it (run, create,
start, stop, logs, exec_run, attach, wait, stats, top, kill, pause, unpause, rename, update)."""
import threading
import time

import docker
import pytest

from conftest import busybox_rootfs


@pytest.fixture(scope="module")
def busybox(client):
    client.api.import_image_from_data(busybox_rootfs(), repository="busybox", tag="latest")
    return "busybox:latest"


@pytest.fixture
def cleanup(client):
    """Containers a test made are removed even when it fails."""
    made = []
    yield made
    for c in made:
        try:
            c.remove(force=True)
        except docker.errors.NotFound:
            pass


def wait_status(c, want, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        c.reload()
        if c.status == want:
            return
        time.sleep(0.05)
    assert c.status == want


def test_run_output_and_exit_status(client, busybox):
    assert client.containers.run(busybox, "echo hi", remove=True) == b"hi\n"
    assert client.containers.run(busybox, ["sh", "-c", "echo err >&2"], stdout=False,
                                 stderr=True, remove=True) == b"err\n"
    with pytest.raises(docker.errors.ContainerError) as e:
        client.containers.run(busybox, ["sh", "-c", "exit 3"], remove=True)
    assert e.value.exit_status == 3
    with pytest.raises(docker.errors.APIError) as e:
        client.containers.run(busybox, "nosuch-command", remove=True)
    assert "executable file not found" in str(e.value)
    # as with Docker, remove=True does not cover a container that never started
    left = client.containers.list(all=True, filters={"ancestor": busybox})
    assert [(c.status, c.attrs["State"]["ExitCode"]) for c in left] == [("created", 127)]
    left[0].remove()


def test_create_start_wait_logs(client, busybox, cleanup):
    c = client.containers.create(busybox, ["sh", "-c", "echo out; echo err >&2; exit 3"],
                                 name="py-cslw", environment={"A": "1"}, labels={"k": "v"})
    cleanup.append(c)
    assert c.status == "created"
    assert c.name == "py-cslw"
    assert c.labels == {"k": "v"}
    assert "A=1" in c.attrs["Config"]["Env"]
    c.start()
    assert c.wait(timeout=10)["StatusCode"] == 3
    c.reload()
    assert c.status == "exited"
    assert c.attrs["State"]["ExitCode"] == 3
    assert c.logs(stdout=True, stderr=False) == b"out\n"
    assert c.logs(stdout=False, stderr=True) == b"err\n"
    assert set(c.logs().splitlines()) == {b"out", b"err"}
    assert client.containers.get("py-cslw").id == c.id
    assert [x.id for x in client.containers.list(all=True, filters={"name": "py-cslw"})] == [c.id]


def test_logs_stream_follows(client, busybox, cleanup):
    c = client.containers.run(busybox, ["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.2; done"],
                              detach=True)
    cleanup.append(c)
    lines = b"".join(c.logs(stream=True, follow=True)).splitlines()
    assert lines == [b"line1", b"line2", b"line3"]
    # timestamps and tail
    tail = c.logs(tail=1, timestamps=True)
    assert tail.endswith(b" line3\n") and tail.count(b"\n") == 1


def test_exec_run(client, busybox, cleanup):
    c = client.containers.run(busybox, ["sleep", "1000"], detach=True)
    cleanup.append(c)
    r = c.exec_run("echo hi")
    assert (r.exit_code, r.output) == (0, b"hi\n")
    assert c.exec_run(["sh", "-c", "exit 4"]).exit_code == 4
    r = c.exec_run(["sh", "-c", "pwd; echo $X; id -u"], workdir="/tmp", environment={"X": "y"},
                   user="65534:65534")
    assert r.output == b"/tmp\ny\n65534\n"
    r = c.exec_run(["sh", "-c", "echo o; echo e >&2"], demux=True)
    assert r.output == (b"o\n", b"e\n")
    r = c.exec_run(["sh", "-c", "for i in 1 2; do echo s$i; sleep 0.1; done"], stream=True)
    assert b"".join(r.output) == b"s1\ns2\n"
    r = c.exec_run("tty", tty=True)
    assert r.output.strip() == b"/dev/pts/0"
    assert c.exec_run("nosuch").exit_code == 127


def test_attach(client, busybox, cleanup):
    c = client.containers.create(busybox, ["sh", "-c", "sleep 0.5; echo a; echo b >&2"])
    cleanup.append(c)
    out = c.attach(stdout=True, stderr=True, stream=True, logs=True)
    got = []
    t = threading.Thread(target=lambda: got.extend(out))
    t.start()
    c.start()
    t.join(15)
    assert not t.is_alive()
    assert sorted(b"".join(got).splitlines()) == [b"a", b"b"]
    assert c.wait()["StatusCode"] == 0

    # stdin through attach_socket
    c = client.containers.create(busybox, "cat", stdin_open=True)
    cleanup.append(c)
    sock = c.attach_socket(params={"stdin": 1, "stdout": 1, "stream": 1})
    c.start()
    sock._sock.sendall(b"piped\n")
    data = b""
    deadline = time.time() + 10
    while b"piped" not in data and time.time() < deadline:
        chunk = sock._sock.recv(4096)
        if not chunk:
            break
        data += chunk
    assert b"piped\n" in data
    sock._sock.close()
    c.kill()


def test_stats_and_top(client, busybox, cleanup):
    c = client.containers.run(busybox, ["sleep", "1000"], detach=True, mem_limit="64m")
    cleanup.append(c)
    s = c.stats(stream=False)
    assert s["memory_stats"]["limit"] == 64 * 1024 * 1024
    assert s["pids_stats"]["current"] == 1
    assert "cpu_usage" in s["cpu_stats"]
    stream = c.stats(stream=True, decode=True)
    first = next(stream)
    assert "read" in first and "memory_stats" in first
    stream.close()
    top = c.top()
    assert "PID" in top["Titles"] and "CMD" in top["Titles"]
    cmds = [p[top["Titles"].index("CMD")] for p in top["Processes"]]
    assert any("sleep 1000" in x for x in cmds)


def test_stop_kill_pause_unpause(client, busybox, cleanup):
    # pid 1 ignores signals it has no handler for: this one ends on TERM with 143
    c = client.containers.run(busybox, ["sh", "-c", "trap 'exit 143' TERM; while true; do sleep 0.1; done"],
                              detach=True)
    cleanup.append(c)
    wait_status(c, "running")
    c.pause()
    wait_status(c, "paused")
    assert c.attrs["State"]["Paused"] is True
    c.unpause()
    wait_status(c, "running")
    c.kill(signal="SIGKILL")
    assert c.wait()["StatusCode"] == 137
    wait_status(c, "exited")
    c.start()
    wait_status(c, "running")
    c.stop(timeout=5)
    c.reload()
    assert (c.status, c.attrs["State"]["ExitCode"]) == ("exited", 143)
    c.restart(timeout=0)
    wait_status(c, "running")
    c.kill(signal="TERM")
    assert c.wait(timeout=10)["StatusCode"] == 143
    # sleep as pid 1 ignores TERM: stop ends it with SIGKILL after the timeout
    s = client.containers.run(busybox, ["sleep", "1000"], detach=True)
    cleanup.append(s)
    t0 = time.time()
    s.stop(timeout=1)
    assert time.time() - t0 < 8
    s.reload()
    assert (s.status, s.attrs["State"]["ExitCode"]) == ("exited", 137)


def test_rename_and_update(client, busybox, cleanup):
    c = client.containers.run(busybox, ["sleep", "1000"], detach=True, name="py-old")
    cleanup.append(c)
    c.rename("py-new")
    c.reload()
    assert c.name == "py-new"
    with pytest.raises(docker.errors.NotFound):
        client.containers.get("py-old")
    r = c.update(mem_limit="48m", memswap_limit="96m", cpu_shares=512,
                 restart_policy={"Name": "on-failure", "MaximumRetryCount": 2})
    assert "Warnings" in r
    c.reload()
    hc = c.attrs["HostConfig"]
    assert hc["Memory"] == 48 * 1024 * 1024
    assert hc["MemorySwap"] == 96 * 1024 * 1024
    assert hc["CpuShares"] == 512
    assert hc["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert c.stats(stream=False)["memory_stats"]["limit"] == 48 * 1024 * 1024


def test_errors(client, busybox, cleanup):
    with pytest.raises(docker.errors.NotFound):
        client.containers.get("no-such-container")
    c = client.containers.create(busybox, "true", name="py-dup")
    cleanup.append(c)
    with pytest.raises(docker.errors.APIError) as e:
        client.containers.create(busybox, "true", name="py-dup")
    assert e.value.status_code == 409
    with pytest.raises(docker.errors.APIError) as e:
        c.exec_run("true")
    assert e.value.status_code == 409
    c.remove()
    with pytest.raises(docker.errors.NotFound):
        c.reload()
    assert client.ping()
