"""The one module that talks to the Kubernetes API: typed calls, and API errors translated into
`NotFoundError`, `ConflictError`, `RejectedError` and `TransientError` (5xx, 429, timeouts, refused connections)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kubernetes
import urllib3

from slm_operator.api import models
from slm_operator.settings import OperatorSettings

RAY_GROUP, RAY_VERSION, RAY_PLURAL = "ray.io", "v1", "rayservices"


class KubeError(Exception):
    """An API call failed; `status` is the HTTP status (0 when no answer came)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class NotFoundError(KubeError):
    pass


class ConflictError(KubeError):
    """409: stale resourceVersion, or the object already exists."""


class RejectedError(KubeError):
    """422/400: the API server rejected the object (a builder bug, never retried blindly)."""


class TransientError(KubeError):
    """5xx, 429, timeouts, refused or dropped connections: retry with backoff."""


def translate(call: Callable[[], object]) -> dict[str, Any]:
    """Run one API call; its JSON answer (an object or a Status) as a dict, errors translated."""
    try:
        answer = call()
        return answer if isinstance(answer, dict) else {}
    except kubernetes.client.ApiException as e:
        status = int(e.status or 0)
        message = f"{status} {e.reason}: {(e.body or '')[:500]}"
        if status == 404:
            raise NotFoundError(message, status) from e
        if status == 409:
            raise ConflictError(message, status) from e
        if status in (400, 422):
            raise RejectedError(message, status) from e
        if status in (0, 429) or status >= 500:
            raise TransientError(message, status) from e
        raise KubeError(message, status) from e
    except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as e:
        raise TransientError(f"no answer from the API server: {e}") from e


def build_api_client(settings: OperatorSettings) -> kubernetes.client.ApiClient:
    """In-cluster config, else kubeconfig; `SLM_KUBE_SERVER` overrides both (tests)."""
    if settings.kube_server:
        config = kubernetes.client.Configuration(host=settings.kube_server)
    else:
        config = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_incluster_config(client_configuration=config)  # type: ignore[no-untyped-call]
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config(client_configuration=config)  # type: ignore[no-untyped-call]
    config.retries = 0  # retries are ours (kopf's backoff), not urllib3's silent ones
    config.connection_pool_maxsize = 32
    return kubernetes.client.ApiClient(config)


def _raw(body: dict[str, Any]) -> Any:
    """A JSON body for the typed core/networking clients, which send a dict as it is."""
    return body


