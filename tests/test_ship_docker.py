"""What can be checked of the Docker image and the compose stack without a Docker engine.

The compose file parses, names only images and settings that exist (every environment variable of
a LabelHub service is read by ``labelhub backend``/``labelhub sync`` or the image; every Label Studio
variable is read by Label Studio 1.23.2's own source, when its cached venv is there), its volumes
are where the image keeps its state, and every ``${VAR}`` is documented in ``.env.example``, whose variables
are exactly the rows of README.md's table, each naming the services compose passes it to. Each command parses
its service's environment (with ``.env.example`` as shipped), where an empty value leaves the command's own
default; the workers fetch media with the settings the backend has. The backend started by real gunicorn with
the compose environment says once that it has no file URL secret. The Dockerfile installs what
``pyproject.toml`` declares, a CPU torch that satisfies its pin, runs as a non-root user and has a HEALTHCHECK.
``docker compose config`` runs when the client has the plugin.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import click
import pytest
import yaml

from labelhub.sync.labelstudio import server as labelstudio_server

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
_VAR = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")

# read by libraries the commands use, or by the image itself
EXTERNAL = {"HF_HOME": "huggingface_hub", "HF_ENDPOINT": "huggingface_hub", "HF_TOKEN": "huggingface_hub",
            "PROMETHEUS_MULTIPROC_DIR": "prometheus-client", "LABELHUB_HEALTH_URL": "the Dockerfile's HEALTHCHECK",
            "LABELHUB_CACHE": "labelhub.cache.cache_root (the ONNX exports, the host-wide locks)"}


def env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def interpolate(value, env: dict[str, str]):
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` (the forms the file uses)."""
    if not isinstance(value, str):
        return value

    def one(m):
        name, op, arg = m.group("name"), m.group("op"), m.group("arg")
        if env.get(name):
            return env[name]
        if op in (":?", "?"):
            raise KeyError(f"{name}: {arg}")
        return arg or ""

    return _VAR.sub(one, value)


def labelhub_env_vars() -> set[str]:
    """Every environment variable ``labelhub backend``, ``labelhub sync`` and ``labelhub worker`` read (click
    envvars and the backend's settings object)."""
    from labelhub.backend.settings import Settings
    from labelhub.cli import main

    names = set(Settings.ENV.values())
    for command in ("sync", "backend", "worker"):
        for param in main.get_command(None, command).params:
            envvar = getattr(param, "envvar", None)
            names.update([envvar] if isinstance(envvar, str) else envvar or [])
    return names


def image_env() -> dict[str, str]:
    """The ``ENV`` of the Dockerfile's final stage."""
    env = {}
    for block in re.findall(r"^ENV ((?:.*\\\n)*.*)$", DOCKERFILE, re.M):
        for name, value in re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", block):
            env[name] = value
    return env


def test_compose_file_parses_and_every_variable_is_documented_in_env_example():
    env = env_example()
    used = set()
    for service in COMPOSE["services"].values():
        for value in [*service.get("environment", {}).values(), *service.get("ports", []), service.get("image", "")]:
            used.update(m.group("name") for m in _VAR.finditer(str(value)))
    assert used - set(env) == set(), "variables of docker-compose.yml missing from .env.example"
    assert set(env) - used == set(), ".env.example variables that docker-compose.yml does not use"
    for service in COMPOSE["services"].values():  # every required variable has a value in the example
        for value in service.get("environment", {}).values():
            interpolate(value, env)


def test_compose_services_use_label_studio_1_23_2_and_the_labelhub_image():
    services = COMPOSE["services"]
    assert set(services) == {"label-studio", "backend", "sync", "redis", "worker"}
    assert services["label-studio"]["image"] == f"heartexlabs/label-studio:{labelstudio_server.LS_VERSION}"
    assert services["redis"]["profiles"] == services["worker"]["profiles"] == ["scale"]  # only when asked for
    assert "--appendonly" in services["redis"]["command"]  # the queue and the models survive a Redis restart
    for name in ("backend", "sync", "worker"):
        assert services[name]["build"] == "."
        assert services[name]["image"].startswith("labelhub:")
        assert services[name]["command"] == [name]
    assert services["sync"]["environment"]["LABELHUB_WEBHOOK_URL"] == "http://sync:9091/webhook"
    assert services["backend"]["environment"]["LABEL_STUDIO_URL"] == "http://label-studio:8080"


def test_labelhub_services_set_only_variables_the_commands_read():
    known = labelhub_env_vars() | set(EXTERNAL)
    for name in ("backend", "sync", "worker"):
        env = COMPOSE["services"][name]["environment"]
        assert set(env) - known == set(), f"{name}: variables no LabelHub command reads"
    assert set(image_env()) - known - {"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PIP_NO_CACHE_DIR",
                                       "PIP_DISABLE_PIP_VERSION_CHECK", "HF_HUB_DISABLE_TELEMETRY"} == set()


def service_env(name: str) -> dict[str, str]:
    """The environment a LabelHub service's command sees with ``.env.example`` as shipped: the image's ``ENV``,
    then the service's ``environment`` interpolated."""
    env = env_example()
    return {**image_env(), **{key: interpolate(value, env) for key, value in
                              COMPOSE["services"][name]["environment"].items()}}


