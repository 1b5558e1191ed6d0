"""kopf wiring of the validating webhook: registered only when `SLM_WEBHOOK_PORT` is set.

The chart owns the ValidatingWebhookConfiguration (`failurePolicy: Ignore`, `timeoutSeconds` 5 by
default): an operator outage never blocks writes; objects admitted meanwhile are still checked by the
operator itself on each new generation (the InvalidSpec condition). With a self-signed certificate the
operator writes its CA into that configuration's caBundle at start; with cert-manager, cert-manager does.
"""

from __future__ import annotations

import base64
import datetime
import logging
import tempfile
from pathlib import Path
from typing import Any

import kopf
import kubernetes

from slm_operator.admission.certificates import CertificateFiles, write_self_signed
from slm_operator.admission.review import admission_errors, denial_message
from slm_operator.api import models
from slm_operator.settings import OperatorSettings

HANDLER_ID = "validate-slmdeployment"
"""Also the URL path kopf serves it at (`/validate-slmdeployment`), which the chart's configuration names."""

logger = logging.getLogger(__name__)


def register_admission(registry: kopf.OperatorRegistry, settings: OperatorSettings, api_client: Any) -> None:
    """The admission server (started by kopf) and the validating handler, on `registry`."""

    @kopf.on.startup(registry=registry)
    def start_admission_server(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
        settings.admission.server = build_webhook_server(memo.settings, api_client)

    @kopf.on.validate(
        models.GROUP,
        models.VERSION,
        models.PLURAL,
        id=HANDLER_ID,
        registry=registry,
        operations=["CREATE", "UPDATE"],
        ignore_failures=True,
    )
    def validate(body: kopf.Body, **kwargs: Any) -> None:
        old, operation = kwargs.get("old"), kwargs.get("operation") or ""
        errors = admission_errors(operation, dict(body), dict(old) if old else None)
        if errors:
            raise kopf.AdmissionError(denial_message(errors), code=422)


def build_webhook_server(settings: OperatorSettings, api_client: Any) -> kopf.WebhookServer:
    """kopf's HTTPS server on `webhook_port`, with cert-manager's files or a fresh self-signed pair."""
    if settings.webhook_cert_dir:
        directory = Path(settings.webhook_cert_dir)
        files = CertificateFiles(directory / "tls.crt", directory / "tls.key")
    else:
        hosts = [h for h in (settings.webhook_host, "localhost", "127.0.0.1") if h]
        directory = Path(tempfile.mkdtemp(prefix="slm-webhook-"))
        files = write_self_signed(directory, hosts, datetime.datetime.now(datetime.UTC))
        if settings.webhook_configuration:
            publish_ca_bundle(api_client, settings.webhook_configuration, files.ca_bundle)
    return kopf.WebhookServer(
        addr=settings.webhook_addr,
        port=settings.webhook_port,
        host=settings.webhook_host or None,
        certfile=str(files.certfile),
        pkeyfile=str(files.pkeyfile),
    )


def publish_ca_bundle(api_client: Any, configuration: str, ca_bundle: bytes) -> None:
    """Write our CA into the chart's ValidatingWebhookConfiguration (its only webhook). A failure is
    logged, not fatal: the API server then cannot reach the webhook and, failing open, admits writes."""
    patch = [{"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": base64.b64encode(ca_bundle).decode()}]
    try:
        kubernetes.client.AdmissionregistrationV1Api(api_client).patch_validating_webhook_configuration(
            configuration, patch, _request_timeout=10
        )
    except kubernetes.client.exceptions.ApiException as error:
        logger.error("could not set the caBundle of %s: %s %s", configuration, error.status, error.reason)
