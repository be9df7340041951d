"""pytest fixtures: a throwaway berthd per test module (own data root, exec root, socket,
pidfile, bridge subnet), driven through docker-py exactly as a user's program would."""
import hashlib
import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time

import docker
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN_DIR = os.environ.get("BERTH_BIN_DIR", os.path.join(ROOT, "target", "debug"))
_SEQ = itertools.count()


def _exists(cmd):
    return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


class Daemon:
    def __init__(self, name):
        self.dir = f"/tmp/berth-pytest/{name}-{os.getpid()}"
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.sock = os.path.join(self.dir, "berth.sock")
        with open(os.path.join(self.dir, "daemon.json"), "w") as f:
            f.write("{}")
        n = os.getpid() % 250
        # a bridge of our own (not the host's berth0), at most 15 bytes
        self.bridge = f"bp{os.getpid() % 100000}x{next(_SEQ) % 1000}"
        self.data_root = os.path.join(self.dir, "data")
        args = [
            os.path.join(BIN_DIR, "berthd"),
            "--data-root", os.path.join(self.dir, "data"),
            "--exec-root", os.path.join(self.dir, "exec"),
            "--pidfile", os.path.join(self.dir, "berthd.pid"),
            "-H", f"unix://{self.sock}",
            "--bip", f"10.99.{n}.1/24",
            "--bridge", self.bridge,
            "--config-file", os.path.join(self.dir, "daemon.json"),
        ]
        # like dockerd, berthd takes a -b bridge other than its default as given: it must
        # exist and stays at shutdown (stop removes it)
        subprocess.run(["ip", "link", "add", self.bridge, "type", "bridge"], check=False,
                       stderr=subprocess.DEVNULL)
        self.log = open(os.path.join(self.dir, "berthd.log"), "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log, start_new_session=True)
        deadline = time.time() + 20
        while True:
            try:
                docker.DockerClient(base_url=f"unix://{self.sock}").ping()
                break
            except Exception:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    raise RuntimeError("berthd did not start:\n" + open(self.log.name).read())
                time.sleep(0.05)

    def client(self):
        return docker.DockerClient(base_url=f"unix://{self.sock}", version="auto")

    def nft_table(self):
        """The daemon's nftables table (berth-network derives it from the data root)."""
        return "berth_" + hashlib.sha256(self.data_root.encode()).hexdigest()[:10]

    def stop(self):
        """SIGTERM and wait (berthd stops its containers within its 15 s shutdown timeout),
        then check that it removed its bridge, nftables table and netns mounts; whatever is
        left is removed and reported, so a leak fails the run instead of piling up."""
        graceful = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(25)
            except subprocess.TimeoutExpired:
                graceful = False
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        leaks = []
        for family in ("ip", "bridge"):
            if _exists(["nft", "list", "table", family, self.nft_table()]):
                leaks.append(f"nftables table {family} {self.nft_table()}")
                subprocess.run(["nft", "delete", "table", family, self.nft_table()], check=False)
        subprocess.run(["ip", "link", "del", self.bridge], check=False, stderr=subprocess.DEVNULL)
        with open("/proc/self/mountinfo") as f:
            netns = [l.split()[4] for l in f if l.split()[4].startswith(os.path.join(self.dir, "exec", "netns"))]
        if netns:
            leaks.append(f"netns mounts {netns}")
        # Unmount anything left below our directory, deepest first, then remove it.
        with open("/proc/self/mountinfo") as f:
            mounts = [l.split()[4] for l in f if l.split()[4].startswith(self.dir)]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
        if leaks and graceful:
            raise AssertionError(f"berthd left behind after SIGTERM: {', '.join(leaks)}")


@pytest.fixture(scope="module")
def daemon(request):
    d = Daemon(request.module.__name__)
    yield d
    d.stop()


@pytest.fixture(scope="module")
def client(daemon):
    c = daemon.client()
    yield c
    c.close()


def busybox_rootfs():
    """A tar of a minimal busybox root filesystem (Debian's busybox-static)."""
    bb = next(p for p in ("/bin/busybox", "/usr/bin/busybox") if os.path.exists(p))
    applets = subprocess.run([bb, "--list"], capture_output=True, text=True, check=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for d in ("bin", "etc", "tmp"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            t.addfile(info)
        t.add(bb, arcname="bin/busybox")
        for a in applets:
            if a == "busybox":
                continue
            info = tarfile.TarInfo(f"bin/{a}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            t.addfile(info)
        data = b"root:x:0:0:root:/root:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()
