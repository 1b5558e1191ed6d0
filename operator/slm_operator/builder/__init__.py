"""Pure builders: SLMDeployment (+ its rollout status) → Serve config and KubeRay RayService."""
