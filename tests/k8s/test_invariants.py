"""What must hold in every rendered overlay: selectors meet labels, every container is probed, bounded
and locked down, ports agree with the server's own flag parser, references resolve, and the
monitoring objects carry configs/monitoring unchanged."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from deploy import alert_rules
from deploy.manifests import OVERLAYS, find, one, pod_specs
from serving.flags import parse_flags

REPO = Path(__file__).resolve().parents[2]
SERVERS = ("tf-serving", "esteira-gateway")  # TF Serving's flags and ports
EXTERNAL_SECRETS = {"prod": {"esteira-gateway-tokens"},  # created out of band (README, "Kubernetes")
                    "prod-tls": {"esteira-gateway-tokens", "tf-serving-tls", "esteira-gateway-tls",
                                 "esteira-gateway-remote-tls"}}


def workloads(manifests):
    return [m for m in manifests if pod_specs(m)]


def containers(manifests):
    for manifest in workloads(manifests):
        for spec in pod_specs(manifest):
            for container in spec["containers"]:
                yield manifest, spec, container


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_match_the_labels_of_what_they_select(rendered, overlay) -> None:
    manifests = rendered[overlay]
    deployments = find(manifests, "Deployment")
    for deployment in deployments:
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), deployment["metadata"]["name"]
    for kind, path in (("Service", ("spec", "selector")), ("PodDisruptionBudget", ("spec", "selector", "matchLabels"))):
        for manifest in find(manifests, kind):
            selector = manifest[path[0]][path[1]] if len(path) == 2 else manifest[path[0]][path[1]][path[2]]
            matched = [d for d in deployments
                       if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
            assert len(matched) == 1, f"{kind}/{manifest['metadata']['name']} selects {len(matched)} Deployments"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_resources_a_locked_down_context_and_long_runners_have_probes(rendered, overlay) -> None:
    for manifest, spec, container in containers(rendered[overlay]):
        where = f"{manifest['kind']}/{manifest['metadata']['name']}/{container['name']}"
        resources = container.get("resources", {})
        assert {"cpu", "memory"} <= resources.get("requests", {}).keys(), where
        assert {"cpu", "memory"} <= resources.get("limits", {}).keys(), where
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True and context["readOnlyRootFilesystem"] is True, where
        assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"], where
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0, where
        ports = {port["name"] for port in container.get("ports", [])}
        if manifest["kind"] == "Deployment":
            numbers = {port["containerPort"] for port in container.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe"):
                action = container[probe]
                if "grpc" in action:  # a gRPC probe takes a port number only
                    assert action["grpc"]["port"] in numbers, f"{where} {probe} port is not a container port"
                elif "tcpSocket" in action:
                    assert action["tcpSocket"]["port"] in ports, f"{where} {probe} port is not a container port"
                else:
                    assert action["httpGet"]["port"] in ports, f"{where} {probe} port is not a container port"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_server_ports_and_probes_follow_the_servers_own_flags(rendered, overlay) -> None:
    manifests = rendered[overlay]
    for name in SERVERS:
        container = one(manifests, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        flags = parse_flags(container["args"])  # the model server's parser: a misspelt flag fails here
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert ports == {"grpc": flags.port, "rest": flags.rest_api_port} == {"grpc": 8500, "rest": 8501}
        assert re.findall(r'name: "([^"]+)"', config_map_file(manifests, container, flags.model_config_file))
        # gRPC health probes on the gRPC port: readiness asks "" (Esteira: every model has an AVAILABLE
        # version), liveness PredictionService (SERVING while the process serves, on TF Serving too)
        assert flags.enable_grpc_healthcheck_service, f"{name} is probed over gRPC health but does not enable it"
        if flags.ssl_config_file:  # kubelet's probes speak no (m)TLS: the gRPC port's TCP socket instead
            assert container["readinessProbe"]["tcpSocket"] == {"port": "grpc"}
            assert container["livenessProbe"]["tcpSocket"] == {"port": "grpc"}
        else:
            assert container["readinessProbe"]["grpc"] == {"port": flags.port}
            assert container["livenessProbe"]["grpc"] == {"port": flags.port, "service": "PredictionService"}
        monitoring = config_map_file(manifests, container, flags.monitoring_config_file)
        assert 'path: "/monitoring/prometheus/metrics"' in monitoring
        service = one(manifests, "Service", name)
        assert {(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
            ("grpc", 8500, "grpc"), ("rest", 8501, "rest")}
    serving_flags = parse_flags(server_args(manifests, "tf-serving"))
    assert serving_flags.enable_batching and serving_flags.batching_parameters_file
    gateway = parse_flags(server_args(manifests, "esteira-gateway"))
    assert gateway.remote_backend == "tf-serving:8500" and gateway.auth_token_file and gateway.audit_log_file
    assert gateway.canary_config_file


def server_args(manifests, name: str) -> list[str]:
    """The command line of Deployment ``name``'s first container."""
    return one(manifests, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]["args"]


