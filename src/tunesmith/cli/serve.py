"""``tunesmith serve``: the Bedrock-compatible job service."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from tunesmith.cli.options import DEVICE_HELP
from tunesmith.jobs.logs import LOG_LEVELS
from tunesmith.jobs.settings import DATABASE_URL_VARIABLE, DEFAULT_LEASE_SECONDS, DEFAULT_REGION
from tunesmith.models.config import home as default_home


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback by default; expose deliberately.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--home", "home_dir", type=click.Path(path_type=str), help="Jobs, models and database (default: TUNESMITH_HOME/service).")
@click.option("--database", envvar=DATABASE_URL_VARIABLE, show_envvar=True, metavar="URL",
              help="SQLAlchemy URL (default: SQLite in --home; postgresql+psycopg://... with tunesmith[postgres] lets several "
              "servers share jobs). Give a URL with a password through the environment or --database-url-file: "
              "a command line is visible to every user in ps.")
@click.option("--database-url-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A file whose first line is the database URL (e.g. a mounted secret).")
@click.option("--node-name", envvar="TUNESMITH_NODE_NAME", show_envvar=True,
              help="This machine in job claims (default: the hostname); give each machine sharing a database its own.")
@click.option("--lease-seconds", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_LEASE_SECONDS, show_default=True,
              envvar="TUNESMITH_LEASE_SECONDS", help="A job whose server stops renewing its lease for this long is taken over "
              "by another server sharing the database (resumed from its last checkpoint).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where jobs train: local worker processes on this machine, or tasks on a Ray cluster (tunesmith[ray]).")
@click.option("--ray-address", envvar="RAY_ADDRESS", show_envvar=True, metavar="ADDRESS",
              help="With --executor ray: auto (the cluster `ray start` runs here), HOST:PORT, ray://HOST:10001, or local "
              "(a Ray instance started by the server, unless one runs here already).")
@click.option("--ray-cpus-per-job", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="With --executor ray: the CPUs each job's task asks for (GPUs: the job's tunesmithConfig.devices, when the "
              "cluster has GPUs).")
@click.option("--allow-path", "allowed", multiple=True, type=click.Path(path_type=str), help="A local folder jobs may read data from and write outputs to (repeatable).")
@click.option("--concurrency", type=click.IntRange(1), help="Jobs trained at once (default: one per CUDA device in --devices, else 1; "
              "with --executor ray, as many as the cluster's GPUs, else its CPUs, fit).")
@click.option("--devices", "devices_text", default="auto", show_default=True, metavar="DEVICES",
              help="What jobs train on: auto (every CUDA device, else MPS, else the CPU), cpu, mps, cuda, or CUDA devices "
              "such as cuda:0,cuda:1. Each worker sees its job's devices through CUDA_VISIBLE_DEVICES; one per job unless "
              "the request's tunesmithConfig.devices asks for more.")
@click.option("--jobs-per-device", "jobs_per_device_text", default="auto", show_default=True, metavar="auto|N",
              help="Jobs that may train on one CUDA device at once; queued LoRA jobs on the same base model that start "
              "together train in one process over one copy of the base. auto: as many as the device's memory holds "
              "(up to 8) on CUDA, 1 on the CPU and MPS. On the CPU, N > 1 groups up to N jobs the same way.")
@click.option("--device", default="auto", show_default=True, metavar="DEVICE", help="Runtime API (Converse, InvokeModel). " + DEVICE_HELP)
@click.option("--credentials", "credential_items", multiple=True, envvar="TUNESMITH_CREDENTIALS",
              help="ACCESS_KEY:SECRET; when given, requests must be SigV4-signed with one of them (repeatable).")
@click.option("--region", default=DEFAULT_REGION, show_default=True, help="The region signatures must be scoped to.")
@click.option("--allow-unsigned-payload", is_flag=True, help="Accept X-Amz-Content-SHA256: UNSIGNED-PAYLOAD (bodies are then not authenticated).")
@click.option("--save-every", type=click.IntRange(1), help="Workers also checkpoint every N optimizer steps (always at each epoch end).")
@click.option("--model-cache-gb", type=click.FloatRange(min=0, min_open=True), default=20.0, show_default=True,
              help="Disk for custom models the runtime API downloads from S3 (trained on another host); least recently used go first.")
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default="info", show_default=True,
              help="What the server logs to stderr: info has one access line per request and each job's lifecycle; "
              "debug adds more. Workers log to their job's log file at the same level.")
def serve(host: str, port: int, home_dir: str | None, database: str | None, database_url_file: Path | None, node_name: str | None,
          lease_seconds: float, executor: str, ray_address: str | None, ray_cpus_per_job: float,
          allowed: tuple[str, ...], concurrency: int | None,
          devices_text: str, jobs_per_device_text: str, device: str, credential_items: tuple[str, ...], region: str, allow_unsigned_payload: bool,
          save_every: int | None, model_cache_gb: float, log_level: str) -> None:
    """Serve Bedrock's model-customization and runtime APIs; jobs train in worker processes.

    Turn on --credentials whenever the port is reachable by anyone but you.
    """
    import uvicorn

    from tunesmith.api.auth import parse_credentials
    from tunesmith.cli.errors import user_errors
    from tunesmith.cli.render import fail
    from tunesmith.jobs.device_pool import DevicePool, jobs_per_device, parse_devices
    from tunesmith.jobs.executors import make_executor
    from tunesmith.jobs.logs import configure_logging, safe_database_url
    from tunesmith.jobs.settings import ServiceSettings
    from tunesmith.server import create_app

    try:
        credentials = parse_credentials(list(credential_items))
    except ValueError as exc:
        fail(str(exc), 2)
    if host not in ("127.0.0.1", "localhost", "::1") and not credentials:
        click.echo(f"warning: serving on {host} without --credentials: anyone who reaches the port can use it", err=True)

    database = database_url(database, database_url_file)
    if executor == "ray" and jobs_per_device_text not in ("auto", "1"):
        fail("--jobs-per-device above 1 works with the local executor only, not with --executor ray yet", 2)
    if executor == "ray" and not ray_address:
        fail("--executor ray needs --ray-address (or RAY_ADDRESS): auto, HOST:PORT, ray://HOST:10001 or local", 2)
    with user_errors():
        devices = parse_devices(devices_text)
        per_device = 1 if executor == "ray" and jobs_per_device_text == "auto" else jobs_per_device(jobs_per_device_text, devices)
        pool = DevicePool(devices, per_device)
        settings = ServiceSettings(
            home=Path(home_dir) if home_dir else default_home() / "service", database_url=database,
            allowed_roots=[str(Path(p).resolve()) for p in allowed] or [str(Path.cwd())],
            concurrency=concurrency or (len(devices) * per_device if pool.exclusive else per_device), devices=devices, device=device,
            jobs_per_device=per_device,
            credentials=credentials, region=region, allow_unsigned_payload=allow_unsigned_payload, save_every=save_every,
            log_level=log_level, model_cache_gb=model_cache_gb, lease_seconds=lease_seconds,
            executor=executor, ray_address=ray_address, ray_cpus_per_job=ray_cpus_per_job,
            **({"node_name": node_name} if node_name else {}),
        )
        configure_logging(log_level)
        runner = make_executor(settings)
        if executor == "ray" and concurrency is None:
            settings.concurrency = runner.default_concurrency()
        app = create_app(settings, runner)
    where = f"Ray cluster {ray_address}" if executor == "ray" else ", ".join(settings.devices)
    log = logging.getLogger("tunesmith.service")
    log.info("tunesmith serve on http://%s:%d: home %s, database %s, %d job(s) at once on %s (%d per device), signatures %s",
             host, port, settings.home, safe_database_url(settings.database_url), settings.concurrency, where, settings.jobs_per_device,
             f"required ({len(credentials)} access key(s))" if credentials else "off")
    # Our access lines replace uvicorn's (they have the duration and the route); uvicorn's own
    # start-up and error lines follow --log-level too.
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


def database_url(database: str | None, url_file: Path | None) -> str | None:
    """The URL from --database, its environment variable, or --database-url-file; a warning when a
    password came on the command line (every user sees it in ps)."""
    from sqlalchemy.engine import make_url

    from tunesmith.cli.render import fail

    on_command_line = click.get_current_context().get_parameter_source("database") is click.core.ParameterSource.COMMANDLINE
    if url_file is not None:
        if database and on_command_line:
            fail("give the database URL once: --database or --database-url-file", 2)
        lines = url_file.read_text(encoding="utf-8").strip().splitlines()
        if not lines:
            fail(f"{url_file}: empty; expected a database URL on its first line", 2)
        return lines[0].strip()
    if database and on_command_line:
        try:
            password = make_url(database).password
        except Exception:  # not a URL: the store says so
            password = None
        if password:
            click.echo(f"warning: the database password on the command line is visible to every user in ps; "
                       f"set {DATABASE_URL_VARIABLE} or use --database-url-file", err=True)
    return database
