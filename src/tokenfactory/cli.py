"""The `tokenfactory` command: parse, call library code, print. Errors become one line."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.exceptions import Abort, TyperException

from tokenfactory import cli_bench, cli_floor, render, render_plan, render_sim, report_files
from tokenfactory.catalog import load_catalog
from tokenfactory.config import load_scenario
from tokenfactory.economics import evaluate, run_scenarios
from tokenfactory.economics.query import parse_query, resolve
from tokenfactory.errors import BadInput, TokenfactoryError, UnknownId
from tokenfactory.perf.efficiency import efficiency_for, efficiency_path
from tokenfactory.perf.measurements import load_measurements
from tokenfactory.perf.store import write_efficiency
from tokenfactory.sched import POLICIES
from tokenfactory.sim.build import build
from tokenfactory.sim.calibrate import fit as fit_efficiency
from tokenfactory.sim.calibrate import report as calibration_report
from tokenfactory.sim.frontier import default_concurrency, parse_concurrency
from tokenfactory.sim.frontier import sweep as sweep_frontier
from tokenfactory.sim.plan import load_demand
from tokenfactory.sim.plan import search as search_fleets
from tokenfactory.sim.run import simulate as run_simulation
from tokenfactory.sim.tier_pnl import with_tier_costs

app = typer.Typer(
    help="Run an AI inference fleet as a token factory: plan it, serve it, keep its books.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
catalog_app = typer.Typer(help="List the catalog, or show one entry.", invoke_without_command=True)
app.add_typer(catalog_app, name="catalog")
app.add_typer(cli_floor.keys_app, name="keys")
app.command()(cli_floor.serve)
app.command()(cli_floor.report)
app.command()(cli_bench.bench)

CatalogFile = Annotated[
    Path | None,
    typer.Option("--catalog", help="TOML file whose entries add to or override the catalog."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def _out() -> Console:
    return Console(soft_wrap=True)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=_json_default))


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


@catalog_app.callback()
def catalog_list(
    ctx: typer.Context, catalog: CatalogFile = None, as_json: JsonFlag = False
) -> None:
    """List GPUs, models, tiers and energy defaults."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = catalog
        return
    cat = load_catalog(catalog)
    if as_json:
        _print_json(render.catalog_json(cat))
    else:
        render.catalog_tables(_out(), cat)


@catalog_app.command("show")
def catalog_show(
    ctx: typer.Context,
    entry_id: Annotated[str, typer.Argument(metavar="ID", help="A GPU, model or tier id.")],
    as_json: JsonFlag = False,
) -> None:
    """Show one catalog entry with the source of its figures."""
    entry = load_catalog(ctx.obj).entry(entry_id)
    if as_json:
        _print_json(entry.model_dump(mode="json"))
    else:
        render.entry(_out(), entry)


@app.command()
def cost(
    gpu: Annotated[str, typer.Option(help="GPU id from the catalog.")],
    gpus: Annotated[int, typer.Option(help="Number of GPUs.")] = 1,
    tokens_per_s_per_gpu: Annotated[
        float | None, typer.Option(help="Output tokens/s per GPU when busy.")
    ] = None,
    tokens_per_s: Annotated[
        float | None, typer.Option(help="Output tokens/s of all the GPUs together.")
    ] = None,
    utilization: Annotated[float, typer.Option(help="Share of time the GPUs are busy.")] = 1.0,
    rent_per_gpu_hour: Annotated[float | None, typer.Option(help="Rent, $/GPU-hour.")] = None,
    capex_per_gpu: Annotated[float | None, typer.Option(help="Owned: price per GPU, $.")] = None,
    years: Annotated[float | None, typer.Option(help="Owned: amortisation years.")] = None,
    pue: Annotated[float | None, typer.Option(help="Power usage effectiveness.")] = None,
    electricity_per_kwh: Annotated[float | None, typer.Option(help="Owned: $/kWh.")] = None,
    kw_per_gpu: Annotated[
        float | None, typer.Option(help="All-in provisioned kW per GPU (facility included).")
    ] = None,
    ops_per_gpu_hour: Annotated[float | None, typer.Option(help="Owned: $/GPU-hour.")] = None,
    model: Annotated[str | None, typer.Option(help="Model id: its list price is sold.")] = None,
    tier: Annotated[str | None, typer.Option(help="Tier whose price ratio applies.")] = None,
    price_in: Annotated[float | None, typer.Option(help="$ per 1M input tokens.")] = None,
    price_cached_in: Annotated[
        float | None, typer.Option(help="$ per 1M cached input tokens.")
    ] = None,
    price_out: Annotated[float | None, typer.Option(help="$ per 1M output tokens.")] = None,
    input_per_output: Annotated[
        float | None, typer.Option(help="Input tokens sold per output token.")
    ] = None,
    cached_share: Annotated[float, typer.Option(help="Share of input that is cached.")] = 0.0,
    scenarios: Annotated[
        bool, typer.Option("--scenarios", help="Move one input at a time.")
    ] = False,
    catalog: CatalogFile = None,
    as_json: JsonFlag = False,
) -> None:
    """What a token costs and earns on a set of GPUs: the production function."""
    flags = {k: v for k, v in locals().items() if k not in {"scenarios", "catalog", "as_json"}}
    query = parse_query(**{k: _exact(v) for k, v in flags.items()})
    factory, filled = resolve(query, load_catalog(catalog))
    if scenarios and factory.prices is None:
        raise BadInput("--scenarios needs prices: give --model or --price-in/--price-out")
    pnl = evaluate(factory)
    moves = run_scenarios(factory) if scenarios else None
    if as_json:
        _print_json(render.cost_json(factory, pnl, filled, moves))
    else:
        render.cost_tables(_out(), factory, pnl, filled, moves)


