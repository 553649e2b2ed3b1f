"""`python -m deploy.cli`: the manifest steps the Makefile (and so the workflows and tests) run."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deploy import alert_rules, canary, crds
from serving.config import ConfigError
from deploy.manifests import ManifestError, dump, image_of, play_manifest, render, render_text, set_image


def _builtin(api_version: str) -> bool:
    """Kinds of Kubernetes itself: the core group (v1) and groups without a dot or under k8s.io."""
    group = api_version.rpartition("/")[0]
    return "." not in group or group.endswith(".k8s.io")


def check_custom(overlay: str) -> list[str]:
    """Problems of the overlay's custom resources; a kind with no CRD kept in k8s/crds/ is one too."""
    manifests = render(overlay)
    problems = [f"{m['kind']}/{m['metadata']['name']}: no CRD schema for {m['apiVersion']} {m['kind']} in "
                f"{crds.CRD_DIR} (add the CRD of its project there)"
                for m in manifests if not _builtin(m["apiVersion"]) and not crds.is_custom(m)]
    return problems + [str(problem) for problem in crds.validate(manifests)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.cli", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("render", help="print an overlay as kubectl kustomize renders it").add_argument("overlay")
    commands.add_parser("check-custom", help="validate custom resources against k8s/crds/").add_argument(
        "overlay", nargs="+")
    rules = commands.add_parser("rules", help="write the PrometheusRule from configs/monitoring/rules")
    rules.add_argument("--check", action="store_true", help="only fail when the committed copy is stale")
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
            sys.stdout.write(render_text(args.overlay))
        elif args.command == "check-custom":
            problems = [f"{overlay}: {problem}" for overlay in args.overlay for problem in check_custom(overlay)]
            for problem in problems:
                print(problem, file=sys.stderr)
            if problems:
                return 1
            print(f"custom resources of {', '.join(args.overlay)} match their CRD schemas")
        elif args.command == "rules":
            if args.check:
                if not alert_rules.is_current():
                    print(f"{alert_rules.TARGET} differs from configs/monitoring/rules: run `make k8s-rules`",
                          file=sys.stderr)
                    return 1
            else:
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
        elif args.command == "canary-start":
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
    except (ManifestError, canary.CanaryError, ConfigError) as error:
        print(f"deploy: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
