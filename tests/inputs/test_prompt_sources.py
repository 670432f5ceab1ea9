"""Prompt sources: Hugging Face datasets (a local folder in Hub layout, read by the same
`datasets.load_dataset` call as the Hub), chat `messages` columns as turns, `where` filters, files
read as they are (a BOM, ids or text on later rows, values of the wrong type), and only regular files
of bounded size (a FIFO or a link to /dev/zero fails at once)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from _reliability import REPO, build_config, cli_env, run_cli, write_config

from factory._util.errors import UserError
from factory.config import load_config, parse_config
from factory.inputs.prompt_sources import load_prompts, load_source
from factory.testing import FakeLLMServer

CLI_TIMEOUT_S = 120  # a hang (FIFO, /dev/zero) fails the test instead of blocking the suite


def _msgs(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in pairs]


CHATS = [  # (id, messages, category): the rows of the Hub-layout fixture's `chat` config
    (
        "c1",
        _msgs(
            ("user", "Write a haiku about rain."),
            ("assistant", "Rain on the roof..."),
            ("user", "Now make every line rhyme."),
        ),
        "poetry",
    ),
    ("c2", _msgs(("user", "What is a prime number?"), ("assistant", "A number with two divisors.")), "math"),
    ("c3", _msgs(("user", "Name a colour.")), "misc"),
    ("c4", _msgs(("system", "You are a pirate."), ("user", "Say hello.")), "misc"),
    (
        "c5",
        _msgs(
            ("user", "Describe a lighthouse."),
            ("assistant", "It stands tall."),
            ("user", "Shorter, please."),
            ("assistant", "Tall light."),
        ),
        "poetry",
    ),
]


def write_hub_folder(root: Path) -> Path:
    """A dataset folder laid out as on the Hub: parquet shards per config and split, and a card whose
    `configs:` names them (what `datasets.load_dataset` reads for a Hub repo too)."""
    folder = root / "hubds"
    (folder / "chat").mkdir(parents=True)
    (folder / "plain").mkdir()
    pl.DataFrame(
        {"id": [c[0] for c in CHATS], "messages": [c[1] for c in CHATS], "category": [c[2] for c in CHATS]}
    ).write_parquet(folder / "chat" / "train-00000-of-00001.parquet")
    pl.DataFrame(
        {"id": ["t1"], "messages": [_msgs(("user", "A test question?"))], "category": ["misc"]}
    ).write_parquet(folder / "chat" / "test-00000-of-00001.parquet")
    pl.DataFrame({"uid": ["p1", "p2"], "question": ["Why is the sky blue?", "What is rain?"]}).write_parquet(
        folder / "plain" / "train-00000-of-00001.parquet"
    )
    (folder / "README.md").write_text(
        "---\nconfigs:\n"
        "- config_name: chat\n  default: true\n  data_files:\n"
        "  - split: train\n    path: chat/train-*\n  - split: test\n    path: chat/test-*\n"
        "- config_name: plain\n  data_files:\n  - split: train\n    path: plain/train-*\n"
        "---\n# A prompt set in Hub layout\n",
        encoding="utf-8",
    )
    return folder


@pytest.fixture(scope="module")
def hub_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_hub_folder(tmp_path_factory.mktemp("hub"))


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `datasets` prepares even a local folder into its cache: keep that out of the home folder.
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def _hub(folder: Path, **prompts: Any) -> tuple[list[Any], list[Any]]:
    hf = {
        "dataset": str(folder),
        **{k: prompts.pop(k) for k in ("config", "split", "revision", "streaming") if k in prompts},
    }
    return load_source(parse_config(_config({"hf": hf, **prompts})).prompts)


def _config(prompts: dict[str, Any]) -> dict[str, Any]:
    fake = {"model": "openai/fake", "api_base": "http://127.0.0.1:9/v1"}
    return {"models": {"generator": fake, "judge": fake, "rationale_writer": fake}, "prompts": prompts}


# ------------------------------------------------------------------ Hugging Face datasets


def test_a_hub_layout_messages_column_gives_user_turns(hub_folder: Path) -> None:
    prompts, rejected = _hub(hub_folder)
    assert {p.prompt_id: p.turns for p in prompts} == {
        "c1": ("Write a haiku about rain.", "Now make every line rhyme."),  # earlier answer: regenerated
        "c2": ("What is a prime number?",),  # the trailing assistant turn is the source's reference answer
        "c3": ("Name a colour.",),
        "c5": ("Describe a lighthouse.", "Shorter, please."),
    }
    assert [(r.item_id, r.reason.split(":")[0]) for r in rejected] == [("c4", "chat_system_message")]
    assert {p.source for p in prompts} == {"hubds"}


@pytest.mark.parametrize(
    ("options", "expected_ids"),
    [
        ({"split": "test"}, ["t1"]),
        ({"config": "plain", "id_field": "uid"}, ["p1", "p2"]),
        ({"where": {"category": "poetry"}}, ["c1", "c5"]),
        ({"where": {"category": ["math", "misc"]}}, ["c2", "c3"]),  # c4 (misc) is a reject, not a prompt
        ({"where": {"category": {"ne": "misc"}}}, ["c1", "c2", "c5"]),
        ({"where": {"category": {"not_in": ["misc", "math"]}}, "limit": 1}, ["c1"]),
        ({"where": {"id": {"in": ["c3", "c5"]}}, "streaming": True}, ["c3", "c5"]),
        ({"limit": 2, "streaming": True}, ["c1", "c2"]),
    ],
)
def test_hub_config_split_filter_and_limit(
    hub_folder: Path, options: dict[str, Any], expected_ids: list[str]
) -> None:
    prompts, _ = _hub(hub_folder, **options)
    assert [p.prompt_id for p in prompts] == expected_ids


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"split": "validation"}, "Unknown split"),
        ({"config": "nope"}, "'nope' not found"),
        (
            {"where": {"category": "cooking"}},
            (
                "no rows of hubds match prompts.where (category == 'cooking'); "
                "'category' holds e.g. 'poetry', 'math', 'misc'"
            ),
        ),
        ({"where": {"topic": "x"}}, "prompts.where names column 'topic', which no row of hubds has"),
        (
            {"where": {"id": "c4"}},
            "no usable prompts in hubds: all 1 were rejected, e.g. 'c4' (chat_system_message",
        ),
    ],
)
def test_hub_mistakes_are_one_line_user_errors(
    hub_folder: Path, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(UserError) as caught:
        _hub(hub_folder, **options)
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("prompts", "message"),
    [
        ({"path": "hf://org/name", "hf": "hf://org/name"}, "not both"),
        ({"path": "p.jsonl", "hf": "hf://org/name"}, "exactly one of 'path', 'name' or 'hf'"),
        ({"hf": {"dataset": "hf://org/name", "splt": "train"}}, "prompts.hf.splt: unknown key"),
        (
            {"hf": "hf://org/name", "where": {"lang": {"like": "en%"}}},
            "a condition is one of eq, ne, in, not_in",
        ),
        ({"hf": "hf://org/name", "where": {"lang": {"in": "en"}}}, "expected a non-empty list"),
        ({"hf": "hf://org/name", "where": {"lang": {"eq": {"x": 1}}}}, "expected a string, number"),
    ],
)
def test_prompt_source_config_mistakes(prompts: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError) as caught:
        parse_config(_config(prompts))
    assert message in str(caught.value)


def test_hub_shorthands_and_card_wording() -> None:
    by_path = parse_config(_config({"path": "hf://HuggingFaceH4/ultrachat_200k"})).prompts
    by_hf = parse_config(
        _config(
            {
                "hf": {
                    "dataset": "hf://HuggingFaceH4/ultrachat_200k",
                    "split": "train_sft",
                    "revision": "abc123",
                }
            }
        )
    ).prompts
    assert (
        by_path.hf is not None
        and by_path.hf.dataset == "hf://HuggingFaceH4/ultrachat_200k"
        and by_path.path is None
    )
    assert by_hf.describe() == (
        "the Hugging Face dataset `HuggingFaceH4/ultrachat_200k` (split `train_sft`, revision `abc123`)"
    )


def test_a_relative_hub_folder_is_found_next_to_the_config(hub_folder: Path, tmp_path: Path) -> None:
    config_dir = hub_folder.parent
    config = write_config(config_dir / "c.yaml", _config({"hf": {"dataset": "hubds", "split": "test"}}))
    loaded = load_config(config)
    assert loaded.prompts.hf is not None and loaded.prompts.hf.dataset == str(hub_folder)
    assert loaded.prompts.describe() == "the local dataset `hubds` (split `test`)"  # no home folder on a card
    assert [p.prompt_id for p in load_source(loaded.prompts)[0]] == ["t1"]
    hub = load_config(write_config(tmp_path / "h.yaml", _config({"path": "hf://org/name"}))).prompts.hf
    assert hub is not None and hub.dataset == "hf://org/name"  # not turned into a file path


def test_hub_without_network_is_one_fast_line(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.yaml", _config({"hf": {"dataset": "hf://someorg/some-prompts", "split": "train"}})
    )
    done = run_cli(
        "build",
        str(config),
        env=cli_env(HF_DATASETS_CACHE=str(tmp_path / "cache")),
        cwd=tmp_path,
        timeout=CLI_TIMEOUT_S,
    )
    _one_error_line(done, "cannot load prompts from hf://someorg/some-prompts (split train): the Hub is off")


def test_unreachable_hub_fails_at_once_instead_of_retrying(tmp_path: Path) -> None:
    """Not switched off but unreachable: `load_dataset` alone would retry for ~25 s, a warning a try."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    env = cli_env(HF_ENDPOINT=f"http://127.0.0.1:{closed}", HF_DATASETS_CACHE=str(tmp_path / "cache"))
    for var in (
        "HF_HUB_OFFLINE",
        "HF_DATASETS_OFFLINE",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        env.pop(var, None)
    config = write_config(tmp_path / "c.yaml", _config({"path": "hf://someorg/some-prompts"}))
    done = run_cli("build", str(config), env=env, cwd=tmp_path, timeout=CLI_TIMEOUT_S)
    _one_error_line(done, f"the Hugging Face Hub at http://127.0.0.1:{closed} is not reachable")


def test_a_hub_layout_dataset_builds_multi_turn_prompts(hub_folder: Path, tmp_path: Path) -> None:
    """The whole build, in the CLI, over the fake server: a `messages` column gives user/assistant/user rows."""
    with FakeLLMServer() as server:
        spec = build_config(server.base_url, tmp_path, shard_size=2)
        spec["prompts"] = {"hf": {"dataset": str(hub_folder)}, "where": {"category": "poetry"}}
        done = run_cli(
            "build",
            str(write_config(tmp_path / "b.yaml", spec)),
            "--quiet",
            "--engine",
            "local",
            env=cli_env(HF_DATASETS_CACHE=str(tmp_path / "cache")),
            timeout=300,
        )
    assert done.returncode == 0, done.stderr
    run_dir = Path(done.stdout.strip().splitlines()[-1])
    recorded = pl.read_parquet(run_dir / "prompts.parquet").to_dicts()
    turns = {
        r["prompt_id"]: json.loads(r["turns"]) if isinstance(r["turns"], str) else r["turns"]
        for r in recorded
    }
    assert turns == {
        "c1": ["Write a haiku about rain.", "Now make every line rhyme."],
        "c5": ["Describe a lighthouse.", "Shorter, please."],
    }
    rows = [
        row
        for path in sorted((run_dir / "dataset" / "dpo").rglob("*.parquet"))
        for row in pl.read_parquet(path).to_dicts()
    ]
    assert rows, "no dpo rows"
    for row in rows:
        assert [m["role"] for m in row["prompt"]] == ["user", "assistant", "user"]
        assert row["prompt"][2]["content"].startswith(("Now make every line rhyme.", "Shorter, please."))
        assert row["prompt"][1]["content"] not in ("Rain on the roof...", "It stands tall.")  # regenerated
    card = (run_dir / "dataset" / "README.md").read_text(encoding="utf-8")
    assert "the local dataset `hubds` (split `train`)" in card and str(tmp_path) not in card


# ------------------------------------------------------------------ chat rows in files


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        (_msgs(("system", "Be terse."), ("user", "Hi")), "chat_system_message: message 1"),
        (_msgs(("assistant", "Hello!"), ("user", "Hi")), "chat_roles_not_alternating: the first message"),
        (_msgs(("user", "Hi"), ("user", "Again")), "chat_roles_not_alternating: message 2 repeats role user"),
        (_msgs(("user", "Hi"), ("tool", "{}")), "chat_unsupported_role: message 2 has role 'tool'"),
        ([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}], "chat_content_not_text: message 1"),
        (_msgs(("user", "  ")), "chat_empty_user_turn: message 1"),
        ([{"content": "no role"}], "chat_unsupported_role: message 1 has role 'None'"),
    ],
)
def test_unusable_conversations_are_rejected_with_their_reason(
    tmp_path: Path, messages: list[Any], reason: str
) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        json.dumps({"id": "bad", "messages": messages})
        + "\n"
        + json.dumps({"id": "ok", "messages": _msgs(("user", "Fine?"))})
        + "\n",
        encoding="utf-8",
    )
    prompts, rejected = load_prompts(path=str(path))
    assert [p.prompt_id for p in prompts] == ["ok"]
    assert [r.item_id for r in rejected] == ["bad"] and rejected[0].reason.startswith(reason), rejected[
        0
    ].reason


