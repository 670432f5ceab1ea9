"""``factory annotate``: label pairs by hand in a local web page, for judge calibration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from factory._util.errors import UserError


def register(app: typer.Typer) -> None:
    """Add the ``annotate`` command to the ``factory`` app."""

    @app.command("annotate")
    def annotate(
        source: Annotated[
            Path,
            typer.Argument(
                help="A build run folder (its pairs.parquet) or a calibration .jsonl "
                "(id, prompt, response_a, response_b)."
            ),
        ],
        annotator: Annotated[
            str | None, typer.Option("--annotator", help="Your name; stored with every label.")
        ] = None,
        port: Annotated[
            int, typer.Option("--port", min=0, max=65535, help="Port to serve on (0 picks a free one).")
        ] = 8765,
        host: Annotated[
            str, typer.Option("--host", help="Address to bind; keep 127.0.0.1 unless you mean to share.")
        ] = "127.0.0.1",
        budget: Annotated[
            int | None,
            typer.Option("--budget", min=1, help="Label at most this many items (contested ones first)."),
        ] = None,
        out: Annotated[
            Path | None,
            typer.Option(
                "--out",
                help="Labels file (default: <run>/human_labels.jsonl, or <stem>.labels.jsonl beside the file).",
            ),
        ] = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the item sample and order.")] = 0,
        no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a browser tab.")] = False,
        apply: Annotated[
            bool,
            typer.Option(
                "--apply",
                help="Rebuild a finished run's pairs and dataset from its human_labels.jsonl (a person's "
                "label overrides the judge; tie drops the pair) and exit; no model is called.",
            ),
        ] = False,
    ) -> None:
        """Serve a page that shows one pair at a time and records which response you prefer.

        For a build run folder the contested pairs (split votes, flipped verdicts, small margins: its
        review_queue.parquet) come first. Labels are appended to the labels file as you go; stop any
        time and run the same command again to carry on where you left off; then `--apply` rebuilds
        the dataset with them. Keys: 1/a left better, 2/b right better, 3/t tie, u undo, n note.
        """
        if apply:
            from factory.pipeline.review_apply import apply_labels, summary_line

            if not source.is_dir():
                raise UserError(f"--apply takes a build run folder, got {source}")
            typer.echo(summary_line(apply_labels(source)))
            return
        if annotator is None:
            raise UserError("--annotator NAME is required to label (your name is stored with every label)")
        # Here, not at the top: every command module is imported when the CLI starts, and the page's
        # server (http.server, ssl) would add its import time to every `factory build`.
        import threading
        import webbrowser

        from factory.annotate.server import AnnotationServer, open_session

        session = open_session(source, annotator, out=out, budget=budget, seed=seed)
        server = AnnotationServer(session, host=host, port=port)
        name = session.default_annotator or annotator
        url = server.page_url(name)
        progress = session.progress(name)
        typer.echo(f"Annotating {progress['total']} items as {name} ({progress['done']} done) at {url}")
        typer.echo(f"Labels are appended to {session.labels_path}; press Ctrl-C to stop.")
        if not no_browser:
            threading.Timer(0.3, webbrowser.open, args=(url,)).start()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
        done = session.progress(name)
        typer.echo(
            f"Stopped with {done['done']} of {done['total']} labelled; labels are in {session.labels_path}"
        )
        if source.is_dir():
            typer.echo(
                f"Rebuild the dataset with them (no model is called): factory annotate {source} --apply"
            )
