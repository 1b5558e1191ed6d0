"""slm-operator, the Kubernetes side: the SLMDeployment API, the pure RayService builder, the rollout
state machine and the kopf operator that carries them out. Never imports Ray or vLLM."""
