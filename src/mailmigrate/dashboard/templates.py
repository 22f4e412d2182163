"""Jinja2 templates, kept in the package as text so that an installed mailmigrate needs no data files."""

BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mailmigrate — {{ project }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#222}
header{background:#1f3a5f;color:#fff;padding:.8em 1.5em;display:flex;gap:2em;align-items:center}
header a{color:#fff;text-decoration:none;margin-right:1em}header h1{font-size:1.2em;margin:0}
main{padding:1.5em}table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #ddd;padding:.45em .7em;text-align:left;vertical-align:top}
th{background:#eef1f5}.state{font-weight:600;padding:.1em .5em;border-radius:.3em}
.s-migrated{background:#d4f4dd}.s-failed{background:#fbd5d5}.s-syncing,.s-finishing,.s-aborting{background:#fff2c6}
.s-migrating{background:#dbe9fb}.s-skipped{background:#e4e4e4}.s-not_started{background:#f1f1f1}
button{margin:0 .2em .2em 0;padding:.3em .8em;border:1px solid #1f3a5f;background:#fff;border-radius:.3em;cursor:pointer}
button:hover{background:#1f3a5f;color:#fff}.flash{background:#fff8d6;border:1px solid #e5d27a;padding:.6em;margin-bottom:1em}
.bar{background:#e5e7eb;border-radius:.3em;height:.8em;width:12em;display:inline-block;vertical-align:middle}
.bar span{display:block;height:100%;background:#2f855a;border-radius:.3em}
.err{color:#a61b1b}.small{font-size:.85em;color:#555}
</style></head><body>
<header><h1>mailmigrate · {{ project }}</h1>
{% if authed %}<nav><a href="{{ url_for('units') }}">Units</a><a href="{{ url_for('logs') }}">Logs</a>
<a href="{{ url_for('report') }}">Report</a></nav>
<form method="post" action="{{ url_for('logout') }}" style="margin-left:auto">
<input type="hidden" name="csrf" value="{{ csrf }}"><button>Log out</button></form>{% endif %}
</header><main>
{% for m in get_flashed_messages() %}<div class="flash">{{ m }}</div>{% endfor %}
{% block body %}{% endblock %}</main></body></html>"""

LOGIN = """{% extends "base.html" %}{% block body %}
<h2>Log in</h2>
<form method="post" action="{{ url_for('login') }}">
<input type="hidden" name="csrf" value="{{ csrf }}">
<label>Dashboard token <input type="password" name="token" autofocus autocomplete="current-password"></label>
<button type="submit">Log in</button></form>
<p class="small">The token is in the file named when <code>mailmigrate serve</code> started.</p>
{% endblock %}"""

UNITS = """{% extends "base.html" %}{% block body %}
<h2>Units</h2>
<table id="units"><tr><th>unit</th><th>state</th><th>progress</th><th>last result</th><th>actions</th></tr>
{% for u in units %}
<tr data-unit="{{ u.unit }}">
<td><a href="{{ url_for('history', unit=u.unit) }}">{{ u.unit }}</a>{% if u.found %}
<div class="small">found {{ u.found.messages }} messages in {{ u.found.folders }} folders</div>{% endif %}</td>
<td><span class="state s-{{ u.state }}" data-field="state">{{ u.state }}</span></td>
<td data-field="progress">{% set p = u.progress %}{% if p and p.total %}
<span class="bar"><span style="width:{{ (100 * p.done / p.total)|round|int }}%"></span></span>
{{ p.done }}/{{ p.total }} <span class="small">{{ p.folder }}</span>{% endif %}</td>
<td data-field="result">{% if u.last_error %}<span class="err">{{ u.last_error }}</span>{% elif u.last_result %}
copied {{ u.last_result.counters.copied }}, skipped {{ u.last_result.counters.skipped }},
failed {{ u.last_result.counters.failed }}{% endif %}
{% if worker_last.get(u.unit) %}<div class="small">{{ worker_last[u.unit] }}</div>{% endif %}</td>
<td>{% if u.unit in busy %}<em>running…</em>{% else %}{% for a in u.actions %}
<form method="post" action="{{ url_for('act', unit=u.unit, action=a) }}" style="display:inline">
<input type="hidden" name="csrf" value="{{ csrf }}"><button type="submit" name="do" value="{{ a }}">{{ a }}</button></form>
{% endfor %}{% endif %}</td></tr>
{% endfor %}</table>
<script>
// Live progress: poll the JSON status and update state/progress cells in place.
async function poll(){try{const r=await fetch("{{ url_for('api_status') }}",{credentials:"same-origin"});
if(!r.ok)return;const d=await r.json();let reload=false;
for(const u of d.units){const tr=document.querySelector(`tr[data-unit="${CSS.escape(u.unit)}"]`);if(!tr)continue;
const st=tr.querySelector('[data-field=state]');if(st.textContent!==u.state){reload=true}
const p=u.progress||{};if(p.total){tr.querySelector('[data-field=progress]').innerHTML=
`<span class="bar"><span style="width:${Math.round(100*p.done/p.total)}%"></span></span> ${p.done}/${p.total} <span class="small"></span>`;
tr.querySelector('[data-field=progress] .small').textContent=p.folder||""}}
if(reload||(d.busy.length===0&&document.querySelector('em'))){location.reload()}}catch(e){}}
setInterval(poll,2000);
</script>
{% endblock %}"""

LOGS = """{% extends "base.html" %}{% block body %}
<h2>Logs</h2>
<form method="get" action="{{ url_for('logs') }}">
<input name="search" value="{{ search or '' }}" placeholder="search">
<select name="unit"><option value="">all units</option>{% for n in unit_names %}
<option value="{{ n }}" {% if n == unit %}selected{% endif %}>{{ n }}</option>{% endfor %}</select>
<button type="submit">Search</button></form>
<table><tr><th>time</th><th>level</th><th>unit</th><th>message</th></tr>
{% for r in rows %}<tr><td class="small">{{ r.at }}</td><td>{{ r.level }}</td><td>{{ r.unit or "" }}</td>
<td>{{ r.message }}</td></tr>{% else %}<tr><td colspan="4">no log lines</td></tr>{% endfor %}</table>
{% endblock %}"""

HISTORY = """{% extends "base.html" %}{% block body %}
<h2>History of {{ unit }}</h2>
<table><tr><th>time</th><th>who</th><th>action</th><th>from</th><th>to</th><th>detail</th></tr>
{% for h in rows %}<tr><td class="small">{{ h.at }}</td><td>{{ h.actor }}</td><td>{{ h.action }}</td>
<td>{{ h.before }}</td><td>{{ h.after }}</td><td>{{ h.detail }}</td></tr>{% endfor %}</table>
{% endblock %}"""

REPORT = """{% extends "base.html" %}{% block body %}
<form method="post" action="{{ url_for('verify_all') }}"><input type="hidden" name="csrf" value="{{ csrf }}">
<button type="submit">Verify all started units now</button></form>
<iframe srcdoc="{{ report_html }}" style="width:100%;height:75vh;border:1px solid #ccc;background:#fff" title="report"></iframe>
{% endblock %}"""