def test_sharegpt_conversations_read_as_turns(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(
        json.dumps(
            [
                {
                    "id": "s1",
                    "conversations": [
                        {"from": "human", "value": "Hi there"},
                        {"from": "gpt", "value": "Hello"},
                        {"from": "human", "value": "Tell me a joke"},
                    ],
                }
            ]
        ),
        encoding="utf-8",
    )
    prompts, _ = load_prompts(path=str(path))
    assert prompts[0].turns == ("Hi there", "Tell me a joke")


# ------------------------------------------------------------------ files read as they are

BOM = "\ufeff"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("p.jsonl", BOM + '{"id": "a", "prompt": "Hello?"}\n{"id": "b", "prompt": "Why?"}\n'),
        ("p.json", BOM + '[{"id": "a", "prompt": "Hello?"}, {"id": "b", "prompt": "Why?"}]'),
        ("p.csv", BOM + "id,prompt\na,Hello?\nb,Why?\n"),
        ("p.jsonl", '{"id": "a", "prompt": "Hello?"}\r\n{"id": "b", "prompt": "Why?"}\r\n'),
        (
            "p.jsonl",
            '{"id": "a", "prompt": "Hello?\u2028"}\n{"id": "b", "prompt": "Why?"}\n',
        ),  # U+2028 is no line break
    ],
)
def test_files_with_a_bom_crlf_or_line_separator_load(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8"))
    prompts, _ = load_prompts(path=str(path))
    assert [p.prompt_id for p in prompts] == ["a", "b"]
    assert prompts[1].turns == ("Why?",)


def test_a_text_column_missing_from_the_first_row_is_still_found(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"id": "a", "note": "no prompt here"}\n{"id": "b", "prompt": "Why?"}\n', encoding="utf-8"
    )
    prompts, rejected = load_prompts(path=str(path))
    assert [p.prompt_id for p in prompts] == ["b"] and [(r.item_id, r.reason) for r in rejected] == [
        ("a", "empty_prompt")
    ]


