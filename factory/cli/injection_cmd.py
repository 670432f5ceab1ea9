"""`factory injection-test --judge-model M --out DIR`: measure a judge's prompt-injection attack success
rate per protocol, before and after our defences, and write DIR/injection.json (the calibration report
in DIR shows it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from factory.errors import UserError

console = Console(stderr=True)


def injection_test(
    judge_model: Annotated[str, typer.Option("--judge-model", help="litellm model string, e.g. local/smollm2.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for injection.json (e.g. a calibration folder).")],
    api_base: Annotated[str | None, typer.Option("--api-base", help="OpenAI-compatible endpoint.")] = None,
    api_key_env: Annotated[str | None, typer.Option("--api-key-env", help="Env var with the API key.")] = None,
    protocol: Annotated[list[str] | None, typer.Option(
        "--protocol", help="direct, combined, independent, or NAME/json; repeatable (default: all six).")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Use the first N attacks of the suite.")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Completion tokens per judge call.")] = 256,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Items judged at once.")] = 4,
) -> None:
    """Run the judge prompt-injection suite and write injection.json."""
    import asyncio

    from factory.llm import ModelSpec

    known = {f"{p}{'/json' if s else ''}": (p, s)
             for p in ("direct", "combined", "independent") for s in (False, True)}
    wanted = protocol or list(known)
    unknown = [p for p in wanted if p not in known]
    if unknown:
        raise UserError(f"unknown protocol {unknown[0]!r} (known: {', '.join(known)})")
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}")
    if max_tokens < 1 or concurrency < 1:
        raise UserError("--max-tokens and --concurrency must be at least 1")
    try:
        spec = ModelSpec(model=judge_model, api_base=api_base, api_key_env=api_key_env, temperature=0.0,
                         max_tokens=max_tokens)
    except ValueError as exc:
        raise UserError(f"invalid judge model: {str(exc).splitlines()[-1].strip()}") from None

    from factory.llm import Gateway
    from judges.injection import ATTACKS, measure, write_injection_json

    out.mkdir(parents=True, exist_ok=True)
    attacks = ATTACKS[:limit] if limit else ATTACKS
    gateway = Gateway({"judge": spec}, cache_path=out / "injection_cache.sqlite")
    try:
        result = asyncio.run(measure(gateway, variants=[known[p] for p in wanted], attacks=attacks,
                                     concurrency=concurrency, model=judge_model))
    finally:
        gateway.close()
    path = write_injection_json(out, result)
    console.print(f"attack success rate of {judge_model} over {len(attacks)} attacks (before -> after defences):")
    for name, r in result["protocols"].items():
        console.print(f"  {name:<18} {r['before']:6.1%} -> {r['after']:6.1%}   flagged {r['flagged']:6.1%}   "
                      f"unscored {r['unscored_before']:.0%} / {r['unscored_after']:.0%}")
    print(path)


def register(app: typer.Typer) -> None:
    app.command("injection-test")(injection_test)
