"""`slm`: validate and render SLMDeployments, serve one locally, run the operator."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console

from slm_operator.api.crd import render_crd_yaml
from slm_operator.api.models import SLMDeployment, SLMDeploymentStatus
from slm_operator.api.validation import InvalidSpecError, parse_deployment, validate_object
from slm_operator.builder.rayservice import build_rayservice
from slm_operator.yamlio import dump_yaml
from slm_serving.config import FrontEnd

app = typer.Typer(
    help="slm-operator: small language models on Kubernetes (KubeRay + Ray Serve + vLLM).",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True, soft_wrap=True)

FileArg = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="SLMDeployment YAML")]


def _documents(path: Path) -> Iterator[tuple[int, Any]]:
    """The YAML documents of a file with their index, skipping empty ones."""
    with path.open() as stream:
        for index, document in enumerate(yaml.safe_load_all(stream)):
            if document is not None:
                yield index, document


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="YAML files")]) -> None:
    """Check SLMDeployment YAML offline as `kubectl apply` would: schema, CEL rules, admission webhook.
    Every error of every document is listed, each with its field path."""
    failed = False
    for path in files:
        try:
            documents = list(_documents(path))
        except yaml.YAMLError as error:
            console.print(f"[red]✗[/red] {path}: not valid YAML: {error}")
            failed = True
            continue
        for index, document in documents:
            errors = validate_object(document)
            where = f"{path}" if len(documents) == 1 else f"{path}#{index}"
            if errors:
                failed = True
                for problem in errors:
                    console.print(f"[red]✗[/red] {where}: {problem}")
            else:
                console.print(f"[green]✓[/green] {where}")
    if failed:
        raise typer.Exit(code=1)


def load_deployment(path: Path, namespace: str = "default", *, local: bool = False) -> SLMDeployment:
    """The single SLMDeployment in a file, validated (`local`: for `slm serve`); exits with the errors
    otherwise."""
    documents = [d for _, d in _documents(path)]
    if len(documents) != 1:
        console.print(f"[red]✗[/red] {path}: expected one SLMDeployment, found {len(documents)} documents")
        raise typer.Exit(code=1)
    errors = validate_object(documents[0], local=local)
    if errors:
        for problem in errors:
            console.print(f"[red]✗[/red] {path}: {problem}")
        raise typer.Exit(code=1)
    try:
        deployment = parse_deployment(documents[0], local=local)
    except InvalidSpecError as error:  # pragma: no cover - validate_object already reported these
        console.print(f"[red]✗[/red] {path}: {error}")
        raise typer.Exit(code=1) from error
    deployment.metadata.setdefault("namespace", namespace)
    return deployment


def load_status(path: Path) -> SLMDeploymentStatus:
    """An SLMDeployment's status from a file: `kubectl get slmd NAME -o yaml` output, or the status alone."""
    document = yaml.safe_load(path.read_text())
    if isinstance(document, dict) and document.get("kind") == "SLMDeployment":
        document = document.get("status") or {}
    try:
        return SLMDeploymentStatus.model_validate(document)
    except ValidationError as error:
        for problem in error.errors():
            where = ".".join(str(p) for p in problem["loc"])
            console.print(f"[red]✗[/red] {path}: status.{where}: {problem['msg']}")
        raise typer.Exit(code=1) from error


@app.command()
def render(
    file: FileArg,
    namespace: Annotated[str, typer.Option(help="Namespace when the file names none.")] = "default",
    status: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="A status (e.g. `kubectl get slmd NAME -o yaml`): render the RayService at that point of a "
            "rollout, with its revisions, weights and worker groups.",
        ),
    ] = None,
) -> None:
    """Print the KubeRay RayService the operator would create for FILE (at the rollout point of --status)."""
    deployment = load_deployment(file, namespace)
    if status is not None:
        deployment = deployment.model_copy(update={"status": load_status(status)})
    sys.stdout.write(dump_yaml(build_rayservice(deployment)))


@app.command()
def serve(
    file: FileArg,
    port: Annotated[int, typer.Option(help="Port of the OpenAI API on localhost.")] = 8000,
    front_end: Annotated[
        FrontEnd,
        typer.Option(
            case_sensitive=False, help="What takes the HTTP requests: HAProxy (fastest), or Ray Serve's Python proxy."
        ),
    ] = FrontEnd.HAPROXY,
) -> None:
    """Serve FILE on this machine (own local Ray, vLLM), rolling out every edit to it. No Kubernetes.
    Exits 1 when Serve gives up starting the model (the reason is printed), 0 on Ctrl-C or SIGTERM."""
    load_deployment(file, local=True)  # report a bad file before starting anything
    from slm_operator.embedded import serve_file

    console = Console(soft_wrap=True)  # one line per message, for logs
    code = serve_file(file, port=port, front_end=front_end, console=console)
    if code:
        raise typer.Exit(code)


@app.command()
def operator() -> None:
    """Run the operator (settings from SLM_* environment variables; see slm_operator.settings)."""
    from slm_operator.runner import run_operator
    from slm_operator.settings import OperatorSettings

    run_operator(OperatorSettings())


@app.command()
def crd() -> None:
    """Print the SLMDeployment CustomResourceDefinition."""
    sys.stdout.write(render_crd_yaml())


@app.command()
def plan(
    file: FileArg,
    trace: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="CSV of arrivals: timestamp[,prompt_tokens,output_tokens]."),
    ] = None,
    hours: Annotated[float, typer.Option(min=0.01, max=168, help="Simulated hours.")] = 24.0,
    gpu_type: Annotated[
        str | None, typer.Option(help="GPU type (default: each spec's acceleratorType, else NVIDIA-L4).")
    ] = None,
    rps: Annotated[
        float | None, typer.Option(min=0, help="Mean requests/s without a trace (default: half of maxReplicas busy).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the simulated arrivals.")] = 0,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Simulate FILE's SLMDeployments on modelled GPUs: SLO, GPU-hours, cost, rollouts, ours vs baselines."""
    deployments = []
    for index, document in _documents(file):
        errors = validate_object(document, local=True)
        for problem in errors:
            console.print(f"[red]✗[/red] {file}#{index}: {problem}")
        if errors:
            raise typer.Exit(code=1)
        deployments.append(parse_deployment(document, local=True))
    if not deployments:
        console.print(f"[red]✗[/red] {file}: no SLMDeployment")
        raise typer.Exit(code=1)
    try:
        from slm_operator.sim.plan import build_plan, plan_json, print_plan
    except ModuleNotFoundError as error:
        if error.name != "numpy":
            raise
        console.print(
            "[red]✗[/red] slm plan needs the simulator's extra (numpy): "
            "pip install 'slm-operator\\[sim]' (the operator image ships it)"
        )
        raise typer.Exit(code=2) from error

    try:
        result = build_plan(deployments, hours=hours, gpu_type=gpu_type, trace=trace, rps=rps, seed=seed)
    except ValueError as error:
        console.print(f"[red]✗[/red] {error}")
        raise typer.Exit(code=1) from error
    if json_output:
        sys.stdout.write(json.dumps(plan_json(result), indent=2) + "\n")
    else:
        print_plan(result, Console())


if __name__ == "__main__":  # `python -m slm_operator.cli`, as the `slm` script
    app()