def config_map_file(manifests, container, path: str) -> str:
    """The content of the ConfigMap key mounted at `path` in `container`."""
    spec = next(s for m in workloads(manifests) for s in pod_specs(m) if container in s["containers"])
    for mount in container["volumeMounts"]:
        if path.startswith(mount["mountPath"] + "/"):
            volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
            data = one(manifests, "ConfigMap", volume["configMap"]["name"])["data"]
            return data[path.removeprefix(mount["mountPath"] + "/")]
    raise AssertionError(f"nothing mounted at {path}")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_resolve(rendered, overlay) -> None:
    manifests = rendered[overlay]
    names = {(m["kind"], m["metadata"]["name"]) for m in manifests}
    for hpa in find(manifests, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) in names and target["kind"] == "Deployment", target
    for manifest, spec, container in containers(manifests):
        mounted = {mount["name"] for mount in container.get("volumeMounts", [])}
        assert mounted <= {v["name"] for v in spec.get("volumes", [])}, manifest["metadata"]["name"]
    for manifest in workloads(manifests):
        for spec in pod_specs(manifest):
            for volume in spec.get("volumes", []):
                if "configMap" in volume:
                    assert ("ConfigMap", volume["configMap"]["name"]) in names, volume
                if "persistentVolumeClaim" in volume:
                    assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in names, volume
                if "secret" in volume and volume["secret"]["secretName"] not in EXTERNAL_SECRETS.get(overlay, set()):
                    assert ("Secret", volume["secret"]["secretName"]) in names, volume


