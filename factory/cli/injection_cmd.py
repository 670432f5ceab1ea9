"""`factory injection-test`: how well the judge-injection defences hold.

Without `--judge-model` (fast, no model): the attack-flag rate per attack family and overall, and the
false-positive rate on ordinary answers (the AlpacaEval reference outputs, or `--ordinary FILE`);
`--out DIR` also writes DIR/injection_detection.json.

With `--judge-model M --out DIR`: the same figures, then the judge's attack success rate per protocol,
before and after our defences, written to DIR/injection.json (the calibration report in DIR shows it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from factory._util.atomic_files import atomic_write_json
from factory._util.errors import UserError
from factory._util.sync import run_sync

console = Console(stderr=True)


def injection_test(
    judge_model: Annotated[
        str | None,
        typer.Option(
            "--judge-model",
            help="litellm model string, e.g. local/smollm2; without it only detection is measured.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Folder for injection.json (e.g. a calibration folder); needed with --judge-model."
        ),
    ] = None,
    attacks_file: Annotated[
        Path | None,
        typer.Option(
            "--attacks", help="Attack set, JSONL of {id, family, text} (default: the built-in set)."
        ),
    ] = None,
    ordinary_file: Annotated[
        Path | None,
        typer.Option(
            "--ordinary",
            help="Ordinary answers, JSON/JSONL with an output field (default: AlpacaEval's 805).",
        ),
    ] = None,
    api_base: Annotated[str | None, typer.Option("--api-base", help="OpenAI-compatible endpoint.")] = None,
    api_key_env: Annotated[
        str | None, typer.Option("--api-key-env", help="Env var with the API key.")
    ] = None,
    protocol: Annotated[
        list[str] | None,
        typer.Option(
            "--protocol", help="direct, combined, independent, or NAME/json; repeatable (default: all six)."
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Use the first N attacks of the suite.")
    ] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Completion tokens per judge call.")] = 256,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Items judged at once.")] = 4,
) -> None:
    """Measure injection detection (no model), and with --judge-model a judge's attack success rate."""
    from factory.llm import ModelSpec
    from judges.injection.detection import format_detection, load_attacks, load_ordinary, measure_detection

    protocols: tuple[Literal["direct", "combined", "independent"], ...] = (
        "direct",
        "combined",
        "independent",
    )
    known = {f"{p}{'/json' if s else ''}": (p, s) for p in protocols for s in (False, True)}
    wanted = protocol or list(known)
    unknown = [p for p in wanted if p not in known]
    if unknown:
        raise UserError(f"unknown protocol {unknown[0]!r} (known: {', '.join(known)})")
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}")
    if max_tokens < 1 or concurrency < 1:
        raise UserError("--max-tokens and --concurrency must be at least 1")
    if judge_model is not None and out is None:
        raise UserError("--judge-model needs --out DIR for injection.json")
    detection = measure_detection(load_attacks(attacks_file), load_ordinary(ordinary_file))
    for line in format_detection(detection):
        console.print(line, highlight=False, soft_wrap=True)
    if judge_model is None:
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            path = out / "injection_detection.json"
            atomic_write_json(path, detection)
            print(path)
        return
    assert out is not None
    try:
        spec = ModelSpec(
            model=judge_model,
            api_base=api_base,
            api_key_env=api_key_env,
            temperature=0.0,
            max_tokens=max_tokens,
        )
    except ValueError as exc:
        raise UserError(f"invalid judge model: {str(exc).splitlines()[-1].strip()}") from None

    from factory.llm import Gateway
    from judges.injection.attack_suite import ATTACKS, measure, write_injection_json

    out.mkdir(parents=True, exist_ok=True)
    attacks = ATTACKS[:limit] if limit else ATTACKS
    gateway = Gateway({"judge": spec}, cache_path=out / "injection_cache.sqlite")
    try:
        result = run_sync(
            lambda: measure(
                gateway,
                variants=[known[p] for p in wanted],
                attacks=attacks,
                concurrency=concurrency,
                model=judge_model,
            )
        )
    finally:
        gateway.close()
    path = write_injection_json(out, result | {"detection": detection})
    console.print(
        f"attack success rate of {judge_model} over {len(attacks)} attacks (before -> after defences):"
    )
    for name, r in result["protocols"].items():
        console.print(
            f"  {name:<18} {r['before']:6.1%} -> {r['after']:6.1%}   flagged {r['flagged']:6.1%}   "
            f"unscored {r['unscored_before']:.0%} / {r['unscored_after']:.0%}"
        )
    print(path)


def register(app: typer.Typer) -> None:
    app.command("injection-test")(injection_test)
