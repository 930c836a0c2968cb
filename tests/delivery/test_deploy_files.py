"""Checks on the delivery files: Dockerfile, .dockerignore, Compose, Cloud Build,
the GitHub workflow and docs/DEPLOY.md.

Nothing here needs a Docker engine or a Google Cloud project. The YAML files are
validated against the JSON schemas that check-jsonschema vendors (offline), the
Dockerfile's HEALTHCHECK command is run against a local HTTP server, the Cloud
Build deploy script runs under bash with a stub `gcloud`, and
`docker compose config` runs when a Compose v2 client is installed.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"
CLOUDBUILD = ROOT / "cloudbuild.yaml"
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
DEPLOY_DOC = ROOT / "docs" / "DEPLOY.md"

# The secrets the brief requires on Cloud Run, and the Secret Manager names
# cloudbuild.yaml and docs/DEPLOY.md agree on.
REQUIRED_SECRETS = {
    "DATABASE_URL": "accessai-database-url",
    "JWT_SECRET": "accessai-jwt-secret",
    "GOOGLE_CLIENT_SECRET": "accessai-google-client-secret",
    "STRIPE_SECRET_KEY": "accessai-stripe-secret-key",
    "STRIPE_WEBHOOK_SECRET": "accessai-stripe-webhook-secret",
}

STRIPE_EVENTS = [
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
    "charge.refunded",
    "charge.dispute.created",
]


def load_yaml(path: Path) -> dict[Any, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.name} is not a YAML mapping"
    return data


# --------------------------------------------------------------------------
# YAML files: parse, and match their published schemas
# --------------------------------------------------------------------------

SCHEMAS = {
    COMPOSE: "vendor.compose-spec",
    CLOUDBUILD: "vendor.cloudbuild",
    WORKFLOW: "vendor.github-workflows",
}


@pytest.mark.parametrize("path", list(SCHEMAS), ids=lambda p: p.name)
def test_yaml_file_parses(path: Path) -> None:
    assert load_yaml(path)


@pytest.mark.parametrize("path", list(SCHEMAS), ids=lambda p: p.name)
def test_yaml_file_matches_its_schema(path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", SCHEMAS[path], str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------

Instruction = dict[str, Any]


def dockerfile_stages() -> list[list[Instruction]]:
    """Instructions grouped by build stage (each list starts with its FROM)."""
    stages: list[list[Instruction]] = []
    for instruction in DockerfileParser(str(DOCKERFILE)).structure:
        if instruction["instruction"] == "FROM":
            stages.append([])
        if stages and instruction["instruction"] != "COMMENT":
            stages[-1].append(instruction)
    assert stages, "Dockerfile has no FROM"
    return stages


def values(stage: list[Instruction], name: str) -> list[str]:
    return [str(i["value"]) for i in stage if i["instruction"] == name]


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for value in values(stage, "ENV"):
        for item in shlex.split(value):
            key, _, val = item.partition("=")
            env[key] = val
    return env


def test_dockerfile_is_multi_stage_with_pinned_uv() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    builder = stages[0]
    copies = values(builder, "COPY")
    assert any(
        re.fullmatch(r"--from=ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+ /uv /uvx /bin/", c)
        for c in copies
    ), "the builder must copy uv from a pinned ghcr.io/astral-sh/uv:X.Y.Z image"
    env = env_of(builder)
    assert env.get("UV_COMPILE_BYTECODE") == "1"
    assert env.get("UV_LINK_MODE") == "copy"
    runs = " ".join(values(builder, "RUN"))
    assert "uv sync --frozen --no-dev --no-editable" in runs
    assert "--mount=type=cache,target=/root/.cache/uv" in runs


def final_base_image() -> str:
    """The final stage's base image, with global ARG defaults expanded."""
    parser = DockerfileParser(str(DOCKERFILE))
    global_args: dict[str, str] = {}
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            break
        if instruction["instruction"] == "ARG":
            name, _, default = str(instruction["value"]).partition("=")
            global_args[name] = default
    image = values(dockerfile_stages()[-1], "FROM")[0].split()[0]
    return re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], image)