@app.command()
def simulate(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML file.")],
    policy: Annotated[
        str | None, typer.Option(help="fcfs | priority | value (default: the file's).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: the file's).")] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder to write summary.json, PNG charts and report.html into."),
    ] = None,
    catalog: CatalogFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Simulate a fleet serving a workload: latency, service levels, tokens and money."""
    cat = load_catalog(catalog)
    if policy is not None and policy not in POLICIES:
        raise UnknownId("policy", policy, POLICIES, param="--policy")
    setup, _ = build(load_scenario(scenario, cat), cat, policy=policy, seed=seed)
    if out is not None:
        report_files.check_out(out)
    result = run_simulation(setup)
    summary = with_tier_costs(result.summary, result.fleet.outcomes, setup.replicas)
    title = f"{scenario.name}: {setup.replicas} replica(s), policy {setup.policy}"
    if as_json:
        _print_json(summary)
    else:
        render_sim.simulation(_out(), summary, title)
    if out is not None:
        files = report_files.write_simulation(out, summary, result.fleet.outcomes, setup, title)
        for path in files:
            print(f"wrote {path}", file=sys.stderr)


@app.command()
def calibrate(
    measurements: Annotated[
        Path | None, typer.Option(help="Measurements TOML (default: the built-in set).")
    ] = None,
    engine: Annotated[
        str | None, typer.Option(help="Engine kind whose parameters to fit (default: trtllm).")
    ] = None,
    from_run: Annotated[
        Path | None,
        typer.Option("--from", help="Fit on a `bench --out` folder: the run's engine kind."),
    ] = None,
    to: Annotated[
        Path | None, typer.Option(help="Also write the fitted parameters to this TOML file.")
    ] = None,
    report: Annotated[
        bool, typer.Option("--report", help="Only compare predictions with measurements.")
    ] = False,
    write: Annotated[
        bool, typer.Option("--write", help="Store the fitted parameters as the new defaults.")
    ] = False,
    iterations: Annotated[int, typer.Option(help="Fit iterations.")] = 60,
    catalog: CatalogFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Fit the performance model to measurements, or report how far it is from them."""
    cat = load_catalog(catalog)
    if from_run is not None:
        found = cli_bench.run_measurements(from_run)
        engine = engine or found[0].engine
    else:
        engine = engine or "trtllm"
        found = load_measurements(measurements)
    rows = [m for m in found if m.engine == engine]
    if not rows:
        raise BadInput(f"no measurements of engine {engine!r}", param="--engine")
    eff = efficiency_for(engine)
    if not report:
        eff = fit_efficiency(rows, eff, cat, iterations=iterations, latency_weight=1.0)
        source = f"fitted by tokenfactory calibrate on {len(rows)} measurements"
        if from_run is not None:
            source = f"fitted by tokenfactory calibrate --from {from_run}"
        if write:
            write_efficiency(efficiency_path(), engine, eff, source)
        if to is not None:
            cli_bench.write_parameters(to, engine, eff, source)
    predictions, medians = calibration_report(rows, eff, cat)
    if as_json:
        _print_json(
            {
                "engine": engine,
                "parameters": asdict(eff),
                "rows": [
                    {
                        "row": p.measurement.row,
                        "label": p.measurement.label,
                        "measured": asdict(p.measurement),
                        "predicted_output_tokens_per_s": p.output_tokens_per_s,
                        "predicted_ttft_ms_mean": p.ttft_ms_mean,
                        "predicted_tpot_ms_mean": p.tpot_ms_mean,
                        "errors": p.errors(),
                    }
                    for p in predictions
                ],
                "median_abs_error": medians,
            }
        )
        return
    render_sim.calibration(_out(), predictions, medians)
    print(f"parameters ({engine}): {eff}")


