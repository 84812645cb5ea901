"""`tokenfactory bench`: load an endpoint with a workload, report it, and compare it with
the planner's prediction. Parses, composes `bench` with `sim`, prints; errors are one line.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console

from tokenfactory.bench import (
    Bounds,
    Capped,
    Endpoint,
    Objective,
    Row,
    compare,
    failed,
    fetch_pnl,
    probe,
    read_summary,
    run_bench,
    summarize,
    write_run,
)
from tokenfactory.bench import render as render_bench
from tokenfactory.catalog import Catalog, Tier, load_catalog
from tokenfactory.config import LoadedScenario, load_scenario
from tokenfactory.config.scenario import MixShare, Scenario
from tokenfactory.errors import BadInput
from tokenfactory.perf.measurements import Measurement
from tokenfactory.perf.model import Efficiency
from tokenfactory.perf.store import write_efficiency
from tokenfactory.sim.build import build
from tokenfactory.sim.build import workload as scenario_workload
from tokenfactory.sim.run import simulate
from tokenfactory.workload import (
    TIERS,
    ClosedLoop,
    Fixed,
    Ids,
    TierMix,
    Workload,
    offline,
    poisson,
)

SENDABLE = ("realtime", "standard", "flex")  # batch goes through the Batch API, not chat
FLAG_REQUESTS = 100  # plain requests sent without a scenario, --requests or --duration
UNBOUNDED_LOOP = 100_000  # requests drawn for a closed loop bounded by --duration only


def bench(
    scenario: Annotated[
        Path | None,
        typer.Argument(
            help="Scenario TOML: bench sends its workload; --compare-sim simulates it on "
            "its hardware, model and engine."
        ),
    ] = None,
    url: Annotated[
        str, typer.Option(help="The endpoint's OpenAI base URL, e.g. http://127.0.0.1:8000/v1.")
    ] = "http://127.0.0.1:8000/v1",
    model: Annotated[
        str | None, typer.Option(help="Model name to send (default: the scenario's model).")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(help="API key, sent as a bearer token.", envvar="OPENAI_API_KEY")
    ] = None,
    admin_key: Annotated[
        str | None, typer.Option(help="tokenfactory admin key: also report the run's P&L.")
    ] = None,
    qps: Annotated[float | None, typer.Option(help="Poisson arrivals, requests/s.")] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Closed loop: requests kept in flight.")
    ] = None,
    requests: Annotated[
        int | None, typer.Option(help="Stop after sending this many requests.")
    ] = None,
    duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    input_tokens: Annotated[
        int | None, typer.Option(help="Prompt tokens of plain requests.")
    ] = None,
    output_tokens: Annotated[
        int | None, typer.Option(help="Output tokens of plain requests.")
    ] = None,
    tiers: Annotated[
        str | None,
        typer.Option(help="Tier mix of plain requests, e.g. realtime=0.2,standard=0.8."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: the file's).")] = None,
    timeout: Annotated[
        float, typer.Option(help="Longest wait, in seconds, for the next byte of an answer.")
    ] = 300.0,
    extra_body: Annotated[
        str | None,
        typer.Option(help="JSON object added to every request, e.g. '{\"ignore_eos\": true}'."),
    ] = None,
    compare_sim: Annotated[
        bool,
        typer.Option("--compare-sim", help="Also simulate the workload: predicted vs measured."),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder to write requests.csv, summary.json and latency.png into."),
    ] = None,
    catalog: Annotated[
        Path | None,
        typer.Option("--catalog", help="TOML file that adds to or overrides the catalog."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Load an OpenAI-compatible endpoint with human and agent demand, and measure it."""
    cat = load_catalog(catalog)
    _check_flags(qps, concurrency, requests, duration, input_tokens, output_tokens, timeout)
    mix = _parse_tiers(tiers) if tiers else None
    loaded = (
        None
        if scenario is None
        else _with_flags(
            load_scenario(scenario, cat), qps, concurrency, input_tokens, output_tokens, mix
        )
    )
    if loaded is None and compare_sim:
        raise BadInput("--compare-sim needs a scenario file: it simulates its [hardware]")
    workload = _workload(
        loaded, seed, qps, concurrency, requests, duration, input_tokens, output_tokens, mix
    )
    _sendable(tuple(sorted({r.tier for r in workload.initial()})), "the workload")
    if requests is not None:
        workload = Capped(workload, requests)
    name = model or (loaded.scenario.model.name if loaded else None)
    if name is None:
        raise BadInput("--model: name the model to send (there is no scenario file)")
    extra = _extra_body(extra_body) if extra_body else {}
    endpoint = Endpoint(url.rstrip("/"), name, api_key, timeout, extra_body=extra)
    why = asyncio.run(probe(endpoint))
    if why is not None:
        print(f"error: {why}", file=sys.stderr)
        raise SystemExit(1)
    err = Console(stderr=True)
    began = time.time()  # the run's window on the wall clock, for the factory's P&L
    with render_bench.LiveProgress(err, duration) as progress:
        run = asyncio.run(run_bench(workload, endpoint, Bounds(duration), progress))
    ended = time.time()
    summary = summarize(run.samples, _objectives(loaded.scenario if loaded else None, cat))
    summary["stopped"] = run.stopped
    summary["endpoint"] = {"url": endpoint.url, "model": endpoint.model}
    if loaded is not None:
        summary.update(_conditions(loaded.scenario, cat))
    if admin_key:
        summary["pnl"] = fetch_pnl(endpoint, admin_key, began, ended)
    if loaded is not None and compare_sim:
        summary["compare_sim"] = _simulate(loaded, cat, seed, requests, duration, summary)
    _show(summary, as_json, scenario.name if scenario else url)
    for path in write_run(out, run.samples, summary) if out else []:
        print(f"wrote {path}", file=sys.stderr)
    if run.stopped == "failures":
        print(
            f"error: stopped after {Bounds().stop_after_failures} failures in a row",
            file=sys.stderr,
        )
    if run.stopped == "interrupted":
        raise SystemExit(130)
    if failed(summary):
        raise SystemExit(1)