def test_final_stage_holds_only_the_venv_and_runs_as_non_root() -> None:
    assert re.fullmatch(r"python:3\.1[1-3]-slim(-\w+)?", final_base_image())
    final = dockerfile_stages()[-1]
    copies = values(final, "COPY") + values(final, "ADD")
    assert copies, "the final stage copies nothing"
    for copy in copies:
        assert copy.startswith("--from=builder "), (
            f"final stage copies from the build context: {copy}"
        )
        assert "/app/.venv" in copy
    users = values(final, "USER")
    assert users, "the final stage has no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_no_env_file_or_whole_context_is_copied() -> None:
    for stage in dockerfile_stages():
        for copy in values(stage, "COPY") + values(stage, "ADD"):
            parts = [p for p in shlex.split(copy) if not p.startswith("--")]
            sources = parts[:-1]
            for source in sources:
                assert not Path(source).name.startswith(".env"), copy
                assert source not in {".", "./", "*"}, f"copies the whole build context: {copy}"


def test_entry_command_is_exec_form_accessai_serve_and_honours_port() -> None:
    final = dockerfile_stages()[-1]
    assert not values(final, "ENTRYPOINT") or all(
        v.startswith("[") for v in values(final, "ENTRYPOINT")
    )
    cmd = json.loads(values(final, "CMD")[-1])  # exec form is a JSON array
    assert cmd[:2] == ["accessai", "serve"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert "--port" not in cmd, "a fixed --port would override $PORT from Cloud Run"
    assert env_of(final).get("PORT") == "8080"
    assert "8080" in values(final, "EXPOSE")


def healthcheck_command() -> list[str]:
    final = dockerfile_stages()[-1]
    (healthcheck,) = values(final, "HEALTHCHECK")
    _, _, command = healthcheck.partition("CMD ")
    parsed = json.loads(command)
    assert isinstance(parsed, list)
    return [str(part) for part in parsed]


def test_healthcheck_probes_health_live_without_curl() -> None:
    command = healthcheck_command()
    assert command[0] == "python"
    assert "/health/live" in " ".join(command)
    assert not {"curl", "wget"} & set(command)


class _HealthHandler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/health/live" else 404
        self.send_response(code)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[http.server.HTTPServer, type[_HealthHandler]]]:
    handler = type("Handler", (_HealthHandler,), {"status": 200})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_command_follows_the_server(
    health_server: tuple[http.server.HTTPServer, type[_HealthHandler]], status: int, healthy: bool
) -> None:
    server, handler = health_server
    handler.status = status
    command = [sys.executable, *healthcheck_command()[1:]]
    env = {**os.environ, "PORT": str(server.server_address[1])}
    result = subprocess.run(command, env=env, capture_output=True, timeout=30)
    assert (result.returncode == 0) is healthy, result.stderr


# --------------------------------------------------------------------------
# .dockerignore
# --------------------------------------------------------------------------


def dockerignore_patterns() -> tuple[set[str], set[str]]:
    """(excluded, re-included) patterns, normalised to plain relative names."""
    excluded: set[str] = set()
    included: set[str] = set()
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        target = included if line.startswith("!") else excluded
        name = line.lstrip("!").strip("/")
        name = name.removeprefix("**/")
        target.add(name)
    return excluded, included


@pytest.mark.parametrize(
    "name", [".env", ".git", ".venv", "node_modules", "data", "tests", ".pytest_cache"]
)
def test_dockerignore_keeps_out(name: str) -> None:
    excluded, included = dockerignore_patterns()
    assert name in excluded
    assert name not in included


@pytest.mark.parametrize("name", ["pyproject.toml", "uv.lock", "README.md", "src"])
def test_dockerignore_keeps_what_the_build_needs(name: str) -> None:
    excluded, _ = dockerignore_patterns()
    assert name not in excluded
    assert "*" not in excluded, "a bare * needs explicit re-includes; keep the deny list"


# --------------------------------------------------------------------------
# docker-compose.yml
# --------------------------------------------------------------------------


