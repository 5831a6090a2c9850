"""Everything the Docker tests need, from a bare machine: `python tests/docker/provide.py`.

1. An engine that answers: docker.io is installed with apt if dockerd is missing, and dockerd
   is started in the background if no daemon answers (CI machines run no services).
2. A base image, built locally because there is no registry here: debootstrap (minbase,
   bookworm) with python3, iproute2, ping, iperf3, procps and sshd (for Ansible), imported with `docker import`.
3. The project image on top: the wheels of provision and of its dependencies at the versions
   requirements.lock pins (hashes checked), fetched on this machine (inside a container the
   package index fails certificate checks), installed in a venv with --no-index.

Images are tagged by a hash of what goes into them, so a repeated run costs nothing.
Prints the project image's tag on the last line. Any failure exits 1 with the reason.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import docker
import docker.errors

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "build"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-venv", "iproute2", "iputils-ping", "iperf3", "procps", "openssh-server")
BASE = "provision-base"
IMAGE = "provision-test"
DOCKERFILE = """\
FROM {base}
COPY wheels /tmp/wheels
RUN python3 -m venv /opt/provision \\
 && /opt/provision/bin/pip install --quiet --no-index --find-links /tmp/wheels provision \\
 && ln -s /opt/provision/bin/provision /usr/local/bin/provision \\
 && rm -rf /tmp/wheels
CMD ["sleep", "infinity"]
"""


def say(text: str) -> None:
    print(f"provide: {text}", file=sys.stderr, flush=True)


def fail(text: str) -> None:
    print(f"provide: error: {text}", file=sys.stderr)
    sys.exit(1)


def engine() -> docker.DockerClient:
    """A client of a daemon that answers, starting one if need be."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
        return client
    except docker.errors.DockerException:
        pass
    if shutil.which("dockerd") is None:
        say("installing docker.io")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "docker.io"], check=True, env=env)
    say("starting dockerd")
    log = open("/var/log/provision-dockerd.log", "ab")
    subprocess.Popen(["dockerd"], stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            client = docker.from_env(timeout=120)
            client.ping()
            return client
        except docker.errors.DockerException:
            time.sleep(0.5)
    fail("dockerd did not answer within 60 s; see /var/log/provision-dockerd.log")
    raise AssertionError


def base_image(client: docker.DockerClient) -> str:
    tag = f"{BASE}:{hashlib.sha256(repr((SUITE, MIRROR, PACKAGES)).encode()).hexdigest()[:12]}"
    if _exists(client, tag):
        return tag
    if shutil.which("debootstrap") is None:
        say("installing debootstrap")
        subprocess.run(["apt-get", "install", "-y", "-qq", "debootstrap"], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    with tempfile.TemporaryDirectory(prefix="provision-rootfs-") as rootfs:
        say(f"building {tag} with debootstrap (about a minute)")
        subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, rootfs, MIRROR],
                       check=True, stdout=subprocess.DEVNULL)
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for f in Path(rootfs, cache).glob("*.deb"):
                f.unlink()
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        client.api.import_image_from_stream(tar.stdout, repository=tag.split(":")[0], tag=tag.split(":")[1])
        if tar.wait() != 0:
            fail("tar of the root file system failed")
    if not _exists(client, tag):
        fail(f"docker import did not produce {tag}")
    return tag


def wheels() -> Path:
    """provision's wheel and its locked dependencies', rebuilt when the sources or the lock change.
    provision itself is built without build isolation: its build backend is the one the test
    lock installed here, not whatever the index offers today."""
    sources = sorted(p for d in ("provisioner", "schemas") for p in (ROOT / d).rglob("*") if p.is_file()
                     and "__pycache__" not in p.parts) + [ROOT / "pyproject.toml", ROOT / "requirements.lock"]
    digest = hashlib.sha256()
    for p in sources:
        digest.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes())
    out = CACHE / f"wheels-{digest.hexdigest()[:12]}"
    if not out.is_dir():
        say("building wheels")
        tmp = out.with_suffix(".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "-w", str(tmp)]
        subprocess.run([*pip, "--require-hashes", "-r", str(ROOT / "requirements.lock")], check=True)
        subprocess.run([*pip, "--no-deps", "--no-build-isolation", str(ROOT)], check=True)
        for old in CACHE.glob("wheels-*"):
            if old != tmp:
                shutil.rmtree(old, ignore_errors=True)
        tmp.rename(out)
    return out


def project_image(client: docker.DockerClient, base: str) -> str:
    wheel_dir = wheels()
    dockerfile = DOCKERFILE.format(base=base)
    digest = hashlib.sha256(dockerfile.encode())
    for w in sorted(wheel_dir.iterdir()):
        digest.update(w.name.encode() + w.read_bytes())
    tag = f"{IMAGE}:{digest.hexdigest()[:12]}"
    if _exists(client, tag):
        return tag
    say(f"building {tag}")
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        data = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        tar.add(wheel_dir, arcname="wheels")
    context.seek(0)
    try:
        client.images.build(fileobj=context, custom_context=True, tag=tag, rm=True, network_mode="none")
    except docker.errors.BuildError as exc:
        fail(f"building {tag}: {exc.msg}: " + "".join(str(x.get("stream", "")) for x in exc.build_log)[-2000:])
    client.images.get(tag).tag(IMAGE, "latest")
    return tag


def _exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def main() -> None:
    client = engine()
    try:
        tag = project_image(client, base_image(client))
    except subprocess.CalledProcessError as exc:
        fail(f"{' '.join(map(str, exc.cmd))} exited with {exc.returncode}")
    print(tag)


if __name__ == "__main__":
    main()