def _show(summary: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    out = Console(soft_wrap=True)
    render_bench.summary(out, summary, title)
    if "compare_sim" in summary:
        rows = [
            Row(r["figure"], r["predicted"], r["measured"]) for r in summary["compare_sim"]["rows"]
        ]
        render_bench.comparison(out, rows, "the planner's prediction vs this run")


def _check_flags(
    qps: float | None,
    concurrency: int | None,
    requests: int | None,
    duration: float | None,
    input_tokens: int | None,
    output_tokens: int | None,
    timeout: float,
) -> None:
    if qps is not None and concurrency is not None:
        raise BadInput("give --qps or --concurrency, not both")
    if qps is not None and not (math.isfinite(qps) and qps > 0):
        raise BadInput(f"--qps must be a positive number, got {qps}", param="--qps")
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise BadInput(f"--duration must be a positive number of seconds, got {duration}")
    if not (math.isfinite(timeout) and timeout > 0):
        raise BadInput(f"--timeout must be a positive number of seconds, got {timeout}")
    for flag, value in (
        ("--concurrency", concurrency),
        ("--requests", requests),
        ("--input-tokens", input_tokens),
        ("--output-tokens", output_tokens),
    ):
        if value is not None and value < 1:
            raise BadInput(f"{flag} must be at least 1, got {value}", param=flag)


def _extra_body(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise BadInput(f"--extra-body: not JSON ({e})", param="--extra-body") from None
    if not isinstance(value, dict):
        raise BadInput("--extra-body must be a JSON object", param="--extra-body")
    return value


def _parse_tiers(text: str) -> TierMix:
    shares: list[tuple[str, float]] = []
    for part in text.split(","):
        tier, sep, share = part.strip().partition("=")
        try:
            value = float(share)
        except ValueError:
            value = math.nan
        if not sep or not math.isfinite(value):
            raise BadInput(f"--tiers: {part.strip()!r} is not like realtime=0.2", param="--tiers")
        shares.append((tier.strip(), value))
    mix = TierMix(shares)
    _sendable(mix.tiers, "--tiers")
    return mix


def _sendable(tiers: tuple[str, ...], where: str) -> None:
    for tier in tiers:
        if tier not in SENDABLE:
            raise BadInput(
                f"{where}: tier {tier!r} cannot be sent as a chat completion "
                f"(bench sends {', '.join(SENDABLE)}; batch goes through the Batch API)"
            )


def _with_flags(
    loaded: LoadedScenario,
    qps: float | None,
    concurrency: int | None,
    input_tokens: int | None,
    output_tokens: int | None,
    mix: TierMix | None,
) -> LoadedScenario:
    """The scenario with the workload flags applied: bench and the simulation see one."""
    w = loaded.scenario.workload
    changes: dict[str, Any] = {}
    if qps is not None:
        changes.update(arrival="poisson", qps=qps)
    if concurrency is not None:
        changes.update(arrival="concurrency", concurrency=concurrency)
    if input_tokens is not None:
        changes["input_tokens"] = input_tokens
    if output_tokens is not None:
        changes["output_tokens"] = output_tokens
    if mix is not None:
        changes["mix"] = tuple(MixShare(tier=t, share=p) for t, p in mix.shares.items())
    w = w.model_copy(update=changes)
    if w.requests and (w.input_tokens is None or w.output_tokens is None):
        raise BadInput(
            "plain requests need input and output lengths: give --input-tokens "
            "and --output-tokens, or input_tokens and output_tokens in [workload]"
        )
    tiers = tuple(w.tier_shares()) if w.requests or w.trace else ()
    _sendable(tiers, "[workload] mix")
    for part in (w.sessions, w.agents):
        if part is not None and part.count:
            _sendable((part.tier,), "[workload] sessions/agents")
    scenario = loaded.scenario.model_copy(update={"workload": w})
    return LoadedScenario(scenario, loaded.located, loaded.path)


def _workload(
    loaded: LoadedScenario | None,
    seed: int | None,
    qps: float | None,
    concurrency: int | None,
    requests: int | None,
    duration: float | None,
    input_tokens: int | None,
    output_tokens: int | None,
    mix: TierMix | None,
) -> Workload:
    """The scenario's workload, or plain requests from the flags alone."""
    if loaded is not None:
        return scenario_workload(loaded, seed)
    if input_tokens is None or output_tokens is None:
        raise BadInput("without a scenario file give --input-tokens and --output-tokens")
    rng, ids = np.random.default_rng(seed or 0), Ids()
    inputs, outputs, tier_mix = Fixed(input_tokens), Fixed(output_tokens), mix or TierMix()
    if qps is not None:
        n = requests or (math.ceil(qps * duration * 1.5) + 10 if duration else FLAG_REQUESTS)
        return poisson(qps, n, inputs, outputs, tier_mix, rng, ids)
    n = requests or (UNBOUNDED_LOOP if duration else FLAG_REQUESTS)
    if concurrency is not None:
        return ClosedLoop(concurrency, n, inputs, outputs, tier_mix, rng, ids)
    return offline(n, inputs, outputs, tier_mix, rng, ids)


def _objectives(scenario: Scenario | None, catalog: Catalog) -> dict[str, Objective]:
    presets: dict[str, Tier] = scenario.tier_presets(catalog) if scenario else catalog.tiers
    return {
        name: Objective(
            None if t.ttft_ms is None else t.ttft_ms / 1000,
            None if t.tpot_ms is None else t.tpot_ms / 1000,
            t.completion_window_s,
        )
        for name, t in presets.items()
        if name in TIERS
    }


def _conditions(s: Scenario, catalog: Catalog) -> dict[str, Any]:
    """What a run was measured on and with, for `calibrate --from`."""
    engine = catalog.engine(s.engine.kind)
    return {
        "target": {
            "gpu": s.hardware.gpu,
            "gpus": s.hardware.gpus,
            "tensor_parallel": s.engine.tensor_parallel,
            "model": s.model.name,
            "precision": s.model.precision,
            "engine": s.engine.kind,
            "max_num_seqs": s.engine.max_num_seqs or engine.max_num_seqs,
        },
        "workload": s.workload.model_dump(mode="json"),
    }


def _simulate(
    loaded: LoadedScenario,
    catalog: Catalog,
    seed: int | None,
    requests: int | None,
    duration: float | None,
    measured: dict[str, Any],
) -> dict[str, Any]:
    """The planner's prediction of the same workload, and the figures side by side."""
    setup, _ = build(loaded, catalog, seed=seed)
    if requests is not None:
        setup = replace(setup, workload=Capped(setup.workload, requests))
    predicted = simulate(setup, duration if duration is not None else math.inf).summary
    return {
        "predicted": predicted,
        "rows": [r.to_json() for r in compare(predicted, measured)],
    }


def run_measurements(folder: Path) -> list[Measurement]:
    """A bench run's folder as a measurement row of its target, for `calibrate --from`.

    A closed loop of n clients with no other demand is replayed as an offline run
    batching n at a time (throughput and TPOT compared); anything else as Poisson
    arrivals at the measured request rate (TTFT too). Lengths are the run's means, fixed.
    """
    s = read_summary(folder)
    if "target" not in s:
        raise BadInput(f"{folder}: the run has no target hardware; bench it with a scenario file")
    t, w = s["target"], s["workload"]
    if not s.get("requests_completed"):
        raise BadInput(f"{folder}: no request completed in that run")
    closed = (
        w.get("arrival") == "concurrency"
        and not (w.get("sessions") or {}).get("count")
        and not (w.get("agents") or {}).get("count")
    )
    return [
        Measurement(
            row=1,
            source=f"tokenfactory bench run in {folder}",
            gpu=t["gpu"],
            gpus=t["gpus"],
            tensor_parallel=t["tensor_parallel"],
            model=t["model"],
            precision=t["precision"],
            engine=t["engine"],
            arrival="offline" if closed else "poisson",
            input_tokens=max(1, round(s["tokens"]["mean_input"])),
            output_tokens=max(1, round(s["tokens"]["mean_output"])),
            fixed_lengths=True,
            output_tokens_per_s=s["output_tokens_per_s"],
            requests=s["requests_completed"],
            qps=None if closed else s["requests_per_s"],
            max_num_seqs=min(w["concurrency"], t["max_num_seqs"]) if closed else t["max_num_seqs"],
            # Replayed offline, every request queues from t=0: its TTFT is no closed loop's.
            ttft_ms_mean=None if closed else s["ttft_ms"]["mean"],
            tpot_ms_mean=s["tpot_ms"]["mean"],
        )
    ]


def write_parameters(path: Path, engine: str, eff: Efficiency, source: str) -> None:
    """Write fitted parameters as an efficiency file's `[engine.KIND]` table (made if new)."""
    try:
        if not path.exists():
            path.write_text("# Performance model parameters fitted by tokenfactory calibrate.\n")
        write_efficiency(path, engine, eff, source)
    except OSError as e:
        raise BadInput(f"--to: cannot write {path} ({e.strerror})") from None