def _parquet(path: Path, columns: dict[str, Any]) -> str:
    pl.DataFrame(columns).write_parquet(path)
    return path.name


@pytest.mark.parametrize(
    ("name", "write", "message"),
    [
        (
            "ids.jsonl",
            '{"prompt": "one"}\n{"prompt": "two"}\n{"id": "c", "prompt": "three"}\n',
            "prompt row 1 in ids.jsonl has no 'id' (other rows have one)",
        ),
        (
            "int.jsonl",
            '{"id": "a", "prompt": "fine"}\n{"id": "b", "prompt": 42}\n',
            "prompt row 2 in int.jsonl: 'prompt' is int, not text",
        ),
        (
            "obj.jsonl",
            '{"id": "a", "prompt": {"text": "hi"}}\n',
            "prompt row 1 in obj.jsonl: 'prompt' is dict, not text",
        ),
        ("nums.jsonl", '{"id": "a", "turns": ["hi", 3]}\n', "'turns' is a list holding int, not text"),
        ("bool.json", '[{"id": "a", "question": true}]', "'question' is bool, not text"),
        ("fid.jsonl", '{"id": 1.5, "prompt": "hi"}\n', "id 'id' is float, expected a string or an integer"),
        ("int.parquet", {"id": ["a", "b"], "prompt": [1, 2]}, "prompt row 1 in int.parquet: 'prompt' is int"),
        (
            "struct.parquet",
            {"id": ["a"], "prompt": [{"text": "hi", "lang": "en"}]},
            "'prompt' is dict, not text",
        ),
        ("rows.jsonl", '{"id": "a", "prompt": "x"}\n["not", "a", "row"]\n', "(row 2 is a list)"),
    ],
)
def test_wrong_types_and_partial_ids_are_refused_with_the_row(
    tmp_path: Path, name: str, write: Any, message: str
) -> None:
    path = tmp_path / name
    if isinstance(write, dict):
        _parquet(path, write)
    else:
        path.write_text(write, encoding="utf-8")
    with pytest.raises(UserError) as caught:
        load_prompts(path=str(path))
    assert message in str(caught.value), str(caught.value)


