"""slm-operator, the Ray Serve side: the OpenAI-compatible router, the per-revision vLLM applications,
the queue-depth autoscaling policy and the embedded local runtime. Never imports Kubernetes code."""
