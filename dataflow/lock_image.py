"""Writes dataflow/image-constraints.txt: every package the worker image installs, at
one exact version.

The Dockerfile installs with ``-c dataflow/image-constraints.txt``, so a rebuild of
the same commit installs the same wheels (TensorFlow's CUDA and cuDNN wheels float
within its ranges otherwise), and then runs ``pip check``. Run this after changing
a pin in setup.py or the Dockerfile, on Linux x86-64 with the image's Python:

    .venv/bin/python dataflow/lock_image.py

It asks pip's resolver (``pip install --dry-run --report``) what the image's
``pip install`` line would install, and writes the result.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONSTRAINTS = os.path.join(ROOT, "dataflow", "image-constraints.txt")
PROJECT = "glcm-texture"


def dockerfile_args() -> Dict[str, str]:
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        return dict(re.findall(r"^ARG (\w+)=(\S+)$", f.read(), re.M))


def image_requirements(args: Dict[str, str]) -> List[str]:
    """What the Dockerfile's pip line asks for, besides this package."""
    return [f"apache-beam[gcp]=={args['BEAM_VERSION']}",
            f"tensorflow[and-cuda]=={args['TENSORFLOW_VERSION']}"]


def resolve(requirements: List[str]) -> Dict[str, str]:
    """{name: version} pip would install for ``requirements`` and this package (its
    GPU variant, as the image installs it), ignoring what is installed here."""
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.json")
        env = dict(os.environ, GLCM_TENSORFLOW="gpu")
        subprocess.run([sys.executable, "-m", "pip", "install", "--isolated", "--quiet",
                        "--dry-run", "--ignore-installed", "--report", report,
                        *requirements, ROOT], check=True, env=env)
        with open(report) as f:
            installs = json.load(f)["install"]
    return {i["metadata"]["name"]: i["metadata"]["version"] for i in installs
            if i["metadata"]["name"] != PROJECT}


def constraints_text(pins: Dict[str, str], args: Dict[str, str]) -> str:
    header = (f"# Exact versions of everything the worker image installs (Python "
              f"{args['PYTHON_VERSION']}, Linux x86-64):\n"
              f"# written by dataflow/lock_image.py on "
              f"{datetime.date.today().isoformat()}; regenerate it after changing a pin.\n")
    return header + "".join(f"{name}=={version}\n" for name, version in
                            sorted(pins.items(), key=lambda kv: kv[0].lower()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    args = dockerfile_args()
    here = "%d.%d" % sys.version_info[:2]
    if (here != args["PYTHON_VERSION"] or platform.system() != "Linux"
            or platform.machine() != "x86_64"):
        print(f"run this with Python {args['PYTHON_VERSION']} on Linux x86-64 (the image's "
              f"platform); this is Python {here} on {platform.system()} "
              f"{platform.machine()}", file=sys.stderr)
        return 2
    pins = resolve(image_requirements(args))
    with open(CONSTRAINTS, "w") as f:
        f.write(constraints_text(pins, args))
    print(f"{len(pins)} packages pinned in {os.path.relpath(CONSTRAINTS, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
