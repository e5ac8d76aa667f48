"""The dashboard's HTML, rendered on the server from :mod:`.data`'s dicts. Pure: every
text that comes from the cluster (task names, errors, log names...) is escaped here, and
no page holds an inline script (the Content-Security-Policy forbids them)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

from ember_node.log_files import format_size

PAGES = (("overview", "/", "Overview"), ("tasks", "/tasks", "Tasks"), ("actors", "/actors", "Actors"),
         ("objects", "/objects", "Objects"), ("jobs", "/jobs", "Jobs"), ("logs", "/logs", "Logs"))


def e(value: Any) -> str:
    """``value`` as escaped HTML text (None is empty)."""
    return "" if value is None else escape(str(value), quote=True)


def short_id(value: Any) -> str:
    return "" if not value else str(value)[:12]


def when(ms: Any) -> str:
    """A time in milliseconds since the epoch as local HH:MM:SS."""
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000)) if ms else ""


def log_link(key: str, value: Any, text: Any) -> str:
    """A link to the log view: ``/logs?<key>=<value>``."""
    return f'<a href="/logs?{key}={quote(str(value))}">{e(text)}</a>'


def number(x: Any) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.2f}"


def layout(title: str, active: str, body: str, refresh: str = "") -> str:
    """A whole page: header, navigation, ``body`` in ``<main>`` (re-fetched every few
    seconds from ``refresh`` by dashboard.js when given)."""
    nav = "".join(f'<a href="{href}"{" class=active" if key == active else ""}>{label}</a>'
                  for key, href, label in PAGES)
    attr = f' data-refresh="{e(refresh)}"' if refresh else ""
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<title>{e(title)} · ember</title><link rel=stylesheet href=/static/dashboard.css>"
            "<script src=/static/dashboard.js defer></script></head><body>"
            f"<header><span class=brand>ember</span><nav>{nav}</nav></header>"
            f'<main id=content{attr}>{body}</main></body></html>')


def login(error: str = "", next_path: str = "/") -> str:
    """The login page: one token field."""
    msg = f"<p class=error>{e(error)}</p>" if error else ""
    return ("<!doctype html><html lang=en><head><meta charset=utf-8><title>Log in · ember</title>"
            "<link rel=stylesheet href=/static/dashboard.css></head><body class=login>"
            "<form method=post action=/login><h1>ember dashboard</h1>"
            "<p>Give the cluster token (the one <code>ember start --head</code> printed, or "
            "<code>EMBER_TOKEN</code>).</p>" + msg +
            f'<input type=hidden name=next value="{e(next_path)}">'
            "<input type=password name=token id=token autocomplete=current-password "
            "placeholder=token autofocus><button type=submit id=login>Log in</button></form></body></html>")


def table(cols: Sequence[tuple[str, str]], rows: Iterable[dict[str, str]], table_id: str,
          empty: str) -> str:
    """An HTML table; ``cols`` are (key, heading); row values must already be HTML."""
    rows = list(rows)
    if not rows:
        return f'<p class=empty id="{table_id}-empty">{e(empty)}</p>'
    head = "".join(f"<th>{e(h)}</th>" for _, h in cols)
    body = "".join("<tr>" + "".join(f'<td class="c-{k}">{r.get(k, "")}</td>' for k, _ in cols) + "</tr>"
                   for r in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _bar(used: float, total: float) -> str:
    pct = 0 if not total else max(0, min(100, round(100 * used / total)))
    return f'<span class=bar><span class="fill w{pct // 5 * 5}"></span></span>'


def overview(data: dict[str, Any]) -> str:
    """Cards (nodes, tasks, store), resource bars, the node table and the live chart."""
    store = data["store"]
    cards = (f'<div class=cards><div class=card><b id=nodes-alive>{data["nodes_alive"]}</b> nodes alive</div>'
             f'<div class=card><b id=tasks-running>{data["tasks_running"]}</b> tasks running</div>'
             f'<div class=card><b id=tasks-pending>{data["tasks_pending"]}</b> tasks pending</div>'
             f'<div class=card><b id=workers>{data["workers"]}</b> workers</div>'
             f'<div class=card><b id=store-used>{e(format_size(store["used"]))}</b> of '
             f'{e(format_size(store["capacity"]))} store, {store["objects"]} objects</div></div>')
    res_rows = []
    for k, v in sorted(data["resources"].items()):
        fmt = format_size if k in ("memory", "object_store_memory") else number
        res_rows.append({"name": e(k), "used": e(fmt(v["used"])), "total": e(fmt(v["total"])),
                         "bar": _bar(v["used"], v["total"])})
    node_rows = []
    for n in data["nodes"]:
        st = n.get("object_store")
        mem = n.get("memory_usage")
        node_rows.append({
            "id": e(short_id(n["node_id"])), "address": e(n["address"]),
            "role": "head" if n["is_head"] else "worker",
            "state": f'<span class="state {"ALIVE" if n["alive"] else "DEAD"}">{"ALIVE" if n["alive"] else "DEAD"}</span>',
            "cpus": e(number(n["resources"].get("CPU", 0))),
            "store": e(f"{format_size(st[0])} / {format_size(st[1])}") if st else "",
            "memory": e(f"{format_size(mem[0])} / {format_size(mem[1])}") if mem else "",
            "cause": e(n["death_cause"])})
    chart = ('<section class=charts><figure><figcaption>tasks finished per second</figcaption>'
             '<svg id=chart-throughput class=chart viewBox="0 0 300 80" preserveAspectRatio=none></svg>'
             '</figure><figure><figcaption>object store used</figcaption>'
             '<svg id=chart-store class=chart viewBox="0 0 300 80" preserveAspectRatio=none></svg>'
             '</figure></section>')
    return (cards + chart + "<h2>Resources</h2>" +
            table((("name", "resource"), ("used", "used"), ("total", "total"), ("bar", "")), res_rows,
                  "resources", "no resources") +
            "<h2>Nodes</h2>" +
            table((("id", "node"), ("address", "address"), ("role", "role"), ("state", "state"),
                   ("cpus", "CPUs"), ("store", "store"), ("memory", "memory"), ("cause", "death cause")),
                  node_rows, "nodes", "no nodes"))


def _state(value: Any) -> str:
    text = e(value)
    return f'<span class="state {text}">{text}</span>'


def filter_form(path: str, states: Sequence[str], state: str, search: str) -> str:
    """A GET form: a state choice and a search box (it reloads the page with them)."""
    opts = "".join(f'<option value="{e(s)}"{" selected" if s == state else ""}>{e(s or "any state")}</option>'
                   for s in ("", *states))
    return (f'<form class=filters method=get action="{e(path)}"><select name=state id=filter-state>{opts}'
            f'</select><input type=search name=q id=search value="{e(search)}" placeholder="search">'
            "<button type=submit>Filter</button></form>")


def _shown(answer: dict[str, Any], what: str) -> str:
    n, total = len(answer["rows"]), answer["total"]
    return f'<p class=count id=count>{total} {e(what)}' + (f" ({n} shown)" if total > n else "") + "</p>"


def tasks(answer: dict[str, Any]) -> str:
    """Running, pending (with the reason) and ended tasks."""
    rows = []
    for t in answer["rows"]:
        duration = t.get("duration_s")
        rows.append({"name": e(t.get("name")), "state": _state(t.get("state")), "type": e(t.get("type")),
                     "node": e(short_id(t.get("node_id"))), "pid": e(t.get("worker_pid")),
                     "attempt": e(t.get("attempt")), "started": e(when(t.get("start_time_ms"))),
                     "duration": e(f"{duration:.3f} s" if duration is not None else ""),
                     "why": e(t.get("pending_reason") or ""),
                     "error": f'<details><summary>{e(t.get("error"))}</summary><pre>{e(t.get("error_message"))}</pre></details>'
                              if t.get("error_message") else "",
                     "id": log_link("task_id", t.get("task_id"), t.get("task_id"))
                           if t.get("worker_pid") else e(t.get("task_id"))})
    return _shown(answer, "tasks") + table(
        (("name", "name"), ("state", "state"), ("type", "type"), ("node", "node"), ("pid", "worker pid"),
         ("attempt", "attempt"), ("started", "started"), ("duration", "duration"), ("why", "pending reason"),
         ("error", "error"), ("id", "task id")), rows, "tasks", "no tasks")


def actors(answer: dict[str, Any]) -> str:
    """Live and dead actors."""
    rows = [{"class": e(a.get("class_name")), "name": e(a.get("name")), "state": _state(a.get("state")),
             "restarts": e(a.get("restarts")), "node": e(short_id(a.get("node_id"))),
             "pid": log_link("name", f"worker-{a.get('pid')}.out", a.get("pid")) if a.get("pid") else "",
             "cause": e(a.get("death_cause")), "id": e(short_id(a.get("actor_id")))}
            for a in answer["rows"]]
    return _shown(answer, "actors") + table(
        (("class", "class"), ("name", "name"), ("state", "state"), ("restarts", "restarts"),
         ("node", "node"), ("pid", "pid"), ("cause", "death cause"), ("id", "actor id")),
        rows, "actors", "no actors")


def objects(answer: dict[str, Any]) -> str:
    """Objects: size, where copies are, who holds references."""
    rows = [{"id": e(short_id(o.get("object_id"))), "state": _state(o.get("state")), "kind": e(o.get("kind")),
             "size": e(format_size(o.get("size") or 0)), "bytes": e(o.get("size")),
             "copies": e("head" + (", " + o["copies_on"] if o.get("copies_on") else "")),
             "holders": e(o.get("holders")), "pins": e(o.get("pins")), "site": e(o.get("call_site"))}
            for o in answer["rows"]]
    return _shown(answer, "objects") + table(
        (("id", "object id"), ("state", "state"), ("kind", "kind"), ("size", "size"), ("bytes", "bytes"),
         ("copies", "copies on"), ("holders", "references"), ("pins", "pins"), ("site", "made at")),
        rows, "objects", "no objects")


def jobs(rows: list[dict[str, Any]], has_runner: bool) -> str:
    """Submitted jobs."""
    out = [{"id": log_link("name", f"job-{j['submission_id']}.log", j["submission_id"]),
            "status": _state(j.get("status")), "entrypoint": f"<code>{e(j.get('entrypoint'))}</code>",
            "started": e(when(j.get("start_time_ms"))), "ended": e(when(j.get("end_time_ms"))),
            "message": e(j.get("message"))} for j in rows]
    empty = ("no jobs yet: submit one with `ember job submit --address HOST:PORT -- python script.py`"
             if has_runner else "this cluster runs no job runner (an embedded cluster): start a head "
             "with `ember start --head` to submit jobs")
    return table((("id", "submission id"), ("status", "status"), ("entrypoint", "entrypoint"),
                  ("started", "started"), ("ended", "ended"), ("message", "message")), out, "jobs", empty)


def logs(files: list[dict[str, Any]], current: str = "") -> str:
    """The log file list and, for ``current``, a live view filled by dashboard.js."""
    rows = [{"name": log_link("name", f["name"], f["name"]), "kind": e(f["kind"]),
             "pid": e(f.get("pid")), "size": e(format_size(f["size"])), "modified": e(when(f["mtime"] * 1000))}
            for f in files]
    view = ""
    if current:
        view = (f'<h2>{e(current)}</h2><pre id=log-view class=log data-log="{e(current)}"></pre>'
                '<label><input type=checkbox id=log-follow checked> follow</label>')
    return view + "<h2>Log files</h2>" + table(
        (("name", "file"), ("kind", "kind"), ("pid", "worker pid"), ("size", "size"), ("modified", "modified")),
        rows, "logfiles", "no log files")


def error_page(message: str) -> str:
    """A message in place of the content (the agent did not answer, a bad filter...)."""
    return f"<p class=error id=error>{e(message)}</p>"