def test_messages_never_render_unbounded_input(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({f"k{i}" + "x" * 100_000: 1 for i in range(50)}) + "\n", encoding="utf-8")
    with pytest.raises(UserError) as caught:
        load_prompts(path=str(path))
    with pytest.raises(UserError) as filtered:
        load_prompts(path=str(path), where={"y" * 100_000: 1})
    for error in (caught, filtered):
        assert len(str(error.value)) < 2000, len(str(error.value))


def test_integer_ids_and_explicit_ids_on_every_row_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": 7, "prompt": "one"}\n{"id": 8, "prompt": "two"}\n', encoding="utf-8")
    assert [p.prompt_id for p in load_prompts(path=str(path))[0]] == ["7", "8"]


def test_where_compares_booleans_strictly(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"id": "a", "prompt": "x", "flag": 1}\n{"id": "b", "prompt": "y", "flag": true}\n', encoding="utf-8"
    )
    assert [p.prompt_id for p in load_prompts(path=str(path), where={"flag": True})[0]] == ["b"]


# ------------------------------------------------------------------ only regular files, of bounded size


def test_size_cap_from_config_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a", "prompt": "' + "x" * 2000 + '"}\n', encoding="utf-8")
    with pytest.raises(
        UserError, match=r"prompt file is 2\.0 KiB, over the 1000 bytes limit: .*prompts\.max_file_bytes"
    ):
        load_prompts(path=str(path), max_file_bytes=1000)
    monkeypatch.setenv("FACTORY_MAX_INPUT_BYTES", "1500")
    with pytest.raises(UserError, match="over the 1.5 KiB limit"):
        load_prompts(path=str(path))
    assert len(load_prompts(path=str(path), max_file_bytes=10_000)[0]) == 1  # the config's cap wins
    from factory._util.safe_read import read_bytes

    monkeypatch.setenv("FACTORY_MAX_INPUT_BYTES", "lots")
    with pytest.raises(UserError, match="FACTORY_MAX_INPUT_BYTES must be a whole number"):
        read_bytes(path)


