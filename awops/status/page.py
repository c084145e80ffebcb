"""The status page: the ``/api/status`` document as one self-contained HTML page.

No external asset, no script: inline CSS (light and dark), a table per section that scrolls
sideways on a phone, and ``<meta http-equiv="refresh">`` to keep it current. Every string from
the document is escaped, since job summaries quote what backends said.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from awops.sizes import DECIMAL_UNITS, size_text
from awops.status.board import parse_time, relative_time

DEFAULT_REFRESH_SECONDS = 10
# Strict enough for a page that may be left open on a wall screen; blocks any script or asset.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
LINKS = ("/metrics", "/healthz", "/readyz", "/api/status")

_STYLE = """
:root { color-scheme: light dark; --fg: #1b1f24; --bg: #fff; --muted: #5b6470;
  --line: #d6dbe1; --ok: #1a7f37; --problem: #9a6700; --error: #cf222e; --idle: #6e7781; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9aa5b1; --line: #30363d;
    --ok: #3fb950; --problem: #d29922; --error: #f85149; --idle: #8b949e; } }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 80rem; padding: 0.75rem; color: var(--fg);
  background: var(--bg); font: 15px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; }
h1 { font-size: 1.3rem; margin: 0.2rem 0; }
h1 small { color: var(--muted); font-weight: normal; display: inline; font-size: 1rem; }
h2 { font-size: 1.05rem; margin: 1.2rem 0 0.4rem; }
.verdict { font-weight: 600; margin: 0.2rem 0 0.6rem; }
.verdict.ok { color: var(--ok); } .verdict.bad { color: var(--error); }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: 0.35rem 0.5rem;
  border-bottom: 1px solid var(--line); white-space: nowrap; }
td.summary { white-space: normal; min-width: 14rem; overflow-wrap: anywhere; }
tr[data-target] th { white-space: normal; overflow-wrap: anywhere; min-width: 12rem; }
tr[data-status="problem"] th { border-left: 4px solid var(--problem); }
tr[data-status="error"] th { border-left: 4px solid var(--error); }
thead th { color: var(--muted); font-weight: 600; font-size: 0.85rem; }
small { color: var(--muted); display: block; font-size: 0.8rem; }
.badge { display: inline-block; padding: 0 0.45rem; border-radius: 0.6rem; font-weight: 600;
  border: 1px solid currentColor; }