@app.command()
def frontier(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML file.")],
    concurrency: Annotated[
        str | None,
        typer.Option(help="Client counts, e.g. 1,4,16 (default: powers of two up to 2 x slots)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder to write frontier.json and frontier.png into.")
    ] = None,
    catalog: CatalogFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Sweep closed-loop clients: tokens/s per GPU against tokens/s per user, and the cost."""
    cat = load_catalog(catalog)
    loaded = load_scenario(scenario, cat)
    setup, _ = build(loaded, cat)
    levels = parse_concurrency(concurrency) if concurrency else default_concurrency(setup)
    result = sweep_frontier(loaded, setup, levels)
    title = render_plan.frontier_title(loaded.scenario)
    if as_json:
        _print_json(result.to_json())
    else:
        render_plan.frontier_table(_out(), result, title)
    for path in render_plan.write_frontier(out, result, title) if out else []:
        print(f"wrote {path}", file=sys.stderr)


@app.command()
def plan(
    demand: Annotated[
        Path, typer.Argument(help="Demand TOML: a scenario with [search] instead of [hardware].")
    ],
    out: Annotated[
        Path | None,
        typer.Option(help="Folder to write plan.json, PNG charts and report.html into."),
    ] = None,
    catalog: CatalogFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Search GPU kinds, counts, tensor parallel and policies for the most profitable fleet."""
    cat = load_catalog(catalog)
    wanted = load_demand(demand, cat)
    if out is not None:
        report_files.check_out(out)
    result = search_fleets(wanted, cat)
    if as_json:
        _print_json(render_plan.plan_json(result))
    else:
        render_plan.plan_tables(_out(), result)
    if out is not None:
        for path in report_files.write_plan(out, wanted, cat, result, f"Plan: {demand.name}"):
            print(f"wrote {path}", file=sys.stderr)


@app.command()
def twin(
    gpu: Annotated[str, typer.Option(help="GPU id from the catalog.")],
    model: Annotated[str, typer.Option(help="Model id from the catalog.")],
    precision: Annotated[str, typer.Option(help="Weights: bf16 | fp8 | fp4.")] = "bf16",
    engine: Annotated[str, typer.Option(help="Engine kind whose speed and batching to copy.")] = (
        "vllm"
    ),
    tensor_parallel: Annotated[int, typer.Option(help="GPUs per replica.")] = 1,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8100,
    speedup: Annotated[float, typer.Option(help="Run this many times faster than real.")] = 1.0,
    max_num_seqs: Annotated[
        int | None, typer.Option(help="Sequences in a batch (default: the engine's).")
    ] = None,
    max_batched_tokens: Annotated[
        int | None, typer.Option(help="Tokens in a step (default: the engine's).")
    ] = None,
    catalog: CatalogFile = None,
) -> None:
    """Serve an OpenAI-compatible twin of an engine: synthetic text at modelled speed."""
    # Imported here: the server's dependencies load only for the command that serves.
    from tokenfactory.engines.twin import twin_setup
    from tokenfactory.engines.twin_app import serve_twin

    if not speedup > 0:
        raise BadInput("--speedup must be positive", param="--speedup")
    setup = twin_setup(
        load_catalog(catalog),
        gpu,
        model,
        precision,
        engine,
        tensor_parallel,
        max_num_seqs,
        max_batched_tokens,
    )
    print(f"twin of {engine} serving {model} on {gpu} at http://{host}:{port}/v1", file=sys.stderr)
    serve_twin(*setup, speedup=speedup, host=host, port=port)


def _exact(value: object) -> object:
    """Floats from the command line become Decimal by their text, not their binary value."""
    return Decimal(repr(value)) if isinstance(value, float) else value


def main() -> None:
    """Entry point: run the app, turning every expected error into one line and exit 2."""
    try:
        app(standalone_mode=False)
    except TokenfactoryError as e:
        print(f"error: {e.message}", file=sys.stderr)
        sys.exit(2)
    except Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except TyperException as e:
        if message := e.format_message():  # empty when the help was shown instead
            print(f"error: {message}", file=sys.stderr)
        sys.exit(e.exit_code)
