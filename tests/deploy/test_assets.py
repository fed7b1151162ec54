"""Deployment assets are consistent with the project.

The compose file, the Kubernetes manifests, the Dockerfile and the Grafana
provisioning all parse, and every setting, port, path, file and metric they name
exists: settings are parsed by ``CollectorSettings`` itself, paths are the app's real
routes, files are resolved through the volume mounts to the repository.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
import subprocess
from importlib.metadata import entry_points
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from starlette.routing import Route

from deploy.rulegen import load_targets, parse_duration
from rastir.__main__ import main as rastir_main
from rastir.collector import CollectorSettings, create_app
from rastir.collector.settings import ENV_PREFIX
from tests._servers import require_binary
from tests.deploy import dashboards as dash

COMPOSE_DIR = dash.DEPLOY / "compose"
K8S_DIR = dash.DEPLOY / "k8s"
DOCKERFILE = dash.DEPLOY / "docker" / "Dockerfile"
FIELDS = {f.name for f in dataclasses.fields(CollectorSettings)}


def _routes() -> set[str]:
    app = create_app(CollectorSettings(store="memory"))
    return {r.path for r in app.routes if isinstance(r, Route)}


ROUTES = _routes()


def _settings(env: dict[str, Any]) -> CollectorSettings:
    """Settings from RASTIR_COLLECTOR_* variables; every name must be a real setting."""
    for name in env:
        assert name.startswith(ENV_PREFIX), name
        assert name.removeprefix(ENV_PREFIX).lower() in FIELDS, f"{name} is no setting"
    return CollectorSettings.from_env({k: str(v) for k, v in env.items()})


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _url_port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None, url
    return port


# --- docker compose -------------------------------------------------------------------

COMPOSE = _load(COMPOSE_DIR / "docker-compose.yml")
SERVICES: dict[str, Any] = COMPOSE["services"]


def _mounted(service: str, container_path: str) -> Path:
    """The repository file a container path of ``service`` is bind-mounted from."""
    target = PurePosixPath(container_path)
    volumes: list[str] = SERVICES[service].get("volumes", [])
    for volume in volumes:
        source, dest = volume.split(":")[:2]
        if not source.startswith("."):
            continue  # a named volume
        dest_path = PurePosixPath(dest)
        if target == dest_path or dest_path in target.parents:
            return (COMPOSE_DIR / source / target.relative_to(dest_path)).resolve()
    raise AssertionError(f"{container_path} is not mounted into {service}")


def _collector_settings() -> CollectorSettings:
    return _settings(SERVICES["collector"]["environment"])


def test_compose_has_collector_prometheus_grafana_and_tempo() -> None:
    assert set(SERVICES) == {"collector", "prometheus", "grafana", "tempo"}
    for name, service in SERVICES.items():
        assert "image" in service, name


def test_compose_collector_settings_are_real_and_valid() -> None:
    s = _collector_settings()
    assert s.host == "0.0.0.0"
    assert s.port == CollectorSettings().port
    assert s.store == "sqlite"
    assert SERVICES["collector"]["ports"] == [f"{s.port}:{s.port}"]
    data = [v for v in SERVICES["collector"]["volumes"] if v.startswith("rastir-data:")]
    assert data == [f"rastir-data:{s.data_dir}"]
    assert "rastir-data" in COMPOSE["volumes"]


def test_compose_collector_exports_otlp_to_tempo() -> None:
    s = _collector_settings()
    assert s.otlp_endpoint is not None
    url = urlsplit(s.otlp_endpoint)
    assert url.hostname == "tempo"
    assert url.hostname in SERVICES["collector"]["depends_on"]
    tempo = _load(_mounted("tempo", "/etc/tempo/tempo.yaml"))
    http = tempo["distributor"]["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert http.rsplit(":", 1)[1] == str(url.port)  # Tempo's OTLP/HTTP port, 4318
    assert SERVICES["tempo"]["command"] == ["-config.file=/etc/tempo/tempo.yaml"]


def test_compose_collector_healthcheck_hits_health() -> None:
    command = " ".join(SERVICES["collector"]["healthcheck"]["test"])
    m = re.search(r"http://127\.0\.0\.1:(\d+)(/[a-z/]+)", command)
    assert m is not None
    assert int(m.group(1)) == _collector_settings().port
    assert m.group(2) == "/health"
    assert m.group(2) in ROUTES


def test_compose_builds_the_collector_from_the_dockerfile() -> None:
    build = SERVICES["collector"]["build"]
    context = (COMPOSE_DIR / build["context"]).resolve()
    assert context == dash.ROOT
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE


def test_every_bind_mount_source_exists() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), (name, volume)
            else:
                assert source in COMPOSE["volumes"], (name, volume)


def test_compose_prometheus_scrapes_the_collector_and_loads_every_rule_file() -> None:
    command = SERVICES["prometheus"]["command"]
    config_path = next(a for a in command if a.startswith("--config.file=")).split("=", 1)[1]
    config = _load(_mounted("prometheus", config_path))
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] in ROUTES
    ((target,),) = (sc["targets"] for sc in job["static_configs"])
    host, port = target.split(":")
    assert host == "collector"
    assert int(port) == _collector_settings().port
    assert _collector_settings().public_metrics  # the job sends no token
    # rule_files are container globs: resolved through the mount, they are the rules
    (pattern,) = config["rule_files"]
    directory = _mounted("prometheus", str(PurePosixPath(pattern).parent))
    matched = sorted(directory.glob(PurePosixPath(pattern).name))
    assert matched == sorted(dash.RULES_DIR.glob("*.yml"))
    assert len(matched) == 4
    # retention covers the SLO window
    retention = next(a for a in command if a.startswith("--storage.tsdb.retention.time="))
    window = load_targets(dash.DEPLOY / "prometheus" / "targets.yaml").slo_window
    assert parse_duration(retention.split("=", 1)[1], "retention") >= parse_duration(window, "w")


def test_compose_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    promtool = require_binary("promtool", "prometheus")
    config = _load(COMPOSE_DIR / "prometheus.yml")
    config["rule_files"] = [str(p) for p in sorted(dash.RULES_DIR.glob("*.yml"))]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    r = subprocess.run(
        [promtool, "check", "config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_grafana_provisioning_points_at_prometheus_tempo_and_the_dashboards() -> None:
    provisioning = _mounted("grafana", "/etc/grafana/provisioning")
    assert provisioning == (dash.DEPLOY / "grafana" / "provisioning").resolve()
    sources = _load(provisioning / "datasources" / "rastir.yml")["datasources"]
    by_type = {s["type"]: s for s in sources}
    prom, tempo = by_type["prometheus"], by_type["tempo"]
    assert urlsplit(prom["url"]).hostname == "prometheus"
    assert _url_port(prom["url"]) == 9090  # Prometheus's default listen port
    assert not any("listen-address" in a for a in SERVICES["prometheus"]["command"])
    tempo_config = _load(_mounted("tempo", "/etc/tempo/tempo.yaml"))
    assert urlsplit(tempo["url"]).hostname == "tempo"
    assert _url_port(tempo["url"]) == tempo_config["server"]["http_listen_port"]
    # the dashboards' datasource variable defaults to the provisioned uid
    for d in dash.load_dashboards().values():
        variable = next(v for v in d["templating"]["list"] if v["name"] == "datasource")
        assert variable["current"]["value"] == prom["uid"]
    (provider,) = _load(provisioning / "dashboards" / "rastir.yml")["providers"]
    folder = _mounted("grafana", provider["options"]["path"])
    assert folder == dash.DASHBOARD_DIR.resolve()
    assert len(list(folder.glob("*.json"))) == 7
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert _mounted("grafana", home).is_file()


# --- Kubernetes ------------------------------------------------------------------------


def _manifests() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(K8S_DIR.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
        assert len(docs) == 1, path
        out[path.name] = docs[0]
    return out


MANIFESTS = _manifests()


def _kind(kind: str) -> dict[str, Any]:
    (found,) = (m for m in MANIFESTS.values() if m["kind"] == kind)
    return found


def _container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = _kind("Deployment")["spec"]["template"]["spec"]["containers"]
    (c,) = containers
    return c


def _k8s_settings() -> CollectorSettings:
    return _settings(_kind("ConfigMap")["data"])


def test_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    resources = _kind("Kustomization")["resources"]
    for name in resources:
        assert (K8S_DIR / name).is_file()
    listed = set(resources) | {"kustomization.yaml", "secret.example.yaml"}
    assert listed == set(MANIFESTS)
    assert {m["kind"] for m in MANIFESTS.values()} >= {
        "Deployment",
        "Service",
        "ConfigMap",
        "PersistentVolumeClaim",
        "ServiceMonitor",
        "PrometheusRule",
    }


def test_configmap_settings_are_real_and_valid() -> None:
    s = _k8s_settings()
    assert s.host == "0.0.0.0"
    assert s.store == "sqlite"
    assert all(isinstance(v, str) for v in _kind("ConfigMap")["data"].values())


def test_deployment_wires_config_tokens_port_volume_and_user() -> None:
    deployment = _kind("Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1  # SQLite: one writer
    assert spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]
    assert spec["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    c = _container()
    s = _k8s_settings()
    (env_from,) = c["envFrom"]
    assert env_from["configMapRef"]["name"] == _kind("ConfigMap")["metadata"]["name"]
    secret = _load(K8S_DIR / "secret.example.yaml")
    for e in c["env"]:
        assert e["name"].removeprefix(ENV_PREFIX).lower() in FIELDS
        ref = e["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]
    _settings({e["name"]: "a-token" for e in c["env"]})
    (port,) = c["ports"]
    assert port["containerPort"] == s.port
    (mount,) = (m for m in c["volumeMounts"] if m["name"] == "data")
    assert mount["mountPath"] == str(s.data_dir)
    (volume,) = (v for v in pod["spec"]["volumes"] if v["name"] == "data")
    assert (
        volume["persistentVolumeClaim"]["claimName"]
        == _kind("PersistentVolumeClaim")["metadata"]["name"]
    )
    assert pod["spec"]["securityContext"]["runAsUser"] == int(_dockerfile_instr("USER")[0])
    # SIGTERM: twice shutdown_timeout plus two seconds (rastir/collector/cli.py)
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace >= 2 * s.shutdown_timeout + 2


def test_probes_use_health_and_ready_on_the_container_port() -> None:
    c = _container()
    port_name = c["ports"][0]["name"]
    paths = {}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = c[probe]["httpGet"]
        assert get["port"] == port_name
        assert get["path"] in ROUTES
        paths[probe] = get["path"]
    assert paths == {
        "startupProbe": "/health",
        "livenessProbe": "/health",
        "readinessProbe": "/ready",
    }


def test_service_and_servicemonitor_reach_the_metrics_route() -> None:
    service = _kind("Service")
    pod_labels = _kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (sport,) = service["spec"]["ports"]
    c = _container()
    assert sport["targetPort"] == c["ports"][0]["name"]
    assert sport["port"] == c["ports"][0]["containerPort"]
    monitor = _kind("ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == sport["name"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["path"] in ROUTES
    # no credentials on the scrape: the collector must serve /metrics without a token
    assert "authorization" not in endpoint
    assert _k8s_settings().public_metrics


def test_prometheusrule_carries_the_generated_groups() -> None:
    rule = _kind("PrometheusRule")
    groups = {g["name"]: g for gs in dash.rule_groups().values() for g in gs}
    assert {g["name"]: g for g in rule["spec"]["groups"]} == groups


# --- Dockerfile ------------------------------------------------------------------------


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, args = line.partition(" ")
        out.append((instr.upper(), args.strip()))
    return out


def _dockerfile_instr(name: str) -> list[str]:
    return [args for instr, args in _dockerfile() if instr == name]


def test_dockerfile_copies_existing_files_that_the_dockerignore_keeps() -> None:
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    copies = [shlex.split(a) for a in _dockerfile_instr("COPY")]
    sources = [p for args in copies if not args[0].startswith("--from") for p in args[:-1]]
    assert sources
    for source in sources:
        assert (dash.ROOT / source).exists(), source
        assert f"!{source.rstrip('/')}" in ignore.replace("/\n", "\n"), source


def test_dockerfile_settings_port_entrypoint_and_healthcheck(
    capsys: pytest.CaptureFixture[str],
) -> None:
    env: dict[str, str] = {}
    for args in _dockerfile_instr("ENV"):
        for pair in shlex.split(args):
            key, _, value = pair.partition("=")
            if key.startswith(ENV_PREFIX):
                env[key] = value
    s = _settings(env)
    (expose,) = _dockerfile_instr("EXPOSE")
    assert int(expose) == s.port == CollectorSettings().port
    (volume,) = _dockerfile_instr("VOLUME")
    assert yaml.safe_load(volume) == [str(s.data_dir)]
    (entrypoint,) = _dockerfile_instr("ENTRYPOINT")
    command = yaml.safe_load(entrypoint)
    assert command == ["rastir", "collector"]
    (script,) = entry_points(group="console_scripts", name=command[0])
    assert script.value == "rastir.__main__:main"
    with pytest.raises(SystemExit) as exit_info:
        rastir_main([*command[1:], "--help"])
    assert exit_info.value.code == 0
    assert "RASTIR_COLLECTOR_" in capsys.readouterr().out
    (health,) = _dockerfile_instr("HEALTHCHECK")
    m = re.search(r"http://127\.0\.0\.1:(\d+)(/[a-z]+)", health)
    assert m is not None
    assert int(m.group(1)) == s.port
    assert m.group(2) == "/health"
    assert m.group(2) in ROUTES
    (user,) = _dockerfile_instr("USER")
    assert f"--uid {user}" in " ".join(_dockerfile_instr("RUN"))


# --- several replicas on PostgreSQL ----------------------------------------------------

PG_COMPOSE = _load(COMPOSE_DIR / "docker-compose.postgres.yml")
PG_SERVICES: dict[str, Any] = PG_COMPOSE["services"]
PG_COLLECTORS = sorted(name for name in PG_SERVICES if name.startswith("collector"))
PG_K8S_DIR = dash.DEPLOY / "k8s-postgres"
# Compose's interpolation of a required variable: the password is never in the file.
_REQUIRED_PASSWORD = re.compile(r"\$\{POSTGRES_PASSWORD:\?[^}]*\}")


def _pg_compose_settings(service: str) -> CollectorSettings:
    env = {
        k: _REQUIRED_PASSWORD.sub("pw", str(v))
        for k, v in PG_SERVICES[service]["environment"].items()
    }
    return _settings(env)


def test_postgres_compose_runs_two_replicas_on_one_postgres() -> None:
    assert set(PG_SERVICES) == {"postgres", "collector-1", "collector-2", "prometheus"}
    assert PG_COLLECTORS == ["collector-1", "collector-2"]
    dsns = set()
    host_ports = set()
    for name in PG_COLLECTORS:
        service = PG_SERVICES[name]
        s = _pg_compose_settings(name)
        assert s.host == "0.0.0.0"
        assert s.public_metrics  # Prometheus scrapes without a token
        dsn = _REQUIRED_PASSWORD.sub("pw", service["environment"]["RASTIR_COLLECTOR_STORE"])
        url = urlsplit(dsn)
        assert (url.scheme, url.hostname, url.password) == ("postgresql", "postgres", "pw")
        assert s.store == dsn
        dsns.add(dsn)
        (port,) = service["ports"]
        host, container = port.split(":")
        assert int(container) == s.port
        host_ports.add(host)
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        build = service["build"]
        assert (COMPOSE_DIR / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        command = " ".join(service["healthcheck"]["test"])
        m = re.search(r"http://127\.0\.0\.1:(\d+)(/[a-z/]+)", command)
        assert m is not None
        assert (int(m.group(1)), m.group(2)) == (s.port, "/health")
    assert len(dsns) == 1  # one shared database
    assert len(host_ports) == len(PG_COLLECTORS)
    postgres = PG_SERVICES["postgres"]
    url = urlsplit(next(iter(dsns)))
    env = postgres["environment"]
    assert (url.username, url.path) == (env["POSTGRES_USER"], "/" + env["POSTGRES_DB"])
    assert "pg_isready" in postgres["healthcheck"]["test"]
    for volume in postgres["volumes"]:
        assert volume.split(":")[0] in PG_COMPOSE["volumes"]


def test_postgres_compose_commits_no_password() -> None:
    postgres = PG_SERVICES["postgres"]["environment"]
    assert _REQUIRED_PASSWORD.fullmatch(postgres["POSTGRES_PASSWORD"])
    for name in PG_COLLECTORS:
        dsn = PG_SERVICES[name]["environment"]["RASTIR_COLLECTOR_STORE"]
        password = dsn.split("://", 1)[1].rsplit("@", 1)[0].split(":", 1)[1]
        assert _REQUIRED_PASSWORD.fullmatch(password), dsn


def test_postgres_compose_prometheus_scrapes_every_replica() -> None:
    prometheus = PG_SERVICES["prometheus"]
    volumes = prometheus["volumes"]
    (config_mount,) = (v for v in volumes if v.split(":")[1] == "/etc/prometheus/prometheus.yml")
    config = _load(COMPOSE_DIR / config_mount.split(":")[0])
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] in ROUTES
    ((targets),) = (sc["targets"] for sc in job["static_configs"])
    assert sorted(t.split(":")[0] for t in targets) == PG_COLLECTORS
    for target in targets:
        host, port = target.split(":")
        assert int(port) == _pg_compose_settings(host).port
    (pattern,) = config["rule_files"]
    rules = next(v for v in volumes if v.split(":")[1] == str(PurePosixPath(pattern).parent))
    assert (COMPOSE_DIR / rules.split(":")[0]).resolve() == dash.RULES_DIR.resolve()
    for volume in volumes:
        source = volume.split(":")[0]
        if source.startswith("."):
            assert (COMPOSE_DIR / source).exists(), volume
        else:
            assert source in PG_COMPOSE["volumes"], volume


def _pg_overlay() -> dict[str, Any]:
    return _load(PG_K8S_DIR / "kustomization.yaml")  # type: ignore[no-any-return]


def _pg_patch(kind: str) -> dict[str, Any]:
    for entry in _pg_overlay()["patches"]:
        if "path" in entry:
            patch: dict[str, Any] = _load(PG_K8S_DIR / entry["path"])
            if patch["kind"] == kind:
                return patch
    raise AssertionError(f"no {kind} patch")


def test_postgres_overlay_patches_the_base_and_deletes_the_volume_claim() -> None:
    overlay = _pg_overlay()
    assert overlay["resources"] == ["../k8s"]
    assert (PG_K8S_DIR / overlay["resources"][0]).resolve() == K8S_DIR.resolve()
    base = {(m["kind"], m["metadata"]["name"]) for m in MANIFESTS.values() if "metadata" in m}
    deleted = []
    for entry in overlay["patches"]:
        if "path" in entry:
            patch = _load(PG_K8S_DIR / entry["path"])
        else:
            patch = yaml.safe_load(entry["patch"])
            deleted.append(patch["kind"])
            assert patch["$patch"] == "delete"
        assert (patch["kind"], patch["metadata"]["name"]) in base, patch["metadata"]
    assert deleted == ["PersistentVolumeClaim"]
    listed = {e["path"] for e in overlay["patches"] if "path" in e} | {
        "kustomization.yaml",
        "secret.example.yaml",
    }
    assert listed == {p.name for p in PG_K8S_DIR.glob("*.yaml")}


def test_postgres_overlay_runs_three_replicas_with_the_dsn_from_a_secret() -> None:
    spec = _pg_patch("Deployment")["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (container,) = spec["template"]["spec"]["containers"]
    assert container["name"] == _container()["name"]
    secret = _load(PG_K8S_DIR / "secret.example.yaml")
    (env,) = container["env"]
    assert env["name"] == ENV_PREFIX + "STORE"
    ref = env["valueFrom"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"]
    assert "optional" not in ref  # no DSN, no start: never a silent SQLite fallback
    dsn = secret["stringData"][ref["key"]]
    assert urlsplit(dsn).scheme == "postgresql"
    assert (urlsplit(dsn).password or "").startswith("replace-with")  # a placeholder
    # The ConfigMap loses the SQLite-only settings; with the Secret's DSN it is valid.
    data = _pg_patch("ConfigMap")["data"]
    assert data == {ENV_PREFIX + "STORE": None, ENV_PREFIX + "RETENTION_BYTES": None}
    kept = {k: v for k, v in _kind("ConfigMap")["data"].items() if k not in data}
    s = _settings({**kept, env["name"]: dsn})
    assert s.store == dsn
    (volume,) = spec["template"]["spec"]["volumes"]
    assert volume["name"] == "data"
    assert volume["persistentVolumeClaim"] is None


def test_postgres_overlay_renders_with_kustomize() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:  # not a CI requirement: the structural tests above always run
        pytest.skip("kubectl is not installed")
    r = subprocess.run(
        [kubectl, "kustomize", str(PG_K8S_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    rendered = [d for d in yaml.safe_load_all(r.stdout) if d]
    kinds = sorted(d["kind"] for d in rendered)
    assert "PersistentVolumeClaim" not in kinds
    assert "Secret" not in kinds  # the DSN is never rendered from the repository
    (deployment,) = (d for d in rendered if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    names = [e["name"] for e in container["env"]]
    assert names[0] == ENV_PREFIX + "STORE"
    assert len(names) == len(set(names)) == 3
    (config,) = (d for d in rendered if d["kind"] == "ConfigMap")
    assert ENV_PREFIX + "STORE" not in config["data"]
    volumes = deployment["spec"]["template"]["spec"]["volumes"]
    assert all("persistentVolumeClaim" not in v for v in volumes)


def test_the_image_installs_the_postgres_extra() -> None:
    installs = [a for a in _dockerfile_instr("RUN") if "pip install" in a or "pip wheel" in a]
    assert len(installs) == 2
    for command in installs:
        m = re.search(r"rastir\[([a-z,]+)\]|\"\.\[([a-z,]+)\]\"", command)
        assert m is not None, command
        extras = (m.group(1) or m.group(2)).split(",")
        assert {"collector", "postgres"} <= set(extras), command
