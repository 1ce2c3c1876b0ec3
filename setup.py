"""Build hook: the wheel carries playbooks/, checks/ and packer/ as hardening/_shipped/, where
hardening.resources finds them (an editable install reads them from the checkout instead)."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("playbooks", "checks", "packer")


class BuildPyWithShipped(build_py):
    """build_py, then a copy of each shipped directory into the built package."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for name in SHIPPED:
            shutil.copytree(name, Path(self.build_lib) / "hardening" / "_shipped" / name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "output-*", "packer_cache"))


setup(cmdclass={"build_py": BuildPyWithShipped})