def test_each_command_reads_its_service_environment_and_an_empty_value_leaves_its_own_default(monkeypatch):
    """Compose set LABELHUB_REVISION=main, which overrode the sync's default (a local repo's checked-out branch):
    `revision 'main' not found` for a repo on master. An empty value must mean "the command's default"."""
    from labelhub.backend.settings import Settings
    from labelhub.cli import main

    for name in ("backend", "sync", "worker"):
        env = service_env(name)
        with monkeypatch.context() as patched:
            for key in labelhub_env_vars() | set(EXTERNAL):
                patched.delenv(key, raising=False)
            for key, value in env.items():
                patched.setenv(key, value)
            command = main.get_command(None, name)
            params = command.make_context(name, []).params  # parses, as the container's command will
            for param in command.params:
                if isinstance(param.envvar, str) and env.get(param.envvar) == "":
                    assert params[param.name] == param.get_default(click.Context(command)), (name, param.envvar)
        if name != "sync":
            Settings.from_env(env)  # the backend's and the workers' settings parse
    assert service_env("sync")["LABELHUB_REVISION"] == ""  # the sync's own default applies


def test_workers_fetch_media_with_the_settings_the_backend_has():
    """The worker service had neither LABELHUB_SECRET nor LABELHUB_FILE_REPOS: a private or local repo's task,
    whose file is at a signed URL of the backend, failed in a batch on a worker and worked on the backend."""
    from labelhub.backend.settings import Settings

    read = set()
    for module in ("media.py", "files.py"):  # how the backend and the workers' batches read a task's media
        read.update(re.findall(r"settings\.([a-z_]+)", (ROOT / "backend" / module).read_text()))
    variables = {Settings.ENV[field] for field in read if field in Settings.ENV}
    assert {"LABELHUB_SECRET", "LABELHUB_FILE_REPOS", "HF_TOKEN"} <= variables
    backend, worker = COMPOSE["services"]["backend"]["environment"], COMPOSE["services"]["worker"]["environment"]
    for name in sorted(variables & set(backend)):
        assert worker.get(name) == backend[name], f"worker: {name}"