.ok { color: var(--ok); } .problem { color: var(--problem); } .error { color: var(--error); }
.skipped, .pending { color: var(--idle); }
nav a { margin-right: 1rem; } footer { color: var(--muted); font-size: 0.8rem; margin-top: 1.2rem; }
"""


def render_page(
    document: Mapping[str, Any], now: float, refresh_seconds: int = DEFAULT_REFRESH_SECONDS
) -> str:
    """The page for ``document`` (the ``/api/status`` document) as of ``now``."""
    jobs: Sequence[Mapping[str, Any]] = document.get("jobs", [])
    failing = [job for job in jobs if job.get("status") in ("problem", "error")]
    instance = str(document.get("instance") or "")
    if failing:
        verdict = f"{len(failing)} of {len(jobs)} jobs need attention"
        title = f"awops: {len(failing)} failing"
    else:
        verdict = f"all {len(jobs)} jobs healthy" if jobs else "no job scheduled"
        title = "awops: healthy"
    refresh = (
        f'<meta http-equiv="refresh" content="{int(refresh_seconds)}">\n'
        if refresh_seconds > 0
        else ""
    )
    parts = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        '<meta name="color-scheme" content="light dark">\n',
        refresh,
        f"<title>{_e(title)}{' · ' + _e(instance) if instance else ''}</title>\n",
        f"<style>{_STYLE}</style>\n</head>\n<body>\n<header>\n",
        f"<h1>awops <small>{_e(instance)}</small></h1>\n",
        f'<p class="verdict {"bad" if failing else "ok"}" id="verdict">{_e(verdict)}</p>\n',
        "<nav>",
        "".join(f'<a href="{link}">{link}</a>' for link in LINKS),
        "</nav>\n</header>\n<main>\n",
        _jobs_section(jobs, now),
        _backups_section(document.get("backups", []), now),
        "</main>\n<footer>",
        f"awops {_e(str(document.get('version', '')))}",
        f" · started {_e(_clock(document.get('started_at')))}",
        f" · page made {_e(_clock(document.get('generated_at')))}",
        f" · refreshes every {int(refresh_seconds)} s" if refresh_seconds > 0 else "",
        "</footer>\n</body>\n</html>\n",
    ]
    return "".join(parts)


def _jobs_section(jobs: Sequence[Mapping[str, Any]], now: float) -> str:
    headers = ("Job", "Status", "Last run", "Last success", "Next run", "Duration", "Summary")
    rows = []
    for job in jobs:
        name = str(job.get("job", ""))
        status = job.get("status")
        shown = str(status) if status else "not run yet"
        running = job.get("running_since")
        running_note = f"<small>running since {_e(_clock(running))}</small>" if running else ""
        rows.append(
            f'<tr id="job-{_e(name)}" data-status="{_e(str(status or "pending"))}">'
            f'<th scope="row">{_e(name)}<small>{_e(str(job.get("schedule") or ""))}</small></th>'
            f'<td class="status"><span class="badge {_e(str(status or "pending"))}">'
            f"{_e(shown)}</span>{running_note}</td>"
            f'<td class="last-run">{_time(job.get("last_run"), now)}</td>'
            f'<td class="last-success">{_time(job.get("last_success"), now)}</td>'
            f'<td class="next-run">{_time(job.get("next_run"), now)}</td>'
            f'<td class="duration">{_duration(job.get("duration_seconds"))}</td>'
            f'<td class="summary">{_e(str(job.get("summary") or ""))}</td></tr>'
        )
    return _table("jobs", "Jobs", headers, rows, "no job is scheduled")


def _backups_section(backups: Sequence[Mapping[str, Any]], now: float) -> str:
    if not backups:
        return ""
    headers = ("Target", "Newest backup", "Created", "Size", "Verified", "Last verify")
    rows = []
    for backup in backups:
        target = str(backup.get("target", ""))
        error = backup.get("error")
        newest = backup.get("id")
        if newest:
            cells = (
                f'<td class="backup">{_e(str(newest))}</td>'
                f'<td class="created">{_time(backup.get("created"), now)}</td>'
                f'<td class="size">{_size(backup.get("size_bytes"))}</td>'
            )
        else:
            cells = f'<td class="backup" colspan="3">{_e(str(error or "no backup known"))}</td>'
        last = backup.get("last_verify")
        last_cell = (
            f"{_verdict(last, now)}<small>{_e(str(last.get('backup', '')))}</small>"
            if isinstance(last, Mapping)
            else "never"
        )
        rows.append(
            f'<tr data-target="{_e(target)}"><th scope="row">{_e(target)}'
            f"<small>{_e(str(backup.get('backend', '')))}</small></th>{cells}"
            f'<td class="verified">{_verdict(backup.get("verified"), now, "not yet")}</td>'
            f'<td class="last-verify">{last_cell}</td></tr>'
        )
    return _table("backups", "Newest backup per target", headers, rows, "")


def _table(table_id: str, title: str, headers: Sequence[str], rows: list[str], empty: str) -> str:
    head = "".join(f'<th scope="col">{_e(header)}</th>' for header in headers)
    if not rows:
        rows = [f'<tr><td colspan="{len(headers)}">{_e(empty)}</td></tr>']
    body = "\n".join(rows)
    return (
        f'<section><h2>{_e(title)}</h2>\n<div class="scroll"><table id="{table_id}">'
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table></div></section>\n"
    )


def _verdict(verification: Any, now: float, missing: str = "never") -> str:
    if not isinstance(verification, Mapping):
        return f'<span class="pending">{_e(missing)}</span>'
    ok = verification.get("ok") is True
    word = '<span class="badge ok">ok</span>' if ok else '<span class="badge error">failed</span>'
    return f"{word} {_time(verification.get('at'), now)}"


def _time(value: Any, now: float) -> str:
    """How long ago (or until) an ISO time is, with the time itself beneath."""
    moment = parse_time(value)
    if moment is None:
        return '<span class="pending">-</span>'
    return (
        f'<time datetime="{_e(str(value))}">{_e(relative_time(moment - now))}</time>'
        f"<small>{_e(_clock(value))}</small>"
    )


def _clock(value: Any) -> str:
    text = str(value or "")
    return text[:19].replace("T", " ") + "Z" if len(text) >= 19 else text


def _duration(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return '<span class="pending">-</span>'
    if value < 60:
        return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes} min {seconds} s"


def _size(value: Any) -> str:
    if not isinstance(value, int) or isinstance(value, bool):
        return '<span class="pending">-</span>'
    return size_text(value, step=1000, units=DECIMAL_UNITS)


def _e(text: str) -> str:
    return escape(text, quote=True)
