"""``esteira images base | build IMAGE | wheelhouse IMAGE``: Podman images and their wheelhouses (deploy/)."""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from deploy import wheelhouse
from deploy.images import BASE_IMAGE, DEFAULT_STATE, IMAGES, build_image, make_base_image
from deploy.podman import Podman, PodmanError


def images_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="esteira images", description="Podman images of Esteira: the local Debian base, the serving and "
                                           "pipeline images, and the wheelhouses they install from.")
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE, help="where containers.conf is written")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("base", help=f"make {BASE_IMAGE} from Debian's packages")
    build = sub.add_parser("build", help="wheelhouse, base image and the image")
    build.add_argument("image", choices=sorted(IMAGES))
    build.add_argument("--base", default=BASE_IMAGE, help="the base image (default: the locally made one)")
    build.add_argument("--tag", help="the image reference to build (default: localhost/esteira-<image>:dev)")
    house = sub.add_parser("wheelhouse", help="only the wheelhouse of an image, from requirements.lock")
    house.add_argument("image", choices=sorted(wheelhouse.IMAGES))
    args = parser.parse_args(argv)
    if args.command == "wheelhouse":
        return _wheelhouse(args.image)
    try:
        podman = Podman(args.state_dir)
        started = time.monotonic()
        if args.command == "base":
            print(make_base_image(podman))
            return 0
        wheelhouse.build(wheelhouse.IMAGES[args.image]())
        if args.base == BASE_IMAGE:
            make_base_image(podman)
        tag = build_image(podman, args.image, base=args.base, tag=args.tag, quiet=False)
        print(f"images: built {tag} in {time.monotonic() - started:.0f} s, "
              f"{podman.image_size(tag) / 1e6:.0f} MB")
    except (PodmanError, wheelhouse.WheelhouseError, subprocess.CalledProcessError) as error:
        print(f"images: {error}", file=sys.stderr)
        return 1
    return 0



def _wheelhouse(image: str) -> int:
    try:
        folder = wheelhouse.build(wheelhouse.IMAGES[image]())
    except (wheelhouse.WheelhouseError, subprocess.CalledProcessError) as error:
        print(f"wheelhouse: {error}", file=sys.stderr)
        return 1
    size = sum(f.stat().st_size for f in folder.rglob("*.whl"))
    print(f"wheelhouse: {folder} ({len(list(folder.rglob('*.whl')))} wheels, {size / 1e6:.0f} MB)")
    return 0
