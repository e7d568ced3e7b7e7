"""A real nginx in front of a local service: deploy/nginx/templates/versus-proxy.conf.template
rendered exactly as the official nginx image renders it in docker-compose.yml (envsubst of
the ``VERSUS_*`` variables only), then run unprivileged on loopback.

Tests and benchmarks (``bench.robustness.worker_kill``, ``bench.robustness.soak``) measure
the deployed proxy configuration, not a look-alike: the same template file, the same
substitution rule, and an ``nginx -p <prefix> -c <rendered> -e stderr -g 'daemon off;'``
command line whose relative paths (pid file, temporary files) all land in a private directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.services import (
    LOOPBACK,
    REPO,
    LocalServiceSettings,
    Service,
    ServiceError,
    free_port,
    start_service,
)
from services import settings as service_settings

TEMPLATE = REPO / "deploy" / "nginx" / "templates" / "versus-proxy.conf.template"
ENVSUBST_FILTER = re.compile(r"^VERSUS_")
"""The image's NGINX_ENVSUBST_FILTER (docker-compose.yml): only these names are substituted."""
DEFAULT_MAX_BODY_BYTES = service_settings.ServiceSettings().max_body_bytes
"""The services' own default VERSUS_MAX_BODY_BYTES (64 MiB)."""
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
_REFERENCE = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_]\w*)\}|(?P<bare>[A-Za-z_]\w*))")


class ProxyError(ServiceError):
    """nginx is missing, refused its configuration, or did not start listening."""


def nginx_binary() -> str | None:
    """The nginx executable (Debian installs it in /usr/sbin, not on a user's PATH)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def render(env: Mapping[str, str], template: str | None = None) -> str:
    """The template with ``$NAME`` / ``${NAME}`` replaced for every ``VERSUS_*`` name in
    ``env`` (envsubst's rule: other ``$names`` are nginx's and stay). A ``VERSUS_*`` name the
    template uses but ``env`` lacks raises KeyError: nginx would only fail later, vaguely."""
    text = TEMPLATE.read_text() if template is None else template
    used = {m["braced"] or m["bare"] for m in _REFERENCE.finditer(text)}
    missing = sorted(n for n in used if ENVSUBST_FILTER.match(n) and n not in env)
    if missing:
        raise KeyError(f"the proxy template needs {', '.join(missing)}")

    def substitute(match: re.Match[str]) -> str:
        name = match["braced"] or match["bare"]
        return env[name] if ENVSUBST_FILTER.match(name) and name in env else match[0]

    return _REFERENCE.sub(substitute, text)


def proxy_env(listen: str, upstream: str, unavailable_file: Path,
              max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> dict[str, str]:
    """The variables the template takes (docker-compose.yml's proxies set the same)."""
    return {"VERSUS_PROXY_LISTEN": listen, "VERSUS_PROXY_UPSTREAM": upstream,
            "VERSUS_PROXY_UNAVAILABLE_FILE": str(unavailable_file),
            "VERSUS_MAX_BODY_BYTES": str(max_body_bytes)}


def _command(nginx: str, prefix: Path, config: Path, *extra: str) -> list[str]:
    # As root, nginx would switch its workers to `nobody`, who cannot enter a private (0700)
    # prefix to spool large bodies: keep them as the user that owns it. (In the image nginx
    # runs as uid 101 throughout, where the `user` directive does not apply.)
    globals_ = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")
    return [nginx, "-p", f"{prefix}/", "-c", str(config), "-e", "stderr", "-g", globals_,
            *extra]


def write_config(workdir: Path, env: Mapping[str, str]) -> Path:
    """Render into ``workdir/versus-proxy.conf`` and return its path."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "versus-proxy.conf"
    config.write_text(render(env))
    return config


def check_config(config: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` on a rendered configuration (returncode 0 = valid)."""
    nginx = nginx_binary()
    if nginx is None:
        raise ProxyError("nginx is not installed (apt-get install nginx)")
    return subprocess.run(_command(nginx, prefix, config, "-t"), capture_output=True,
                          text=True, timeout=30)


@dataclass
class Proxy:
    """One running nginx (its own process group) in front of ``upstream``."""

    url: str
    upstream: str
    unavailable_file: Path
    """While this file exists the proxy answers 503 without asking the upstream."""
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGQUIT (graceful: nginx finishes open requests), SIGKILL after a timeout."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT_S)
        return self.process.returncode


def start_proxy(upstream: str, workdir: Path, *, port: int | None = None,
                unavailable_file: Path | None = None,
                max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> Proxy:
    """nginx on ``127.0.0.1:port`` (default: a free one) proxying to ``upstream``
    (``host:port``); returns once it accepts connections. ``unavailable_file``: the
    service's ``VERSUS_UNAVAILABLE_FILE`` (None: a path nothing writes, so the proxy never
    learns that no worker is ready and waits on gunicorn's backlog instead)."""
    nginx = nginx_binary()
    if nginx is None:
        raise ProxyError("nginx is not installed (apt-get install nginx)")
    port = port or free_port()
    prefix = workdir / f"nginx-{port}"
    unavailable_file = unavailable_file or prefix / "no-unavailable-file"
    config = write_config(prefix, proxy_env(f"{LOOPBACK}:{port}", upstream, unavailable_file,
                                            max_body_bytes))
    checked = check_config(config, prefix)
    if checked.returncode != 0:
        raise ProxyError(f"nginx -t refused {config}:\n{checked.stderr}")
    log_path = prefix / "nginx.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(_command(nginx, prefix, config), stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    proxy = Proxy(f"http://{LOOPBACK}:{port}", upstream, unavailable_file, process, log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ProxyError(f"nginx exited with {process.returncode}:\n{proxy.log()}")
        try:
            socket.create_connection((LOOPBACK, port), timeout=1).close()
            return proxy
        except OSError:
            time.sleep(0.05)
    proxy.stop()
    raise ProxyError(f"nginx not listening on {port} after {START_TIMEOUT_S} s:\n{proxy.log()}")


@contextlib.contextmanager
def proxied_service(framework: str, model_dir: Path, workdir: Path,
                    settings: LocalServiceSettings, *, proxy: bool = True,
                    ready_timeout_s: float = 300.0,
                    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                    ) -> Iterator[tuple[Service, Proxy | None]]:
    """A ready gunicorn service and, with ``proxy``, the nginx in front of it, wired as in
    docker-compose.yml (the service's VERSUS_UNAVAILABLE_FILE is what the proxy checks);
    both are stopped on exit."""
    marker = workdir / f"{framework}.unavailable"
    service = start_service(framework, model_dir, workdir, settings,
                            env={"VERSUS_UNAVAILABLE_FILE": str(marker)})
    front = None
    try:
        service.wait_ready(ready_timeout_s)
        if proxy:
            front = start_proxy(service.url.removeprefix("http://"), workdir,
                                unavailable_file=marker, max_body_bytes=max_body_bytes)
        yield service, front
    finally:
        if front is not None:
            front.stop()
        service.stop()
