"""The SLMDeployment API: typed models, the CRD generated from them, offline validation, revisions."""