def _special_path(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.jsonl"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "devzero":
        path.symlink_to("/dev/zero")
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))  # left bound for the test's life; the tmp folder goes with it
    return path


SPECIAL = [
    ("fifo", "is a named pipe (FIFO), not a regular file"),
    ("devzero", "is a character device, not a regular file"),
    ("socket", "is a socket, not a regular file"),
]


@pytest.mark.parametrize(("kind", "message"), SPECIAL, ids=[k for k, _ in SPECIAL])
def test_special_prompt_paths_fail_at_once_in_the_cli(tmp_path: Path, kind: str, message: str) -> None:
    if kind == "socket" and len(str(tmp_path)) > 90:
        pytest.skip("AF_UNIX paths are limited to ~100 bytes")
    path = _special_path(tmp_path, kind)
    config = write_config(tmp_path / "c.yaml", {**_config({"path": path.name}), "gate": {"enabled": False}})
    done = run_cli("build", str(config), cwd=tmp_path, timeout=CLI_TIMEOUT_S)
    _one_error_line(done, f"prompt file {message}")


def test_special_human_set_paths_fail_at_once(tmp_path: Path) -> None:
    """Every human-set file type through one subprocess (a hang would block it, not the suite)."""
    expected = {}
    for kind, message in SPECIAL[:2]:
        for suffix in (".jsonl", ".json", ".csv", ".parquet"):
            path = _special_path(tmp_path, kind).rename(tmp_path / f"{kind}-set{suffix}")
            expected[str(path)] = f"human set file {message}: {path}"
    code = (
        "import sys\nfrom factory._util.errors import UserError\nfrom judges.humans.human_sets import load_human_set\n"
        "for path in sys.argv[1:]:\n    try:\n        load_human_set(path)\n"
        "    except UserError as e:\n        print(e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *expected],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=REPO,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == list(expected.values())


def _one_error_line(done: subprocess.CompletedProcess[str], expect: str) -> None:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
    assert expect in lines[0], lines[0]
