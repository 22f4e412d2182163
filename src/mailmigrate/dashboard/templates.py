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
.cards{display:flex;gap:1em;flex-wrap:wrap;margin-bottom:1em}.card{background:#fff;border:1px solid #ddd;border-radius:.4em;padding:.7em 1em;min-width:11em}
.big{font-size:1.5em;font-weight:600}.bar.wide{width:100%}.toolbar{margin:.6em 0;display:flex;gap:.5em;align-items:center;flex-wrap:wrap}
figure{margin:0 0 1em;background:#fff;border:1px solid #ddd;padding:.5em}.pager{margin:1em 0;display:flex;gap:1em}
td.n{text-align:right}tr.bad{background:#fdd}th a{color:inherit}
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
<section id="totals" class="cards">
<div class="card"><div class="big" data-total="units">{{ t.done_units }} / {{ t.units }}</div>units done
<span class="bar wide"><span style="width:{{ (100 * t.done_units / t.units)|round|int if t.units else 0 }}%"></span></span>
<div class="small">{% for s, n in t.by_state.items() %}<a href="{{ url_for('units', state=s) }}">{{ s }} {{ n }}</a>{% if not loop.last %} · {% endif %}{% endfor %}</div></div>
<div class="card"><div class="big" data-total="messages">{{ t.copied_messages }}</div>messages copied
<div class="small">{{ t.copied_bytes|size }}; verified on the target: {{ t.verified_messages }} of {{ t.source_messages }} measured on the source ({{ t.verified_bytes|size }})</div></div>
<div class="card"><div class="big" data-total="rate">{{ t.rate_msgs_per_min|round|int }}/min</div>copy rate
<div class="small">{{ t.rate_bytes_per_min|size }}/min over the last minutes that copied</div></div>
<div class="card"><div class="big" data-total="eta">{{ t.eta }}</div>left at this rate
<div class="small">{{ t.remaining_messages }} messages to copy{% if t.unknown_units %}, and {{ t.unknown_units }} unit(s) not measured yet (counted once started){% endif %}</div></div>
<div class="card"><div class="big {% if t.failed %}err{% endif %}" data-total="failed">{{ t.failed }}</div>failed
<div class="small"><a href="{{ url_for('units', state='problem') }}">units with problems</a></div></div>
</section>
<figure id="throughput"><figcaption class="small">Messages copied per minute (last {{ chart.minutes }} minutes with copying)</figcaption>
<svg viewBox="0 0 {{ chart.width }} {{ chart.height + 14 }}" width="100%" height="{{ chart.height + 14 }}" role="img" aria-label="throughput">
{% for b in chart.bars %}<rect x="{{ b.x }}" y="{{ b.y }}" width="{{ b.w }}" height="{{ b.h }}" fill="#2f855a"><title>{{ b.minute }}: {{ b.messages }} messages, {{ b.bytes|size }}</title></rect>{% endfor %}
{% if not chart.bars %}<text x="4" y="20" font-size="12" fill="#777">nothing copied yet</text>{% endif %}
<text x="{{ chart.first_x }}" y="{{ chart.height + 12 }}" font-size="10" fill="#777" text-anchor="{{ 'end' if chart.first_x > chart.width / 2 else 'start' }}">{{ chart.first }}</text>
<text x="{{ chart.width }}" y="{{ chart.height + 12 }}" font-size="10" fill="#777" text-anchor="end">{{ chart.last }} · peak {{ chart.peak }}/min</text>
</svg></figure>
<form id="filter" method="get" action="{{ url_for('units') }}" class="toolbar">
<input name="q" value="{{ f.q }}" placeholder="unit or error contains" aria-label="filter">
<select name="state" aria-label="state"><option value="">every state</option>
{% for s in states %}<option value="{{ s }}" {% if s == f.state %}selected{% endif %}>{{ s }}</option>{% endfor %}</select>
<select name="per" aria-label="per page">{% for n in (25, 50, 100, 250, 500) %}<option {% if n == pg.per %}selected{% endif %}>{{ n }}</option>{% endfor %}</select>
<input type="hidden" name="sort" value="{{ f.sort }}"><input type="hidden" name="desc" value="{{ 1 if f.desc else '' }}">
<button type="submit">Filter</button> <span class="small" id="matching">{{ pg.matching }} matching</span></form>
<form id="bulk" method="post" action="{{ url_for('bulk') }}" class="toolbar">
<input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="q" value="{{ f.q }}">
<input type="hidden" name="state" value="{{ f.state }}">
<select name="action" aria-label="bulk action">{% for a in bulk_actions %}<option>{{ a }}</option>{% endfor %}</select>
<button type="submit" name="scope" value="selected">Do it on the selected</button>
<button type="submit" name="scope" value="matching">Do it on all {{ pg.matching }} matching</button></form>
<table id="units"><tr><th><input type="checkbox" id="select-page" aria-label="select this page"></th>
{% for key, label in columns %}<th><a href="{{ sort_url(key) }}">{{ label }}{% if f.sort == key %} {{ "▼" if f.desc else "▲" }}{% endif %}</a></th>{% endfor %}<th>actions</th></tr>
{% for u in pg.rows %}
<tr data-unit="{{ u.unit }}">
<td><input type="checkbox" name="unit" value="{{ u.unit }}" form="bulk" aria-label="select {{ u.unit }}"></td>
<td><a href="{{ url_for('unit', unit=u.unit) }}">{{ u.unit }}</a>{% if u.found %}
<div class="small">found {{ u.found.messages }} messages in {{ u.found.folders }} folders</div>{% endif %}</td>
<td><span class="state s-{{ u.state }}" data-field="state">{{ u.state }}</span></td>
<td data-field="progress">{% set p = u.progress %}{% if p and p.total %}
<span class="bar"><span style="width:{{ (100 * p.done / p.total)|round|int }}%"></span></span>
{{ p.done }}/{{ p.total }} <span class="small">{{ p.folder }}</span>{% endif %}</td>
<td data-field="result">{% if u.last_error %}<a class="err" href="{{ url_for('logs', unit=u.unit, level='ERROR') }}">{{ u.last_error }}</a>{% elif u.last_result %}
copied {{ u.last_result.counters.copied }}, skipped {{ u.last_result.counters.skipped }},
failed {% if u.last_result.counters.failed %}<a class="err" href="{{ url_for('logs', unit=u.unit, level='ERROR') }}">{{ u.last_result.counters.failed }}</a>{% else %}0{% endif %}{% endif %}
{% if worker_last.get(u.unit) %}<div class="small">{{ worker_last[u.unit] }}</div>{% endif %}</td>
<td class="small">{{ u.updated }}</td>
<td>{% if u.unit in busy %}<em>running…</em>{% else %}{% for a in u.actions %}
<form method="post" action="{{ url_for('act', unit=u.unit, action=a) }}" style="display:inline">
<input type="hidden" name="csrf" value="{{ csrf }}"><button type="submit" name="do" value="{{ a }}">{{ a }}</button></form>
{% endfor %}{% endif %}</td></tr>
{% else %}<tr><td colspan="7">no unit matches</td></tr>{% endfor %}</table>
<nav class="pager">{% if pg.page > 1 %}<a rel="prev" href="{{ page_url(pg.page - 1) }}">← previous</a>{% endif %}
<span>page {{ pg.page }} of {{ pg.pages }}</span>
{% if pg.page < pg.pages %}<a rel="next" href="{{ page_url(pg.page + 1) }}">next →</a>{% endif %}</nav>
<script>
document.getElementById("select-page").addEventListener("change",e=>{
for(const c of document.querySelectorAll('input[name=unit][form=bulk]'))c.checked=e.target.checked});
// Live progress of the rows on this page only: poll the JSON status and update state/progress in place.
const names=[...document.querySelectorAll("tr[data-unit]")].map(t=>t.dataset.unit);
async function poll(){try{const r=await fetch("{{ url_for('api_status') }}?"+new URLSearchParams(names.map(n=>["unit",n])),
{credentials:"same-origin"});if(!r.ok)return;const d=await r.json();let reload=false;
for(const u of d.units){const tr=document.querySelector(`tr[data-unit="${CSS.escape(u.unit)}"]`);if(!tr)continue;
const st=tr.querySelector('[data-field=state]');if(st.textContent!==u.state){reload=true}
const p=u.progress||{};if(p.total){tr.querySelector('[data-field=progress]').innerHTML=
`<span class="bar"><span style="width:${Math.round(100*p.done/p.total)}%"></span></span> ${p.done}/${p.total} <span class="small"></span>`;
tr.querySelector('[data-field=progress] .small').textContent=p.folder||""}}
if(reload||(d.busy.length===0&&document.querySelector('em'))){location.reload()}}catch(e){}}
setInterval(poll,2000);
</script>
{% endblock %}"""

UNIT = """{% extends "base.html" %}{% block body %}
<h2>{{ u.unit }} <span class="state s-{{ u.state }}">{{ u.state }}</span></h2>
<p><a href="{{ url_for('history', unit=u.unit) }}">history</a> · <a href="{{ url_for('logs', unit=u.unit) }}">log</a>
· <a href="{{ url_for('logs', unit=u.unit, level='ERROR') }}">errors</a></p>
{% if u.last_error %}<p class="err">{{ u.last_error }}</p>{% endif %}
{% if u.last_result %}<p>Last run: copied {{ u.last_result.counters.copied }}, skipped {{ u.last_result.counters.skipped }},
failed {{ u.last_result.counters.failed }}.</p>
{% if u.last_result.problems %}<h3>Not copied, and why</h3><table><tr><th>kind</th><th>folder</th><th>message</th><th>reason</th></tr>
{% for p in u.last_result.problems %}<tr><td>{{ p.kind }}</td><td>{{ p.folder or "" }}</td><td>{{ p.message or "" }}</td><td>{{ p.reason }}</td></tr>{% endfor %}</table>{% endif %}{% endif %}
<h3>Folders</h3>
{% set v = u.verification %}{% if v %}<p class="small">verified: {{ v.totals.target_messages }} of {{ v.totals.source_messages }} messages,
{{ v.totals.source_bytes|size }}{% if v.totals.missing %}, <span class="err">{{ v.totals.missing }} without a verified copy</span>{% endif %}</p>
<table><tr><th>source folder</th><th>target folder</th><th>source messages</th><th>verified copies</th><th>size</th><th>missing / error</th></tr>
{% for f in v.folders %}<tr class="{{ 'ok' if f.ok else 'bad' }}"><td>{{ f.source }}</td><td>{{ f.target }}</td><td class="n">{{ f.source_messages }}</td>
<td class="n">{{ f.target_messages }}</td><td class="n">{{ f.source_bytes|size }}</td><td>{{ (f.missing[:20]|join(", ")) or f.error or "" }}</td></tr>{% endfor %}</table>
{% else %}<p>Not verified yet: the folders are listed once the unit is verified (finish, or Verify on the report page).</p>{% endif %}
{% endblock %}"""

LOGS = """{% extends "base.html" %}{% block body %}
<h2>Logs</h2>
<form method="get" action="{{ url_for('logs') }}">
<input name="search" value="{{ search or '' }}" placeholder="search">
<input name="unit" value="{{ unit or '' }}" placeholder="unit" list="unit-names">
<datalist id="unit-names">{% for n in unit_names %}<option value="{{ n }}">{% endfor %}</datalist>
<select name="level"><option value="">every level</option>{% for l in ("ERROR", "WARNING", "INFO") %}
<option {% if l == level %}selected{% endif %}>{{ l }}</option>{% endfor %}</select>
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
