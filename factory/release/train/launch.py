"""`accelerate launch` for `factory train`: the accelerate config and the training spec, written into the
run folder, and the one command that runs them (what `--dry-run` prints).

    RUN/training/<loss>/accelerate.yaml   # accelerate's own config format (`accelerate launch --config_file`)
    RUN/training/<loss>/train_spec.json   # every training option (factory.release.train.trainer.TrainSpec)
    accelerate launch --config_file RUN/training/dpo/accelerate.yaml -m factory.release.train.worker RUN/training/dpo/train_spec.json

Strategies: `ddp` (one full model copy per GPU, accelerate's MULTI_GPU), `fsdp` (FSDP2, parameters,
gradients and optimizer state sharded across GPUs) and `deepspeed` (ZeRO stage 2: optimizer state and
gradients sharded; stage 3 is not offered because the held-out evaluation runs the model outside the
engine). On several machines, run the same command on each with `--machine-rank` 0..M-1.
"""

from __future__ import annotations

import importlib.util
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from factory._util.errors import UserError

STRATEGIES = ("ddp", "fsdp", "deepspeed")


@dataclass(frozen=True)
class Launch:
    """How many processes on how many machines, and how the model is spread over them."""

    gpus: int | None = None  # per machine; None: every visible GPU, or 1 process on a CPU-only machine
    machines: int = 1
    machine_rank: int = 0
    main_ip: str | None = None
    main_port: int = 29500
    strategy: str = "ddp"


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_launch(launch: Launch, *, gpus_here: int, dry_run: bool) -> int:
    """Processes per machine; raises `UserError` for a launch that cannot work (before anything is loaded)."""
    if launch.strategy not in STRATEGIES:
        raise UserError(f"unknown --strategy {launch.strategy!r}: choose one of {', '.join(STRATEGIES)}")
    if launch.machines < 1 or not 0 <= launch.machine_rank < launch.machines:
        raise UserError(
            f"--machine-rank must be in 0..{launch.machines - 1} for --machines {launch.machines}"
        )
    if launch.machines > 1 and not launch.main_ip:
        raise UserError("--machines > 1 needs --main-ip (the address of the machine with --machine-rank 0)")
    if launch.gpus is not None and launch.gpus < 1:
        raise UserError("--gpus must be at least 1")
    per_machine = launch.gpus if launch.gpus is not None else max(gpus_here, 1)
    if not dry_run:  # a dry run may be prepared on a laptop for the cluster
        if launch.gpus and launch.gpus > gpus_here:
            raise UserError(f"--gpus {launch.gpus} but this machine has {gpus_here} visible GPU(s)")
        if launch.strategy != "ddp" and gpus_here == 0:
            raise UserError(
                f"--strategy {launch.strategy} shards the model across GPUs; this machine has none"
            )
        if launch.strategy == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
            raise UserError("--strategy deepspeed needs the deepspeed package: pip install deepspeed")
    return per_machine


def accelerate_config(launch: Launch, per_machine: int, *, cpu: bool, bf16: bool) -> dict[str, Any]:
    """The YAML accelerate reads (`accelerate config` writes the same keys; TRL ships the same examples)."""
    total = per_machine * launch.machines
    if cpu:
        distributed = "MULTI_CPU" if total > 1 else "NO"
    else:
        distributed = {"ddp": "MULTI_GPU" if total > 1 else "NO", "fsdp": "FSDP", "deepspeed": "DEEPSPEED"}[
            launch.strategy
        ]
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE",
        "debug": False,
        "distributed_type": distributed,
        "downcast_bf16": "no",
        "machine_rank": launch.machine_rank,
        "main_training_function": "main",
        "mixed_precision": "bf16" if bf16 and not cpu else "no",
        "num_machines": launch.machines,
        "num_processes": total,
        "rdzv_backend": "static",
        "same_network": True,
        "use_cpu": cpu,
    }
    if not cpu:
        config["gpu_ids"] = "all"
    if launch.machines > 1:
        config.update(main_process_ip=launch.main_ip, main_process_port=launch.main_port)
    if distributed == "FSDP":
        config["fsdp_config"] = {
            "fsdp_version": 2,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_offload_params": False,
            "fsdp_reshard_after_forward": True,
            "fsdp_state_dict_type": "FULL_STATE_DICT",
            "fsdp_activation_checkpointing": False,
            # Every rank loads the full weights: the factory loads the model itself (GGUF included) and
            # scores the test split before sharding, which meta-device loading on ranks > 0 would not allow.
            "fsdp_cpu_ram_efficient_loading": False,
        }
    if distributed == "DEEPSPEED":
        config["deepspeed_config"] = {
            "zero_stage": 2,
            "offload_optimizer_device": "none",
            "offload_param_device": "none",
            "zero3_init_flag": False,
            "deepspeed_multinode_launcher": "standard",
        }
    return config


