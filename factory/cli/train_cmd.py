"""`factory train RUN_DIR`: TRL DPO / KTO / RDPO on a built dataset through `accelerate launch` (the CLI
only parses flags; factory.release.train.trainer trains, factory.release.train.launch launches)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from factory.cli.options import finite

_HELP = """Train a model on the run's dataset with TRL, then evaluate it on the test split.

Reads RUN_DIR/dataset/dpo (or kto) as written and trains with TRL's DPOTrainer (--loss dpo),
KTOTrainer (kto) or DPO plus a rationale term (rdpo), rendering the conversations with the
model's own chat template. Refuses data whose quality gate did not pass unless --force.

\b
Model: --model local/smollm2 is the embedded SmolLM2-135M-Instruct (GGUF, offline); also a Hub
id, a checkpoint folder or a .gguf file. --smoke instead runs 2 steps of a tiny random model.

\b
LoRA: --lora trains a peft LoRA adapter on every linear layer (--lora-r, --lora-alpha) instead of
all weights; the reference model is the base with the adapter off, and RUN/training/<loss>/model
holds the adapter.

\b
Launcher: every run goes through `accelerate launch`. factory writes
RUN/training/<loss>/accelerate.yaml and train_spec.json and runs
  accelerate launch --config_file .../accelerate.yaml -m factory.release.train.worker .../train_spec.json
--dry-run prints that command and both files without running or writing anything.

\b
Several GPUs: --gpus N (default: every visible GPU; one CPU process without a GPU) and
--strategy ddp (a model copy per GPU), fsdp (FSDP2 sharding) or deepspeed (ZeRO-2).
Several machines: --machines M --main-ip HOST [--main-port P], and the same command on each
machine with --machine-rank 0..M-1.

\b
Output in RUN/training/<loss>/: train_result.json, eval.json (DPO reward accuracy and margins on
the dpo test split, before and after), model/; the dataset card and report get a "Training check"."""


def train(
    run_dir: Annotated[Path, typer.Argument(help="A build's run folder (outputs/<run_id>/).")],
    loss: Annotated[str, typer.Option("--loss", help="dpo, kto, or rdpo (DPO + rationale term).")] = "dpo",
    model: Annotated[
        str | None, typer.Option("--model", help="local/smollm2, a Hub id, a folder or a .gguf.")
    ] = None,
    smoke: Annotated[
        bool, typer.Option("--smoke", help="Data check: 2 steps of a tiny random model.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Train even if the quality gate did not pass.")
    ] = False,
    beta: Annotated[
        float, typer.Option("--beta", callback=finite(0, above=True), help="DPO/KTO beta.")
    ] = 0.1,
    gamma: Annotated[float, typer.Option("--gamma", callback=finite(0), help="RDPO rationale weight.")] = 0.1,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", min=1, help="Stop after N optimizer steps.")
    ] = None,
    epochs: Annotated[
        float, typer.Option("--epochs", help="Epochs over the train split (without --max-steps).")
    ] = 1.0,
    learning_rate: Annotated[
        float | None, typer.Option("--learning-rate", help="Default 1e-6, 5e-5 with LoRA.")
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", help="Pairs per device per step (default 2 on CPU, 4 on a GPU)."),
    ] = None,
    grad_accum: Annotated[int, typer.Option("--grad-accum", help="Gradient accumulation steps.")] = 1,
    max_length: Annotated[
        int, typer.Option("--max-length", help="Tokens per prompt+answer (truncated).")
    ] = 1024,
    lora: Annotated[
        bool, typer.Option("--lora", help="Train a LoRA adapter (peft) instead of all weights.")
    ] = False,
    lora_r: Annotated[int, typer.Option("--lora-r", help="LoRA rank.")] = 16,
    lora_alpha: Annotated[int, typer.Option("--lora-alpha", help="LoRA alpha.")] = 32,
    gradient_checkpointing: Annotated[
        bool, typer.Option("--gradient-checkpointing", help="Recompute activations (less memory, slower).")
    ] = False,
    evaluate: Annotated[
        bool, typer.Option("--eval/--no-eval", help="Score the test split before and after.")
    ] = True,
    save: Annotated[
        bool, typer.Option("--save/--no-save", help="Save the trained model (or adapter).")
    ] = True,
    gpus: Annotated[int | None, typer.Option("--gpus", help="Processes (GPUs) per machine.")] = None,
    strategy: Annotated[
        str, typer.Option("--strategy", help="ddp, fsdp or deepspeed (several GPUs).")
    ] = "ddp",
    machines: Annotated[int, typer.Option("--machines", help="Number of machines.")] = 1,
    machine_rank: Annotated[int, typer.Option("--machine-rank", help="This machine's rank (0 = main).")] = 0,
    main_ip: Annotated[str | None, typer.Option("--main-ip", help="Address of the rank-0 machine.")] = None,
    main_port: Annotated[int, typer.Option("--main-port", help="Port on the rank-0 machine.")] = 29500,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the launch command and files; run nothing.")
    ] = False,
) -> None:
    from factory.release.train.launch import Launch, launch_training, plan_launch, shell_line
    from factory.release.train.trainer import TrainSpec, prepare

    spec = TrainSpec(
        run_dir=str(run_dir),
        loss=loss,
        model=model,
        smoke=smoke,
        force=force,
        beta=beta,
        gamma=gamma,
        max_steps=max_steps,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        grad_accum=grad_accum,
        max_length=max_length,
        lora=lora,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        gradient_checkpointing=gradient_checkpointing,
        evaluate=evaluate,
        save_model=save,
    )
    launch = Launch(
        gpus=gpus,
        machines=machines,
        machine_rank=machine_rank,
        main_ip=main_ip,
        main_port=main_port,
        strategy=strategy,
    )
    if dry_run:
        gate, _ = prepare(spec)
        plan = plan_launch(spec, launch, dry_run=True)
        typer.echo(
            f"# gate: {gate}\n# would write {plan.config_path}:\n{plan.config_text}"
            f"# would write {plan.spec_path}:\n{plan.spec_text}# would run:\n{shell_line(plan.command)}"
        )
        return
    try:
        result = launch_training(spec, launch)
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    loss_text = "n/a" if result.train_loss is None else f"{result.train_loss:.4f}"
    typer.echo(
        f"{result.loss}{' (smoke)' if result.smoke else ''} on {result.device} x{result.processes}: "
        f"{result.steps} steps over {result.train_rows} train rows ({result.test_rows} test), "
        f"train loss {loss_text}; gate {result.gate}"
    )
    if result.evaluation and result.evaluation["pairs"]:
        before, after = result.evaluation["before"], result.evaluation["after"]
        typer.echo(
            f"test split ({result.evaluation['pairs']} pairs): reward accuracy {before['reward_accuracy']} -> "
            f"{after['reward_accuracy']}, margin {after['reward_margin']:.4f}; logp accuracy "
            f"{before['logp_accuracy']} -> {after['logp_accuracy']}"
        )
    typer.echo(result.output_dir)


def register(app: typer.Typer) -> None:
    app.command("train", help=_HELP)(train)
