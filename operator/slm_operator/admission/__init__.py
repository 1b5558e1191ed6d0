"""The validating admission webhook: kopf's admission server runs the same `validate_object` as
`slm validate` on every CREATE and UPDATE of an SLMDeployment, so `kubectl apply` lists every problem.

- `review`: the decision, pure (which errors deny a request; metadata-only updates always pass).
- `certificates`: a self-signed serving certificate made with `cryptography`, where cert-manager is not
  used (kopf's own generator needs certbuilder/oscrypto, which fail on OpenSSL 3).
- `webhook`: the kopf registration, the HTTPS server and the caBundle of the chart's
  ValidatingWebhookConfiguration.
"""