def accelerate_executable() -> str:
    """The `accelerate` script of this interpreter's environment (not whichever is first on PATH)."""
    script = Path(sys.executable).with_name("accelerate")
    return str(script) if script.is_file() else "accelerate"


def launch_command(config_path: Path, spec_path: Path) -> list[str]:
    return [
        accelerate_executable(),
        "launch",
        "--config_file",
        str(config_path),
        "-m",
        "factory.release.train.worker",
        str(spec_path),
    ]


def write_config(path: Path, config: dict[str, Any]) -> str:
    text = yaml.safe_dump(config, sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return text


def shell_line(command: list[str]) -> str:
    return " ".join(shlex.quote(part) for part in command)


@dataclass(frozen=True)
class LaunchPlan:
    """What `factory train` writes and runs; `--dry-run` prints it instead."""

    config_path: Path
    config_text: str
    spec_path: Path
    spec_text: str
    command: list[str]


def plan_launch(spec: Any, launch: Launch, *, dry_run: bool) -> LaunchPlan:
    """Check the launch and build the plan (nothing written). `spec` is a `factory.release.train.trainer.TrainSpec`."""
    import json
    from dataclasses import asdict

    from factory.release.train.trainer import output_dir_for

    gpus_here = visible_gpus()
    per_machine = check_launch(launch, gpus_here=gpus_here, dry_run=dry_run)
    # A dry run for a cluster is often prepared on a machine without GPUs: a --gpus count means GPUs.
    cpu = gpus_here == 0 and launch.gpus is None and launch.strategy == "ddp"
    bf16 = not cpu and (gpus_here == 0 or _bf16_here())
    out = output_dir_for(spec)
    config = accelerate_config(launch, per_machine, cpu=cpu, bf16=bf16)
    config_path, spec_path = out / "accelerate.yaml", out / "train_spec.json"
    spec_data = {
        **asdict(spec),
        "run_dir": str(Path(spec.run_dir).resolve()),
        "output_dir": str(out.resolve()),
    }
    return LaunchPlan(
        config_path=config_path,
        config_text=yaml.safe_dump(config, sort_keys=False),
        spec_path=spec_path,
        spec_text=json.dumps(spec_data, indent=2) + "\n",
        command=launch_command(config_path, spec_path),
    )


def _bf16_here() -> bool:
    import torch

    return bool(torch.cuda.is_bf16_supported())


def launch_training(spec: Any, launch: Launch) -> Any:
    """Write the plan's files, run `accelerate launch`, and return the `TrainResult` the main process wrote.

    Raises `UserError` for a plan that cannot work and `RuntimeError` when the launched run fails
    (its own output, on this terminal, says why)."""
    import json
    import os
    import subprocess

    from factory.release.train.trainer import TrainResult, prepare

    prepare(spec)  # gate, data, model name: refused here, before any process or weight is loaded
    plan = plan_launch(spec, launch, dry_run=False)
    plan.config_path.parent.mkdir(parents=True, exist_ok=True)
    plan.config_path.write_text(plan.config_text, encoding="utf-8")
    plan.spec_path.write_text(plan.spec_text, encoding="utf-8")
    result_path = plan.config_path.parent / "train_result.json"
    result_path.unlink(missing_ok=True)  # never report an earlier run's result as this one's
    env = dict(os.environ)
    # The workers import the factory from where this process did (a checkout, not only an install).
    package_root = str(Path(__file__).resolve().parents[3])  # factory/release/train/launch.py -> root
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    done = subprocess.run(plan.command, env=env, check=False)
    if done.returncode != 0 or not result_path.is_file():
        raise RuntimeError(
            f"training failed (accelerate launch exited {done.returncode}); see its output above"
        )
    data = json.loads(result_path.read_text(encoding="utf-8"))
    return TrainResult(**data)