def test_label_studio_gets_token_legacy_api_and_local_network_settings_it_reads():
    env = COMPOSE["services"]["label-studio"]["environment"]
    assert env["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "true"
    assert env["ML_BLOCK_LOCAL_IP"] == "false" and env["SSRF_PROTECTION_ENABLED"] == "false"
    assert env["LABEL_STUDIO_USER_TOKEN"] == "${LABEL_STUDIO_API_KEY:?set LABEL_STUDIO_API_KEY in .env}"
    for name in ("backend", "sync", "worker"):
        assert COMPOSE["services"][name]["environment"]["LABEL_STUDIO_API_KEY"] == env["LABEL_STUDIO_USER_TOKEN"]
    site = labelstudio_server.venv_dir() / "lib"
    sources = list(site.glob("python3*/site-packages/label_studio"))
    if not sources:
        pytest.skip("Label Studio's cached venv is not installed (python -m tests.testbed install)")
    text = "\n".join(p.read_text(errors="replace") for p in sources[0].rglob("*.py") if "/tests/" not in str(p))
    for name in env:  # get_env("X") reads LABEL_STUDIO_X too
        short = name.removeprefix("LABEL_STUDIO_")
        assert re.search(rf"['\"]({name}|{short})['\"]", text), f"Label Studio does not read {name}"


def test_named_volumes_hold_label_studio_data_model_dir_and_sync_state():
    declared = set(COMPOSE["volumes"])
    env = image_env()
    mounts = {}
    for name, service in COMPOSE["services"].items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            assert source in declared, f"{name}: {source} is not a named volume"
            mounts[(name, target)] = source
    assert mounts[("label-studio", "/label-studio/data")] == "label-studio-data"
    assert mounts[("backend", env["MODEL_DIR"])] == "models"
    assert mounts[("sync", str(Path(env["LABELHUB_STATE"]).parent))] == "sync-state"


def test_dockerfile_installs_pyproject_with_cpu_torch_as_non_root_with_healthcheck():
    from packaging.requirements import Requirement

    torch = re.search(r"pip install --index-url https://download\.pytorch\.org/whl/cpu torch==(\S+)", DOCKERFILE)
    assert torch, "torch must come from PyTorch's CPU index"
    pins = {Requirement(r).name: Requirement(r) for r in PYPROJECT["project"]["dependencies"]}
    assert pins["torch"].specifier.contains(torch.group(1)), (torch.group(1), str(pins["torch"]))
    assert re.search(r"^RUN pip install \.(\s|$)", DOCKERFILE, re.M), "the project (and so its dependencies)"
    copied = " ".join(re.findall(r"^COPY (.+)$", DOCKERFILE, re.M))
    for folder in set(PYPROJECT["tool"]["setuptools"]["package-dir"].values()):
        assert f"{folder} " in copied + " "
    for needed in ("pyproject.toml", PYPROJECT["project"]["readme"]):
        assert needed in copied
    ignore = (ROOT / ".dockerignore").read_text().split()
    for needed in ("pyproject.toml", "README.md", "labelhub/", "backend/", "sync/"):
        assert f"!{needed}" in ignore
    users = re.findall(r"^USER (\S+)", DOCKERFILE, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*CMD", DOCKERFILE, re.M | re.S)
    assert "LABELHUB_HEALTH_URL" in DOCKERFILE.split("HEALTHCHECK", 1)[1]
    assert re.search(r'^ENTRYPOINT \["labelhub"\]', DOCKERFILE, re.M)
    assert PYPROJECT["project"]["scripts"]["labelhub"] == "labelhub.cli:main"


def readme_docker() -> str:
    """README.md's "Docker" section."""
    return (ROOT / "README.md").read_text().split("## Docker", 1)[1].split("\n## ", 1)[0]


def readme_env_table() -> dict[str, set[str]]:
    """The rows of the Docker section's table of ``.env`` variables: ``{variable: the services it names}``."""
    table = readme_docker().split("**Every variable of `.env`**", 1)[1]
    rows = {}
    for line in table.splitlines()[3:]:
        if not line.startswith("| `"):
            if rows:
                break
            continue
        variables, _default, services = [cell.strip() for cell in line.strip("|").split(" | ")[:3]]
        for name in re.findall(r"`([A-Z0-9_]+)`", variables):
            rows[name] = set(services.split(", "))
    return rows


def services_using() -> dict[str, set[str]]:
    """``{.env variable: the services of docker-compose.yml whose environment, ports or image interpolate it}``."""
    users: dict[str, set[str]] = {}
    for service_name, service in COMPOSE["services"].items():
        for value in [*service.get("environment", {}).values(), *service.get("ports", []), service.get("image", "")]:
            for m in _VAR.finditer(str(value)):
                users.setdefault(m.group("name"), set()).add(service_name)
    return users


def test_readme_documents_every_variable_of_the_stack():
    docker = readme_docker()
    for name in env_example():
        assert f"`{name}`" in docker, name
    for name in COMPOSE["services"]["label-studio"]["environment"]:
        assert re.search(rf"`{name}[`=]", docker), name


def test_readme_env_table_lists_exactly_the_variables_of_env_example_and_the_services_each_goes_to():
    """The table said LABELHUB_AUTO_PREDICT_INTERVAL reached the backend, which neither .env.example nor compose
    had, and named LABELHUB_LOG_LEVEL's services without the worker."""
    table = readme_env_table()
    assert set(table) - set(env_example()) == set(), "README rows that .env.example does not have"
    assert set(env_example()) - set(table) == set(), ".env.example variables without a README row"
    users = services_using()
    for name, services in table.items():
        assert services == users[name], f"{name}: README says {sorted(services)}, compose: {sorted(users[name])}"


@pytest.mark.skipif(not shutil.which("docker"), reason="no docker client")
def test_docker_compose_config_accepts_the_file(tmp_path):
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the docker client has no compose plugin")
    env_file = tmp_path / ".env"
    env_file.write_text((ROOT / ".env.example").read_text())
    proc = subprocess.run(["docker", "compose", "--env-file", str(env_file), "-f", str(ROOT / "docker-compose.yml"),
                           "config", "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_backend_with_the_compose_environment_says_once_that_it_has_no_file_url_secret(tmp_path):
    """With .env.example as shipped (LABELHUB_SECRET empty, LABELHUB_FILE_REPOS from LABELHUB_REPO) the backend
    warned once from the command and once more from each gunicorn worker, and only that "the file route refuses every
    URL", also for a public Hub repo, which uses none. Now: one line, which says when it matters."""
    import requests

    from tests.backend_fixtures import BackendServer, wait_for

    env = {key: interpolate(value, env_example())
           for key, value in COMPOSE["services"]["backend"]["environment"].items()}
    assert env["LABELHUB_FILE_REPOS"] == "owner/dataset" and env["LABELHUB_SECRET"] == ""
    with BackendServer(tmp_path / "models", workers=2, env=env) as backend:
        answered = set()

        def every_worker_answered() -> bool:
            answered.add(requests.get(backend.url + "/health", timeout=10).json()["pid"])
            return answered == set(backend.worker_pids())

        wait_for(every_worker_answered, timeout=60, interval=0.05, max_interval=0.05,
                 message="both workers to answer /health")
        assert len(answered) == 2
    said = [line for line in backend.log_path.read_text().splitlines() if "LABELHUB_SECRET is not" in line]
    assert len(said) == 1, "\n".join(said)
    assert said[0].endswith(
        "LABELHUB_FILE_REPOS is set (owner/dataset) but LABELHUB_SECRET is not: the file route refuses every file URL, "
        "so a task whose file is at the backend's /files/ URL (a local repo's, a private Hub dataset's) shows no file "
        "and gets no prediction. Set the sync's LABELHUB_SECRET here too; a public Hub dataset's tasks keep the Hub's "
        "URLs and need none"), said[0]
