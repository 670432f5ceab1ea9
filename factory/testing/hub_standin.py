"""A loopback stand-in for the Hugging Face Hub: just what `create_repo` + `upload_folder` call.

Tests point `HF_ENDPOINT` at it and publish for real through `huggingface_hub`. It implements:

* `POST /api/repos/create` (JSON `name`, `organization`, `type`, `visibility`/`private`),
* `GET  /api/{type}s/{ns}/{name}/tree/{rev}[/{path}]` (listing, for `delete_patterns`),
* `POST /api/{type}s/{ns}/{name}/preupload/{rev}` (answers `regular` for every file, so content
  travels base64 inside the commit; the Xet and LFS storage protocols are out of its scope),
* `POST /api/{type}s/{ns}/{name}/commit/{rev}` (NDJSON: `header`, `file`, `deletedFile` lines),
* `GET  /api/{type}s/{ns}/{name}[/revision/{rev}]` (repo info),
* `POST /api/validate-yaml` (the card's YAML front matter: a subset of the Hub's checks, namely a
  mapping whose `license`, `tags` and `configs` have the Hub's shapes).

Every request is logged (method, path, status; never headers or bodies); unknown routes answer 404
and are listed in `unknown`, which is how the routes above were found. With `expected_token`, a
request without `Authorization: Bearer <that token>` gets 401; the token is only compared in memory.

Example::

    with HubStandIn(expected_token="hf_test") as hub:
        os.environ["HF_ENDPOINT"] = hub.url
        ...  # publish
        hub.repos["org/name"].files["README.md"]
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web


@dataclass
class StoredRepo:
    """One repository as the stand-in holds it: path -> bytes at the head commit."""

    repo_id: str
    repo_type: str
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[dict[str, Any]] = field(default_factory=list)

    @property
    def head(self) -> str:
        return self.commits[-1]["oid"] if self.commits else "0" * 40


def card_metadata_errors(readme: str) -> list[str]:
    """Problems with a card's YAML front matter, in the shapes the Hub expects (empty: none found)."""
    import yaml

    if not readme.startswith("---"):
        return ["no YAML metadata block at the top of README.md"]
    try:
        _, block, _ = readme.split("---", 2)
        meta = yaml.safe_load(block)
    except (ValueError, yaml.YAMLError) as exc:
        return [f"metadata is not valid YAML: {exc}"]
    if not isinstance(meta, dict):
        return ["metadata must be a YAML mapping"]
    errors = []
    lic = meta.get("license")
    if lic is not None and not (
        isinstance(lic, str) or (isinstance(lic, list) and all(isinstance(x, str) for x in lic))
    ):
        errors.append('"license" must be a string or a list of strings')
    tags = meta.get("tags")
    if tags is not None and not (isinstance(tags, list) and all(isinstance(x, str) for x in tags)):
        errors.append('"tags" must be a list of strings')
    configs = meta.get("configs")
    if configs is not None:
        if not isinstance(configs, list):
            errors.append('"configs" must be a list')
        else:
            for i, config in enumerate(configs):
                if not isinstance(config, dict) or not isinstance(config.get("config_name"), str):
                    errors.append(f'"configs[{i}]" must be a mapping with a string "config_name"')
                elif not isinstance(config.get("data_files"), (str, list, dict)):
                    errors.append(f'"configs[{i}].data_files" must be a string, a list or a mapping')
    return errors


