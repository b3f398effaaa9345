"""Manage a running TorchServe: ``python -m handlers.manage COMMAND`` (list, describe, register, ...).

A thin client of TorchServe's REST management API that reads the management token from the key
file TorchServe wrote at start-up, so nobody copies tokens by hand. The usual roll-out of a new
model, without downtime::

    make archive MAR_NAME=detector-v2 MAR_VERSION=2.0       # model_store/detector-v2.mar
    python -m handlers.manage register detector-v2.mar      # version 2.0 beside 1.0, workers started
    python -m handlers.manage set-default detector 2.0      # /predictions/detector now answers with 2.0
    python -m handlers.manage unregister detector 1.0       # when 1.0 is no longer wanted

Each command prints TorchServe's JSON answer and exits 1 when TorchServe refuses.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Literal

import httpx
from pydantic import BaseModel, Field
from pydantic_settings import CliApp, CliPositionalArg, CliSubCommand

from detector.settings import tool_config
from handlers.config import ConnectionSettings


class ManagementError(RuntimeError):
    """TorchServe answered a management call with an error status."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"TorchServe answered {status}: {body}")
        self.status, self.body = status, body


class TorchServeManager:
    """The management API calls this project uses, with the management token attached."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self.client = httpx.Client(
            base_url=settings.management_url,
            headers={"Authorization": f"Bearer {settings.token('management')}"},
            timeout=settings.timeout,
        )

    def _call(self, method: str, path: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        response = self.client.request(method, path, params=query, headers=headers)
        try:
            body = response.json()
        except ValueError:
            body = response.text.strip()
        if response.status_code >= 400:
            raise ManagementError(response.status_code, body)
        return body

    def list(self) -> Any:
        return self._call("GET", "/models")

    def describe(self, name: str, version: str | None = None) -> Any:
        """Every version's workers, batch settings and status (``version``: one of them, or ``all``)."""
        return self._call("GET", f"/models/{name}/{version or 'all'}")

    def register(self, archive: str, workers: int = 1) -> Any:
        """Register an archive from the model store by file name; returns once its workers are up."""
        return self._call("POST", "/models", url=archive, initial_workers=workers, synchronous="true")

    def set_default(self, name: str, version: str) -> Any:
        return self._call("PUT", f"/models/{name}/{version}/set-default")

    def scale(self, name: str, min_workers: int, max_workers: int | None = None, version: str | None = None) -> Any:
        path = f"/models/{name}" + (f"/{version}" if version else "")
        return self._call(
            "PUT", path, min_worker=min_workers, max_worker=max_workers or min_workers, synchronous="true"
        )

    def unregister(self, name: str, version: str) -> Any:
        return self._call("DELETE", f"/models/{name}/{version}")

    def refresh_token(self, kind: str, api_key: str) -> Any:
        """A new management or inference key, written by TorchServe into its key file (needs the API key)."""
        return self._call("POST", "/token", headers={"Authorization": f"Bearer {api_key}"}, type=kind)

    def close(self) -> None:
        self.client.close()


class _Command(BaseModel):
    def run(self, manager: TorchServeManager) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError


class ListModels(_Command):
    """List the registered models."""

    def run(self, manager: TorchServeManager) -> Any:
        return manager.list()


class Describe(_Command):
    """Describe a model's versions: workers, batch size, batch delay, default version."""

    name: CliPositionalArg[str] = Field(description="model name")
    version: str | None = Field(None, description="one version (default: all)")

    def run(self, manager: TorchServeManager) -> Any:
        return manager.describe(self.name, self.version)


class Register(_Command):
    """Register an archive from the model store (by file name, e.g. detector-v2.mar)."""

    archive: CliPositionalArg[str] = Field(description="a .mar file name in TorchServe's model store")
    workers: int = Field(1, ge=1, description="workers to start before returning")

    def run(self, manager: TorchServeManager) -> Any:
        return manager.register(self.archive, self.workers)


class SetDefault(_Command):
    """Make a version the one /predictions/NAME answers with."""

    name: CliPositionalArg[str] = Field(description="model name")
    version: CliPositionalArg[str] = Field(description="registered version")

    def run(self, manager: TorchServeManager) -> Any:
        return manager.set_default(self.name, self.version)


class Scale(_Command):
    """Set a model version's worker count (min and max)."""

    name: CliPositionalArg[str] = Field(description="model name")
    min_workers: int = Field(ge=0, description="workers to keep running")
    max_workers: int | None = Field(None, ge=1, description="upper bound (default: min-workers)")
    version: str | None = Field(None, description="version (default: the default version)")

    def run(self, manager: TorchServeManager) -> Any:
        return manager.scale(self.name, self.min_workers, self.max_workers, self.version)


class Unregister(_Command):
    """Unregister one version of a model (not its default version while others remain)."""

    name: CliPositionalArg[str] = Field(description="model name")
    version: CliPositionalArg[str] = Field(description="registered version")

    def run(self, manager: TorchServeManager) -> Any:
        return manager.unregister(self.name, self.version)


class RefreshToken(_Command):
    """Replace the management or inference key before it expires (token_expiration_min)."""

    kind: CliPositionalArg[Literal["management", "inference"]] = Field(description="which key to replace")

    def run(self, manager: TorchServeManager) -> Any:
        return manager.refresh_token(self.kind, manager.settings.token("API"))


class ManageSettings(ConnectionSettings):
    """``python -m handlers.manage``: TorchServe's management API, with the token from its key file."""

    model_config = tool_config(prog="python -m handlers.manage", populate_by_name=True)

    list: CliSubCommand[ListModels]
    describe: CliSubCommand[Describe]
    # ``register`` would shadow ABCMeta.register: the field has another name and the command keeps its own
    register_: CliSubCommand[Register] = Field(alias="register")
    set_default: CliSubCommand[SetDefault]
    scale: CliSubCommand[Scale]
    unregister: CliSubCommand[Unregister]
    refresh_token: CliSubCommand[RefreshToken]


def main(argv: list[str] | None = None) -> int:
    settings = CliApp.run(ManageSettings, cli_args=argv)
    command = next(
        (
            getattr(settings, name)
            for name in ManageSettings.model_fields
            if isinstance(getattr(settings, name), _Command)
        ),
        None,
    )
    if command is None:
        print(
            "error: name a command: list, describe, register, set-default, scale, unregister, refresh-token",
            file=sys.stderr,
        )
        return 2
    manager = TorchServeManager(settings)
    try:
        print(json.dumps(command.run(manager), indent=2))
    except ManagementError as error:
        print(json.dumps(error.body, indent=2), file=sys.stderr)
        return 1
    except httpx.HTTPError as error:
        print(f"error: no answer from TorchServe at {settings.management_url}: {error}", file=sys.stderr)
        return 1
    finally:
        manager.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