def test_compose_services_health_checks_and_start_order() -> None:
    compose = load_yaml(COMPOSE)
    services = compose["services"]
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"], f"{name} has no healthcheck"

    migrate = services["migrate"]
    assert migrate["command"][-3:] == ["accessai", "db", "upgrade"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate.get("restart") == "no"

    app = services["app"]
    assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert app["depends_on"]["redis"]["condition"] == "service_healthy"
    assert app["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert app["environment"]["MIGRATE_ON_START"] == "false"
    assert app["environment"]["DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert "@postgres:5432/" in app["environment"]["DATABASE_URL"]
    assert app["environment"]["REDIS_URL"].startswith("redis://redis:6379")
    assert any(str(port).endswith(":8080") for port in app["ports"])
    assert migrate["image"] == app["image"]


def test_compose_reads_dotenv_and_keeps_postgres_data_in_a_named_volume() -> None:
    compose = load_yaml(COMPOSE)
    services = compose["services"]
    for name in ("app", "migrate"):
        env_files = services[name]["env_file"]
        assert any(entry["path"] == ".env" for entry in env_files)
    volume = services["postgres"]["volumes"][0]
    name, _, target = volume.partition(":")
    assert target == "/var/lib/postgresql/data"
    assert name in compose["volumes"]


def compose_command() -> list[str] | None:
    """`docker compose` (v2 plugin) or a standalone v2 `docker-compose`, if present."""
    candidates: list[list[str]] = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for command in candidates:
        try:
            probe = subprocess.run(
                [*command, "version"], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0 and re.search(r"v?2\.\d+", probe.stdout):
            return command
    return None


def run_compose_config(
    tmp_path: Path, extra_env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    command = compose_command()
    if command is None:
        pytest.skip("no Docker Compose v2 client on this machine")
    env = {k: v for k, v in os.environ.items() if k not in {"POSTGRES_PASSWORD", "JWT_SECRET"}}
    env.update(extra_env)
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")
    return subprocess.run(
        [
            *command,
            "--project-directory",
            str(ROOT),
            "-f",
            str(COMPOSE),
            "--env-file",
            str(empty_env_file),
            "config",
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_docker_compose_config_validates(tmp_path: Path) -> None:
    result = run_compose_config(tmp_path, {"POSTGRES_PASSWORD": "test", "JWT_SECRET": "test"})
    assert result.returncode == 0, result.stderr


def test_docker_compose_requires_the_secrets(tmp_path: Path) -> None:
    result = run_compose_config(tmp_path, {})
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr or "JWT_SECRET" in result.stderr


# --------------------------------------------------------------------------
# cloudbuild.yaml
# --------------------------------------------------------------------------

CLOUD_BUILD_BUILTINS = {
    "PROJECT_ID",
    "PROJECT_NUMBER",
    "BUILD_ID",
    "LOCATION",
    "TRIGGER_NAME",
    "COMMIT_SHA",
    "REVISION_ID",
    "SHORT_SHA",
    "REPO_NAME",
    "REPO_FULL_NAME",
    "BRANCH_NAME",
    "TAG_NAME",
    "REF_NAME",
    "TRIGGER_BUILD_CONFIG_PATH",
    "SERVICE_ACCOUNT_EMAIL",
    "SERVICE_ACCOUNT",
}
# `$$` is Cloud Build's escape for a literal `$`; everything else is a substitution.
SUBSTITUTION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def strings_in(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings_in(value)


def substitute(text: str, values: dict[str, str]) -> str:
    """Cloud Build's substitution, as it applies it to steps and images."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return values[match.group(1) or match.group(2)]

    return SUBSTITUTION.sub(replace, text)


def resolved_substitutions(config: dict[str, Any], **overrides: str) -> dict[str, str]:
    values = {
        "PROJECT_ID": "demo-project",
        "PROJECT_NUMBER": "123456789012",
        "COMMIT_SHA": "0123456789abcdef0123456789abcdef01234567",
    }
    defaults = {key: str(value) for key, value in config["substitutions"].items()}
    defaults.update(overrides)
    # Dynamic substitutions: defaults may refer to each other and to built-ins.
    pending = dict(defaults)
    for _ in range(len(pending) + 1):
        for key, value in list(pending.items()):
            try:
                values[key] = substitute(value, values)
            except KeyError:
                continue
            del pending[key]
    assert not pending, f"unresolvable substitutions: {sorted(pending)}"
    return values


def steps_by_id(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["id"]: step for step in config["steps"]}


def image_tag(config: dict[str, Any]) -> str:
    build = steps_by_id(config)["build"]
    tags = [arg.split("=", 1)[1] for arg in build["args"] if arg.startswith("--tag=")]
    assert len(tags) == 1
    return str(tags[0])


def test_cloudbuild_steps_run_build_push_migrate_deploy_in_order() -> None:
    config = load_yaml(CLOUDBUILD)
    ids = [step["id"] for step in config["steps"]]
    assert ids == ["build", "push", "migrate", "deploy"]
    steps = steps_by_id(config)
    assert steps["build"]["args"][0] == "build"
    assert steps["push"]["args"] == ["push", image_tag(config)]
    assert config["options"]["logging"]
    assert config["substitutions"]["_REGION"]
    assert config["substitutions"]["_REPOSITORY"]


def test_cloudbuild_uses_artifact_registry_not_container_registry() -> None:
    config = load_yaml(CLOUDBUILD)
    tag = image_tag(config)
    assert tag == "${_REGION}-docker.pkg.dev/$PROJECT_ID/${_REPOSITORY}/accessai:$COMMIT_SHA"
    assert config["images"] == [tag]
    # Google's own builder images may live on gcr.io; our image never does.
    for step in config["steps"]:
        for text in strings_in({k: v for k, v in step.items() if k != "name"}):
            assert "gcr.io" not in text, text


def test_cloudbuild_references_only_known_substitutions() -> None:
    config = load_yaml(CLOUDBUILD)
    known = CLOUD_BUILD_BUILTINS | set(config["substitutions"])
    used: set[str] = set()
    for text in strings_in({k: v for k, v in config.items() if k != "substitutions"}):
        used |= {
            m.group(1) or m.group(2) for m in SUBSTITUTION.finditer(text) if m.group(0) != "$$"
        }
    assert used <= known, f"Cloud Build would reject unknown substitutions: {sorted(used - known)}"
    unused = {key for key in config["substitutions"] if key not in used}
    referenced_by_defaults = {
        m.group(1) or m.group(2)
        for value in config["substitutions"].values()
        for m in SUBSTITUTION.finditer(str(value))
        if m.group(0) != "$$"
    }
    assert unused <= referenced_by_defaults, (
        f"unused substitutions: {sorted(unused - referenced_by_defaults)}"
    )


def test_cloudbuild_migrates_with_a_cloud_run_job_on_the_new_image() -> None:
    config = load_yaml(CLOUDBUILD)
    args = steps_by_id(config)["migrate"]["args"]
    assert args[:3] == ["run", "jobs", "deploy"]
    for flag in (
        "--execute-now",
        "--wait",
        "--command=accessai",
        "--args=db,upgrade",
        "--max-retries=0",
    ):
        assert flag in args
    assert f"--image={image_tag(config)}" in args
    assert any(a.startswith("--set-cloudsql-instances=") for a in args)
    secrets = next(a for a in args if a.startswith("--set-secrets="))
    assert f"DATABASE_URL={REQUIRED_SECRETS['DATABASE_URL']}:latest" in secrets


def run_deploy_script(tmp_path: Path, **overrides: str) -> list[str]:
    """Run the deploy step's bash script with a stub gcloud; return gcloud's argv."""
    config = load_yaml(CLOUDBUILD)
    step = steps_by_id(config)["deploy"]
    assert step["entrypoint"] == "bash"
    script = substitute(step["args"][-1], resolved_substitutions(config, **overrides))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    argv_file = tmp_path / "argv"
    stub = bin_dir / "gcloud"
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{argv_file}"\n')
    stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", *step["args"][:-1], script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return argv_file.read_text().splitlines()


def flag_value(argv: list[str], flag: str) -> str:
    values = [arg.split("=", 1)[1] for arg in argv if arg.startswith(f"{flag}=")]
    assert len(values) == 1, f"{flag} given {len(values)} times"
    return values[0]


def parse_gcloud_dict(value: str) -> dict[str, str]:
    """gcloud's dict flag syntax, with the optional ^DELIM^ prefix (gcloud topic escaping)."""
    delimiter = ","
    match = re.match(r"\^([^^]+)\^", value)
    if match:
        delimiter, value = match.group(1), value[match.end() :]
    return dict(item.split("=", 1) for item in value.split(delimiter))


def test_cloudbuild_deploy_step_configures_the_service(tmp_path: Path) -> None:
    argv = run_deploy_script(tmp_path)
    assert argv[:3] == ["run", "deploy", "accessai"]
    assert flag_value(argv, "--image") == (
        "europe-west1-docker.pkg.dev/demo-project/accessai/accessai:0123456789abcdef0123456789abcdef01234567"
    )
    assert (
        flag_value(argv, "--service-account")
        == "accessai-runtime@demo-project.iam.gserviceaccount.com"
    )
    assert flag_value(argv, "--add-cloudsql-instances") == "demo-project:europe-west1:accessai-db"
    assert flag_value(argv, "--vpc-connector")
    assert flag_value(argv, "--port") == "8080"

    secrets = parse_gcloud_dict(flag_value(argv, "--set-secrets"))
    for variable, secret in REQUIRED_SECRETS.items():
        assert secrets[variable] == f"{secret}:latest"
    assert "OPENAI_API_KEY" not in secrets

    env = parse_gcloud_dict(flag_value(argv, "--set-env-vars"))
    assert env["ENVIRONMENT"] == "production"
    assert env["MIGRATE_ON_START"] == "false"
    assert env["PUBLIC_BASE_URL"] == "https://accessai-123456789012.europe-west1.run.app"
    assert env["REDIS_URL"].startswith("redis://")
    assert "PORT" not in env, "Cloud Run sets PORT itself"
    assert not set(env) & set(REQUIRED_SECRETS), "secrets must not be plain environment variables"
    # Optional settings left empty are not passed at all.
    assert "CORS_ORIGINS" not in env
    assert "SENTRY_DSN" not in env
    # The pools of all instances fit PostgreSQL's default max_connections (100).
    pools = int(env["DB_POOL_SIZE"]) + int(env["DB_MAX_OVERFLOW"])
    assert int(flag_value(argv, "--max-instances")) * pools <= 100


def test_cloudbuild_deploy_step_passes_values_with_commas_and_optional_secrets(
    tmp_path: Path,
) -> None:
    origins = "https://app.example.com,https://www.example.com"
    argv = run_deploy_script(
        tmp_path,
        _CORS_ORIGINS=origins,
        _GOOGLE_CLIENT_ID="abc.apps.googleusercontent.com",
        _AI_ENGINE="openai",
        _METRICS_TOKEN_SECRET="true",
    )
    env = parse_gcloud_dict(flag_value(argv, "--set-env-vars"))
    assert env["CORS_ORIGINS"] == origins
    assert env["GOOGLE_CLIENT_ID"] == "abc.apps.googleusercontent.com"
    assert env["AI_ENGINE"] == "openai"
    secrets = parse_gcloud_dict(flag_value(argv, "--set-secrets"))
    assert secrets["OPENAI_API_KEY"] == "accessai-openai-api-key:latest"
    assert secrets["METRICS_TOKEN"] == "accessai-metrics-token:latest"


@pytest.mark.parametrize(
    "role",
    [
        "roles/run.admin",
        "roles/iam.serviceAccountUser",
        "roles/artifactregistry.writer",
        "roles/secretmanager.secretAccessor",
        "roles/cloudsql.client",
    ],
)
def test_iam_roles_are_documented(role: str) -> None:
    assert role in CLOUDBUILD.read_text()
    assert role in DEPLOY_DOC.read_text()


# --------------------------------------------------------------------------
# .github/workflows/ci.yml
# --------------------------------------------------------------------------


def workflow() -> dict[Any, Any]:
    data = load_yaml(WORKFLOW)
    # YAML 1.1 reads the bare key `on` as boolean true.
    if True in data:
        data["on"] = data.pop(True)
    return data


def test_workflow_triggers_permissions_and_concurrency() -> None:
    wf = workflow()
    assert "pull_request" in wf["on"]
    assert wf["on"]["push"]["branches"] == ["main"]
    assert wf["permissions"] == {"contents": "read"}
    assert wf["concurrency"]["cancel-in-progress"] is True
    for job in wf["jobs"].values():
        assert "write" not in json.dumps(job.get("permissions", {}))


def test_workflow_runs_ci_script_against_postgres_and_redis_services() -> None:
    jobs = workflow()["jobs"]
    (job,) = [j for j in jobs.values() if any(".ci/run" in s.get("run", "") for s in j["steps"])]
    services = job["services"]
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    for service in services.values():
        assert "--health-cmd" in service["options"]
    env = job["env"]
    assert env["CI"] == "true"
    assert env["ACCESSAI_REQUIRE_SERVICES"] == "1"
    # The URLs point at the service containers (by name inside a job container,
    # on localhost through published ports otherwise).
    postgres_host = re.search(r"@([^:/]+)", env["ACCESSAI_TEST_POSTGRES_URL"])
    redis_host = re.search(r"//([^:/]+)", env["ACCESSAI_TEST_REDIS_URL"])
    assert postgres_host
    assert redis_host
    if "container" in job:
        assert postgres_host.group(1) == "postgres"
        assert redis_host.group(1) == "redis"
    else:
        assert postgres_host.group(1) == "127.0.0.1"
        assert redis_host.group(1) == "127.0.0.1"
        assert "5432:5432" in services["postgres"]["ports"]
        assert "6379:6379" in services["redis"]["ports"]
    assert env["ACCESSAI_TEST_POSTGRES_URL"].startswith("postgresql+asyncpg://")


def test_workflow_builds_the_image_with_cache_and_no_push() -> None:
    jobs = workflow()["jobs"]
    builds = [
        step
        for job in jobs.values()
        for step in job["steps"]
        if str(step.get("uses", "")).startswith("docker/build-push-action@")
    ]
    assert len(builds) == 1
    options = builds[0]["with"]
    assert options["push"] is False
    assert options["cache-from"].startswith("type=gha")
    assert options["cache-to"].startswith("type=gha")


# --------------------------------------------------------------------------
# docs/DEPLOY.md agrees with the files it describes
# --------------------------------------------------------------------------


def test_deploy_doc_names_the_workflow_jobs_as_required_checks() -> None:
    text = DEPLOY_DOC.read_text()
    assert "Require status checks" in text
    for job_id, job in workflow()["jobs"].items():
        assert f"`{job.get('name', job_id)}`" in text


def test_deploy_doc_creates_the_secrets_cloud_build_mounts() -> None:
    text = DEPLOY_DOC.read_text()
    mounted = set(re.findall(r"accessai-[a-z-]+(?=:latest)", CLOUDBUILD.read_text()))
    created = set(re.findall(r"put_secret (accessai-[a-z-]+)", text))
    assert mounted == created
    assert set(REQUIRED_SECRETS.values()) <= mounted


def test_deploy_doc_covers_oauth_stripe_and_cloud_sql() -> None:
    text = DEPLOY_DOC.read_text()
    assert "https://YOUR-SERVICE-URL/auth/callback" in text
    assert "https://YOUR-SERVICE-URL/payments/webhook" in text
    for event in STRIPE_EVENTS:
        assert f"`{event}`" in text
    assert "postgresql+asyncpg://USER:PASS@/DB?host=/cloudsql/PROJECT:REGION:INSTANCE" in text
    assert "docker compose up" in text
    assert "4242 4242 4242 4242" in text