def test_configs_reach_the_cluster_unchanged(rendered) -> None:
    for overlay in OVERLAYS:
        manifests = rendered[overlay]
        dashboards = find(manifests, "ConfigMap")
        grafana = [m for m in dashboards if m["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
        for path in (REPO / "configs/monitoring/grafana/dashboards").glob("*.json"):
            assert json.loads(grafana[0]["data"][path.name]) == json.loads(path.read_text())
        rule = one(manifests, "PrometheusRule", "esteira")
        assert rule["spec"]["groups"] == alert_rules.rule_groups()
        weights = [m for m in dashboards if m["metadata"]["name"].startswith("esteira-canary")]
        committed = json.loads((REPO / "configs/serving/canary.json").read_text())
        assert json.loads(weights[0]["data"]["canary.json"]) == committed
    assert alert_rules.is_current(), "run `make k8s-rules` after editing configs/monitoring/rules"


def test_service_monitor_scrapes_both_servers_as_the_alert_rules_expect(rendered) -> None:
    manifests = rendered["prod"]
    monitor = one(manifests, "ServiceMonitor", "esteira")
    selected = [s for s in find(manifests, "Service")
                if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    jobs = {s["metadata"]["labels"][monitor["spec"]["jobLabel"]] for s in selected}
    prometheus = yaml.safe_load((REPO / "configs/monitoring/prometheus.yml").read_text())
    assert jobs == {job["job_name"] for job in prometheus["scrape_configs"]} == {"esteira-serving", "esteira-gateway"}
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["port"] == "rest" and endpoint["path"] == prometheus["scrape_configs"][0]["metrics_path"]


def test_prod_pins_every_image_to_a_release_tag_or_a_digest(rendered) -> None:
    images = {c["image"] for _, _, c in containers(rendered["prod"])}
    for image in images:
        assert re.fullmatch(r"[\w./-]+(@sha256:[0-9a-f]{64}|:v?\d+\.\d+\.\d+)", image), f"{image} is not pinned"
    assert "tensorflow/serving:2.19.1" in images
    assert not any(image.startswith("esteira/") for image in images), "Esteira's images need the registry"


def test_tfjob_runs_chief_and_workers_on_shared_backups(rendered) -> None:
    tfjob = one(rendered["prod"], "TFJob", "esteira-training")
    replicas = tfjob["spec"]["tfReplicaSpecs"]
    assert set(replicas) == {"Chief", "Worker"}
    assert replicas["Chief"]["replicas"] == 1 and replicas["Worker"]["replicas"] >= 1
    for role, replica in replicas.items():
        container = replica["template"]["spec"]["containers"][0]
        args = container["args"]
        assert "--set=training.distribution.strategy=multi_worker" in args
        assert "--set=training.backup_root=/shared/backups" in args
        assert any(m["mountPath"] == "/shared" for m in container["volumeMounts"])
        assert ("--to=Trainer" in args) == (role == "Worker")  # only the Chief evaluates and pushes
    claim = one(rendered["prod"], "PersistentVolumeClaim", "training-shared")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_tfjob_commands_are_valid_esteira_runs(rendered, monkeypatch) -> None:
    from cli.options import config_from
    from cli.pipeline import run_parser

    monkeypatch.chdir(REPO)  # the pipeline image's working directory holds configs/
    tfjob = one(rendered["prod"], "TFJob", "esteira-training")
    for role, replica in tfjob["spec"]["tfReplicaSpecs"].items():
        command, *rest = replica["template"]["spec"]["containers"][0]["args"]
        assert command == "run"
        args = run_parser().parse_args(rest)
        config = config_from(args)  # unknown keys or bad values raise ConfigError
        assert config.training.distribution.strategy == "multi_worker"
        assert str(config.training.backup_root) == "/shared/backups"
        assert args.to == (None if role == "Chief" else "Trainer")


def test_kubeflow_pipeline_job_is_compiled_for_the_pipeline_image_prod_pins() -> None:
    """`make kubeflow-spec` passes the prod overlay's pipeline image to `esteira compile kubeflow --image`
    (tests/pipeline/test_kubeflow_compile.py shows every component then runs on that image)."""
    from deploy.manifests import image_of

    assert image_of("prod", "esteira/pipeline") == "ghcr.io/esteira-ml/esteira-pipeline:0.1.0"
    recipe = (REPO / "Makefile").read_text().split("\nkubeflow-spec:", 1)[1].split("\n\n", 1)[0]
    assert "image=$$($(DEPLOY) image-of prod esteira/pipeline)" in recipe
    assert "$(ESTEIRA) compile kubeflow --config $(CONFIG) --image $$image" in recipe


def test_the_tls_overlay_mounts_every_certificate_the_servers_read_from_secrets(rendered) -> None:
    manifests = rendered["prod-tls"]
    for name in SERVERS:
        spec = one(manifests, "Deployment", name)["spec"]["template"]["spec"]
        container = spec["containers"][0]
        flags = parse_flags(container["args"])
        files = [flags.ssl_config_file, flags.remote_backend_ca_file, flags.remote_backend_cert_file,
                 flags.remote_backend_key_file] if name == "esteira-gateway" else [flags.ssl_config_file]
        assert all(files), f"{name}: {files}"
        for path in files:
            mount = next(m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
            volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
            assert "secret" in volume and mount["readOnly"], f"{name}: {path} is not read from a Secret"
    gateway = parse_flags(server_args(manifests, "esteira-gateway"))
    assert gateway.remote_backend == "tf-serving:8500"  # the name TF Serving's certificate must carry
    monitors = {m["metadata"]["name"]: m for m in find(manifests, "ServiceMonitor")}
    gateway_endpoint = monitors["esteira-gateway"]["spec"]["endpoints"][0]
    assert gateway_endpoint["scheme"] == "https" and gateway_endpoint["tlsConfig"]["keySecret"]["name"]
    selected = {s["metadata"]["labels"]["esteira.io/job"]: [n for n, m in monitors.items()
                if m["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
                for s in find(manifests, "Service") if "esteira.io/job" in s["metadata"]["labels"]}
    assert selected == {"esteira-serving": ["esteira"], "esteira-gateway": ["esteira-gateway"]}  # each scraped once
