"""What a training run says about the data, written where readers look: the dataset card and the run's report.

After `factory train` evaluates on the test split, one section ("Training check") goes into
`dataset/README.md` (prose only; the card's YAML and its data sha256 are untouched, so `publish`
still verifies) and, when the gate wrote them, into `report.md` / `report.html` in the run folder and
in `dataset/`. The section sits between markers, so a later training run replaces it rather than
adding a second one; a rebuilt dataset gets a fresh card without it (the figures were about other data).

    text = summary_sentence(result_dict, evaluation)
    record_training_check(run_dir, text)
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- factory:training-check -->", "<!-- /factory:training-check -->"
_BLOCK = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)


def _params(n: int | None) -> str:
    if not n:
        return "A"
    return f"A {n / 1e9:.1f}B" if n >= 1e9 else f"A {round(n / 1e6)}M"


def summary_sentence(result: dict[str, Any], evaluation: dict[str, Any]) -> str:
    """One paragraph: "a 135M model trained N steps on this data reaches reward accuracy X on its test split"."""
    before, after = evaluation["before"], evaluation["after"]
    how = f"{result['loss'].upper()}{' with LoRA' if result.get('lora') else ''}"
    return (
        f"{_params(result.get('parameters'))}-parameter model (`{result['model']}`) trained "
        f"{result['steps']} {how} steps on this data's train split reaches DPO reward accuracy "
        f"**{after['reward_accuracy']}** on its test split ({evaluation['pairs']} pairs; mean reward margin "
        f"{after['reward_margin']:.4f}, beta {evaluation['beta']}). Before training the model is its own "
        f"reference, so reward accuracy is {before['reward_accuracy']} by construction. The chosen answer has "
        f"the higher per-token log-probability on {after['logp_accuracy']} of the test pairs after training "
        f"and {before['logp_accuracy']} before. Figures from `{result['output_dir_name']}/eval.json`."
    )


def _upsert(text: str, block: str, before_heading: str | None) -> str:
    if BEGIN in text:
        return _BLOCK.sub(lambda _: block, text, count=1)
    if before_heading and f"\n{before_heading}\n" in text:
        return text.replace(f"\n{before_heading}\n", f"\n{block}\n\n{before_heading}\n", 1)
    return text.rstrip("\n") + "\n\n" + block + "\n"


def _upsert_html(page: str, block: str) -> str:
    if BEGIN in page:
        return _BLOCK.sub(lambda _: block, page, count=1)
    return page.replace("</body>", block + "\n</body>", 1) if "</body>" in page else page + block


def record_training_check(run_dir: Path, sentence: str) -> list[Path]:
    """Put the section into the card and the reports that exist; returns the files changed."""
    markdown = f"{BEGIN}\n## Training check\n\n{sentence}\n{END}"
    changed: list[Path] = []
    for folder in (run_dir, run_dir / "dataset"):
        for name, heading in (("README.md", "## Use"), ("report.md", None)):
            path = folder / name
            if path.is_file() and not (name == "README.md" and folder == run_dir):
                path.write_text(
                    _upsert(path.read_text(encoding="utf-8"), markdown, heading), encoding="utf-8"
                )
                changed.append(path)
        page = folder / "report.html"
        if page.is_file():
            # Markdown emphasis is not HTML: the page gets the sentence as plain escaped text.
            body = html.escape(sentence.replace("**", "").replace("`", ""))
            block = f'{BEGIN}<section id="training-check"><h2>Training check</h2><p>{body}</p></section>{END}'
            page.write_text(_upsert_html(page.read_text(encoding="utf-8"), block), encoding="utf-8")
            changed.append(page)
    return changed
