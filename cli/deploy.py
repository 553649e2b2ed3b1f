"""``esteira deploy ...``: the Kubernetes manifest steps the Makefile (and so the workflows and tests) run."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deploy import alert_rules, crds
from deploy.manifests import ManifestError, dump, image_of, play_manifest, render_text, set_image


def deploy_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="esteira deploy", description="The manifest steps the Makefile (and so the workflows and tests) run.")
    commands = parser.add_subparsers(dest="command", required=True)
    show = commands.add_parser("render", help="print overlays as kubectl kustomize renders them")
    show.add_argument("overlay", nargs="+")
    show.add_argument("--out", type=Path, help="write <out>/<overlay>.yaml instead of printing")
    check = commands.add_parser("check", help="custom resources of rendered files vs k8s/crds/; rules up to date")
    check.add_argument("rendered", type=Path, nargs="+", help="files written by `render --out`")
    commands.add_parser("rules", help="write the PrometheusRule from configs/monitoring/rules")
    image = commands.add_parser("set-image", help="pin an image of an overlay to repo@sha256:... or repo:tag")
    image.add_argument("overlay")
    image.add_argument("name", help="the image as the base names it, e.g. esteira/serving")
    image.add_argument("reference")
    show = commands.add_parser("image-of", help="print the image an overlay renders for a base image name")
    show.add_argument("overlay")
    show.add_argument("name")
    play = commands.add_parser("play-manifest", help="one Deployment and its ConfigMaps for podman kube play")
    play.add_argument("overlay")
    play.add_argument("deployment")
    play.add_argument("--image", help="run this image instead (e.g. Esteira's serving image)")
    play.add_argument("--model-store", type=Path, help="local folder of <model>/<version>/ SavedModels")
    play.add_argument("--out", type=Path, help="file to write (default: stdout)")
    for step, help_text in (("canary-start", "label VERSION canary in the models.config"),
                            ("canary-promote", "the canary version becomes stable"),
                            ("canary-rollback", "the canary label goes back to the stable version")):
        sub = commands.add_parser(step, help=help_text)
        sub.add_argument("--model-config", type=Path, required=True, help="the models.config the ConfigMap is made of")
        sub.add_argument("--model", required=True)
        if step == "canary-start":
            sub.add_argument("--version", type=int, required=True)
    check = commands.add_parser("canary-check", help="fail while a canary alert fires for the model")
    check.add_argument("--prometheus", required=True, help="Prometheus base URL")
    check.add_argument("--model", required=True)
    check.add_argument("--soak", type=float, default=0.0, help="keep watching this many seconds (default: once)")
    check.add_argument("--every", type=float, default=30.0, help="seconds between two looks")
    args = parser.parse_args(argv)
    try:
        if args.command == "render":
            for overlay in args.overlay:
                text = render_text(overlay)
                if args.out:
                    args.out.mkdir(parents=True, exist_ok=True)
                    (args.out / f"{overlay}.yaml").write_text(text)
                else:
                    sys.stdout.write(text)
        elif args.command == "check":
            return _check(args.rendered)
        elif args.command == "rules":
            print(f"wrote {alert_rules.write()}")
        elif args.command == "set-image":
            print(f"{args.name} -> {args.reference} in {set_image(args.overlay, args.name, args.reference)}")
        elif args.command == "image-of":
            print(image_of(args.overlay, args.name))
        elif args.command == "play-manifest":
            text = dump(play_manifest(args.overlay, args.deployment, image=args.image, model_store=args.model_store))
            if args.out:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(text)
                print(f"wrote {args.out}")
            else:
                sys.stdout.write(text)
        elif args.command.startswith("canary-"):
            return _canary(args)
    except ManifestError as error:
        print(f"deploy: error: {error}", file=sys.stderr)
        return 2
    return 0


def _canary(args: argparse.Namespace) -> int:
    from deploy import canary  # httpx and the serving protos: only for these steps
    from serving.config import ConfigError

    try:
        if args.command == "canary-start":
            print(canary.start(args.model_config, args.model, args.version))
        elif args.command == "canary-promote":
            print(canary.promote(args.model_config, args.model))
        elif args.command == "canary-rollback":
            print(canary.rollback(args.model_config, args.model))
        elif args.command == "canary-check":
            firing = canary.soak(args.prometheus, args.model, args.soak, args.every)
            if firing:
                print(f"canary of {args.model}: firing {', '.join(firing)}: roll back", file=sys.stderr)
                return 1
            print(f"canary of {args.model}: no canary alert fired in {args.soak:g} s")
    except (canary.CanaryError, ConfigError) as error:
        print(f"deploy: error: {error}", file=sys.stderr)
        return 2
    return 0


def _check(files: list[Path]) -> int:
    problems = crds.rendered_problems(files)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"custom resources of {', '.join(map(str, files))} match their CRD schemas; the PrometheusRule "
              "matches configs/monitoring/rules")
    return 1 if problems else 0


