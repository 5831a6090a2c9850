"""The one thing pyproject.toml cannot say: the C extensions, built with warnings as errors
(provisioner/tunnel/_fastpath.c, docs/fastpath.md, against the system's OpenSSL libcrypto;
provisioner/kernel/_rtattr.c, the netlink attribute walk; provisioner/kernel/_setns.c, setns(2); provisioner/kernel/_tuntap.c, tun devices made;
provisioner/kernel/_readahead.c, netlink dumps read on a thread of their own),
and the schemas carried inside the wheel (schema.py looks for them beside the package). Each
extension has its Python model as a fallback."""

import os
import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildWithSchemas(build_py):
    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            shutil.copytree(HERE / "schemas", Path(self.build_lib) / "provisioner" / "schemas", dirs_exist_ok=True)


class BuildExtReplacing(build_ext):
    """An in-place build (`pip install -e .`) puts the new .so beside the old by rename, never by
    writing over it: forwarders still running map the old file, and a file truncated under them
    is a SIGBUS."""

    def copy_file(self, infile, outfile, *args, **kwargs):  # type: ignore[no-untyped-def,override]
        if not str(outfile).endswith(".so"):
            return super().copy_file(infile, outfile, *args, **kwargs)
        tmp = f"{outfile}.new"
        shutil.copyfile(infile, tmp)
        shutil.copymode(infile, tmp)
        os.replace(tmp, outfile)
        return outfile, 1


FLAGS = ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-Wshadow", "-Wvla", "-Wformat=2", "-fno-strict-aliasing"]

setup(
    cmdclass={"build_py": BuildWithSchemas, "build_ext": BuildExtReplacing},
    ext_modules=[
        Extension("provisioner.tunnel._fastpath", sources=["provisioner/tunnel/_fastpath.c"], libraries=["crypto"],
                  extra_compile_args=FLAGS),
        Extension("provisioner.kernel._rtattr", sources=["provisioner/kernel/_rtattr.c"], extra_compile_args=FLAGS),
        Extension("provisioner.kernel._setns", sources=["provisioner/kernel/_setns.c"], extra_compile_args=FLAGS),
        Extension("provisioner.kernel._tuntap", sources=["provisioner/kernel/_tuntap.c"], extra_compile_args=FLAGS),
        Extension("provisioner.kernel._readahead", sources=["provisioner/kernel/_readahead.c"],
                  extra_compile_args=[*FLAGS, "-pthread"], extra_link_args=["-pthread"]),
    ],
)