class KubeApi:
    """SLMDeployments and what they own (RayService, NetworkPolicy, the Ray pods' ServiceAccount, the
    Ray token Secret), and the IPs of their Ray pods; nothing else. Secrets are only ever created."""

    def __init__(self, client: kubernetes.client.ApiClient, settings: OperatorSettings) -> None:
        self._client = client
        self._core = kubernetes.client.CoreV1Api(client)
        self._objects = kubernetes.client.CustomObjectsApi(client)
        self._networking = kubernetes.client.NetworkingV1Api(client)
        self._timeout = settings.request_timeout_seconds
        self._manager = settings.field_manager

    @property
    def client(self) -> kubernetes.client.ApiClient:
        """The API client, for the few calls outside this class (the webhook's caBundle)."""
        return self._client

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any]:
        return translate(
            lambda: self._objects.get_namespaced_custom_object(
                models.GROUP, models.VERSION, namespace, models.PLURAL, name, _request_timeout=self._timeout
            )
        )

    def patch_deployment_status(
        self, namespace: str, name: str, status: dict[str, Any], *, resource_version: str | None
    ) -> str | None:
        """Merge-patch `status` through the status subresource (the spec is never written), only if the
        object is still at `resource_version`: else ConflictError (409), and the caller re-reads. Returns
        the object's new resourceVersion."""
        metadata = {"resourceVersion": resource_version} if resource_version else {}
        written = translate(
            lambda: self._objects.patch_namespaced_custom_object_status(
                models.GROUP,
                models.VERSION,
                namespace,
                models.PLURAL,
                name,
                {"metadata": metadata, "status": status},
                field_manager=self._manager,
                _request_timeout=self._timeout,
            )
        )
        version = written.get("metadata", {}).get("resourceVersion")
        return str(version) if version is not None else None

    def remove_deployment_annotation(self, namespace: str, name: str, key: str) -> None:
        """Merge-patch one annotation away (metadata only; the spec is never written)."""
        translate(
            lambda: self._objects.patch_namespaced_custom_object(
                models.GROUP,
                models.VERSION,
                namespace,
                models.PLURAL,
                name,
                {"metadata": {"annotations": {key: None}}},
                field_manager=self._manager,
                _request_timeout=self._timeout,
            )
        )

    def create_event(self, body: dict[str, Any]) -> None:
        """Post one core/v1 Event (see `events.build_event`)."""
        self._create(self._core.create_namespaced_event, body)

    def get_rayservice(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return translate(
                lambda: self._objects.get_namespaced_custom_object(
                    RAY_GROUP, RAY_VERSION, namespace, RAY_PLURAL, name, _request_timeout=self._timeout
                )
            )
        except NotFoundError:
            return None

    def create_rayservice(self, body: dict[str, Any]) -> dict[str, Any]:
        namespace = body["metadata"]["namespace"]
        return translate(
            lambda: self._objects.create_namespaced_custom_object(
                RAY_GROUP,
                RAY_VERSION,
                namespace,
                RAY_PLURAL,
                body,
                field_manager=self._manager,
                _request_timeout=self._timeout,
            )
        )

    def replace_rayservice(self, body: dict[str, Any]) -> dict[str, Any]:
        """PUT with `metadata.resourceVersion`: fails with ConflictError if someone wrote in between."""
        meta = body["metadata"]
        return translate(
            lambda: self._objects.replace_namespaced_custom_object(
                RAY_GROUP,
                RAY_VERSION,
                meta["namespace"],
                RAY_PLURAL,
                meta["name"],
                body,
                field_manager=self._manager,
                _request_timeout=self._timeout,
            )
        )

    def _create(self, create: Callable[..., Any], body: dict[str, Any]) -> None:
        """`create(namespace, body)` of a typed client, its answer not kept: the typed model of the answer is
        never built, and the connection goes back to the pool."""

        def unread() -> None:
            response = create(
                body["metadata"]["namespace"],
                _raw(body),
                field_manager=self._manager,
                _request_timeout=self._timeout,
                _preload_content=False,
            )
            response.read()
            response.release_conn()

        translate(unread)

    def _plain(self, call: Callable[[], object]) -> dict[str, Any]:
        """A typed-client call's answer as the JSON dict the API server sent."""
        return translate(lambda: self._client.sanitize_for_serialization(call()))  # type: ignore[no-untyped-call]

    def get_service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._plain(
                lambda: self._core.read_namespaced_service_account(name, namespace, _request_timeout=self._timeout)
            )
        except NotFoundError:
            return None

    def create_service_account(self, body: dict[str, Any]) -> None:
        self._create(self._core.create_namespaced_service_account, body)

    def create_secret(self, body: dict[str, Any]) -> bool:
        """Create a Secret; False when one of that name exists already. Nothing of the answer is kept:
        the operator may create Secrets but never read them."""
        try:
            self._create(self._core.create_namespaced_secret, body)
        except ConflictError:
            return False
        return True

    def get_network_policy(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._plain(
                lambda: self._networking.read_namespaced_network_policy(name, namespace, _request_timeout=self._timeout)
            )
        except NotFoundError:
            return None

    def create_network_policy(self, body: dict[str, Any]) -> None:
        self._create(self._networking.create_namespaced_network_policy, body)

    def replace_network_policy(self, body: dict[str, Any]) -> dict[str, Any]:
        """PUT with `metadata.resourceVersion`: fails with ConflictError if someone wrote in between."""
        meta = body["metadata"]
        return self._plain(
            lambda: self._networking.replace_namespaced_network_policy(
                meta["name"], meta["namespace"], _raw(body), field_manager=self._manager, _request_timeout=self._timeout
            )
        )