def _blob_oid(data: bytes) -> str:
    # The git blob sha1 the Hub reports for regular files.
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubStandIn:
    """The stand-in server on 127.0.0.1, in a background thread (use as a context manager)."""

    def __init__(self, expected_token: str | None = None) -> None:
        self.expected_token = expected_token
        self.repos: dict[str, StoredRepo] = {}
        self.log: list[str] = []
        self.unknown: list[str] = []
        self.unauthorized = 0
        self._port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    # -- plumbing ---------------------------------------------------------------------------
    def start(self) -> Self:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            app = web.Application(middlewares=[self._middleware], client_max_size=1024**3)
            app.router.add_route("*", "/{tail:.*}", self._dispatch)
            self._runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            self._port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="hub-standin", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("hub stand-in did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if (
            self.expected_token is not None
            and request.headers.get("Authorization") != f"Bearer {self.expected_token}"
        ):
            self.unauthorized += 1
            response: web.StreamResponse = web.json_response({"error": "Invalid credentials"}, status=401)
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = exc
        self.log.append(f"{request.method} {request.path} -> {response.status}")
        return response

    # -- routes -----------------------------------------------------------------------------
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        method = request.method
        if method == "POST" and parts == ["api", "repos", "create"]:
            return await self._create(request)
        if method == "POST" and parts == ["api", "validate-yaml"]:
            return await self._validate_yaml(request)
        if len(parts) >= 4 and parts[0] == "api" and parts[1] in ("datasets", "models", "spaces"):
            repo_type = parts[1][:-1]
            repo_id = f"{parts[2]}/{parts[3]}"
            rest = parts[4:]
            if method == "POST" and rest[:1] == ["preupload"]:
                return await self._preupload(request, repo_id)
            if method == "POST" and rest[:1] == ["commit"]:
                return await self._commit(request, repo_id)
            if method == "GET" and rest[:1] == ["tree"]:
                return self._tree(repo_id, "/".join(rest[2:]))
            if method == "GET" and (not rest or rest[:1] == ["revision"]):
                return self._info(repo_id, repo_type)
        self.unknown.append(f"{method} {request.path}")
        return web.json_response(
            {"error": f"stand-in does not implement {method} {request.path}"}, status=404
        )

    async def _validate_yaml(self, request: web.Request) -> web.Response:
        body = await request.json()
        errors = card_metadata_errors(str(body.get("content", "")))
        if errors:
            return web.json_response({"errors": [{"message": e} for e in errors]}, status=400)
        return web.json_response({"errors": [], "warnings": []})

    def _repo(self, repo_id: str) -> StoredRepo:
        if repo_id not in self.repos:
            raise web.HTTPNotFound(
                text=json.dumps({"error": "Repository not found"}),
                content_type="application/json",
                headers={"X-Error-Code": "RepoNotFound"},
            )
        return self.repos[repo_id]

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        repo_id = f"{body.get('organization')}/{body['name']}" if body.get("organization") else body["name"]
        repo_type = body.get("type", "model")
        private = body.get("private") is True or body.get("visibility") == "private"
        if repo_id in self.repos:
            return web.json_response(
                {"error": "You already created this dataset repo", "url": self._repo_url(repo_id, repo_type)},
                status=409,
            )
        self.repos[repo_id] = StoredRepo(repo_id, repo_type, private)
        return web.json_response({"url": self._repo_url(repo_id, repo_type), "name": repo_id})

    def _repo_url(self, repo_id: str, repo_type: str) -> str:
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self.url}/{prefix}{repo_id}"

    async def _preupload(self, request: web.Request, repo_id: str) -> web.Response:
        repo = self._repo(repo_id)
        body = await request.json()
        files = []
        for f in body.get("files", []):
            current = repo.files.get(f["path"])
            files.append(
                {
                    "path": f["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": _blob_oid(current) if current is not None else None,
                }
            )
        return web.json_response({"files": files, "commitOid": repo.head})

    async def _commit(self, request: web.Request, repo_id: str) -> web.Response:
        repo = self._repo(repo_id)
        text = (await request.read()).decode("utf-8")
        header: dict[str, Any] = {}
        added: dict[str, bytes] = {}
        deleted: list[str] = []
        for line in filter(None, text.splitlines()):
            item = json.loads(line)
            value = item.get("value", {})
            if item.get("key") == "header":
                header = value
            elif item.get("key") == "file":
                if value.get("encoding") != "base64":
                    raise web.HTTPBadRequest(text=f"unsupported encoding {value.get('encoding')}")
                added[value["path"]] = base64.b64decode(value["content"])
            elif item.get("key") in ("deletedFile", "deletedFolder"):
                deleted.append(value["path"])
            else:
                raise web.HTTPBadRequest(
                    text=f"stand-in does not implement commit operation {item.get('key')}"
                )
        for path in deleted:
            for name in [p for p in repo.files if p == path or p.startswith(path.rstrip("/") + "/")]:
                del repo.files[name]
        repo.files.update(added)
        oid = hashlib.sha1(json.dumps([repo.head, sorted(added), deleted]).encode()).hexdigest()
        repo.commits.append(
            {"oid": oid, "summary": header.get("summary", ""), "added": sorted(added), "deleted": deleted}
        )
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        return web.json_response(
            {
                "success": True,
                "commitOid": oid,
                "commitUrl": f"{self.url}/{prefix}{repo_id}/commit/{oid}",
                "pullRequestUrl": None,
            }
        )

    def _tree(self, repo_id: str, path: str) -> web.Response:
        repo = self._repo(repo_id)
        prefix = path.strip("/")
        entries = [
            {"type": "file", "path": p, "size": len(data), "oid": _blob_oid(data)}
            for p, data in sorted(repo.files.items())
            if not prefix or p.startswith(prefix + "/")
        ]
        return web.json_response(entries)

    def _info(self, repo_id: str, repo_type: str) -> web.Response:
        repo = self._repo(repo_id)
        return web.json_response(
            {
                "id": repo_id,
                "_id": repo_id,
                "private": repo.private,
                "sha": repo.head,
                "siblings": [{"rfilename": p} for p in sorted(repo.files)],
            }
        )
