//! The page's own CSS and script: the only text on the page that is not escaped, and it
//! holds nothing from AWS. The page works without the script.

pub(crate) const CSS: &str = r#"
:root{--ok:#1e7b34;--ok-bg:#e6f4ea;--bad:#b3261e;--bad-bg:#fce8e6;--na:#6b7280;--na-bg:#eef0f3;--ink:#1f2933;--muted:#5f6b7a;--line:#dde2e8;--accent:#1d3557}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);background:#f6f7f9}
header.top{display:flex;justify-content:space-between;align-items:center;gap:24px;padding:22px 36px;background:var(--accent);color:#fff}
header.top h1{margin:0;font-size:22px;font-weight:600;letter-spacing:.2px}
header.top .sub{margin:4px 0 0;color:#cfd8e3}
.overall{padding:10px 18px;border-radius:6px;font-weight:700;font-size:16px;white-space:nowrap}
.overall.bad{background:var(--bad);color:#fff}.overall.ok{background:var(--ok);color:#fff}
main{padding:8px 36px 0}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:18px 22px;margin:18px 0}
h2{font-size:17px;margin:0 0 10px;color:var(--accent)}
h3{font-size:14px;margin:18px 0 8px;color:var(--ink)}
h3 .count{margin-left:8px;padding:1px 8px;border-radius:10px;background:var(--na-bg);color:var(--muted);font-weight:500}
.summary{display:flex;gap:28px;flex-wrap:wrap;align-items:flex-start}
.cards{display:flex;gap:12px}
.card{min-width:128px;padding:12px 16px;border-radius:8px;border:1px solid var(--line);display:flex;flex-direction:column}
.card .n{font-size:30px;font-weight:700;line-height:1.1}.card .l{font-size:11px;letter-spacing:.5px;color:var(--muted)}
.card.bad{background:var(--bad-bg);border-color:#f3c1bc}.card.bad .n{color:var(--bad)}
.card.ok{background:var(--ok-bg);border-color:#b9dfc4}.card.ok .n{color:var(--ok)}
.card.na{background:var(--na-bg)}.card.na .n{color:var(--na)}.card.keys .n{color:var(--accent)}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:0;flex:1;min-width:420px}
dl.meta dt{color:var(--muted)}dl.meta dd{margin:0}
.params code{display:inline-block;margin:0 4px 3px 0}
code,.mono{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,"Liberation Mono",monospace;font-size:12px}
code{background:#f1f3f6;padding:1px 5px;border-radius:4px}
.hint{color:var(--muted);margin:0 0 10px}
.chart{width:100%;max-width:1100px;height:auto;font-size:12px}
.chart .grid{stroke:#edf0f3}.chart .axis{fill:#8a94a3;font-size:11px}
.chart .label{fill:var(--ink);font-weight:500}.chart .value{fill:var(--ink)}.chart .due{fill:var(--muted)}.chart .due.overdue{fill:var(--bad);font-weight:600}
.chart .fill.ok{fill:var(--ok)}.chart .fill.bad{fill:var(--bad)}.chart .fill.na{fill:var(--na)}
.chart .unknown{fill:#fff;stroke:var(--bad);stroke-dasharray:4 3}
.chart line.limit{stroke:var(--ink);stroke-width:1.5;stroke-dasharray:5 4}.chart text.limit{fill:var(--ink);font-weight:600;font-size:11px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:7px 9px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:12px;color:var(--muted);font-weight:600;background:#fafbfc;user-select:none}
table.resources{table-layout:fixed}td.name{word-break:break-word}td.date{white-space:nowrap}
table.js th{cursor:pointer}table.js th:after{content:" ↕";color:#c2c9d2}
th[data-dir=asc]:after{content:" ↑"!important;color:var(--ink)!important}th[data-dir=desc]:after{content:" ↓"!important;color:var(--ink)!important}
tbody tr:hover{background:#f8fafc}
td.num{text-align:right;white-space:nowrap}td.name{font-weight:600}
td.wrap{word-break:break-all;max-width:340px}
td.key{min-width:250px}td.key .alias{font-weight:600}td.key .arn{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,"Liberation Mono",monospace;font-size:11px;color:var(--muted)}td.annotation{max-width:520px}
.badge{display:inline-block;padding:2px 8px;border-radius:10px;font-size:11px;font-weight:700;letter-spacing:.3px;white-space:nowrap}
.badge.ok{background:var(--ok-bg);color:var(--ok)}.badge.bad{background:var(--bad-bg);color:var(--bad)}.badge.na{background:var(--na-bg);color:var(--na)}
.custody.ok{color:var(--ok);font-weight:600}.custody.bad{color:var(--bad);font-weight:600}.custody.na{color:var(--muted)}
input[name=verdict]{position:absolute;opacity:0}
.chip{display:inline-block;margin:0 6px 8px 0;padding:4px 12px;border:1px solid var(--line);border-radius:16px;cursor:pointer;font-size:12px;background:#fff}
input[name=verdict]:checked+.chip{background:var(--accent);border-color:var(--accent);color:#fff}
input[name=verdict]:focus-visible+.chip{outline:2px solid var(--accent);outline-offset:2px}
#search{margin:0 0 8px 8px;padding:5px 10px;border:1px solid var(--line);border-radius:16px;min-width:240px;font:inherit}
#f-bad:checked~.groups tr[data-verdict]:not([data-verdict=NON_COMPLIANT]),
#f-ok:checked~.groups tr[data-verdict]:not([data-verdict=COMPLIANT]),
#f-na:checked~.groups tr[data-verdict]:not([data-verdict=NOT_APPLICABLE]){display:none}
#f-bad:checked~.groups .group:not(:has(tr[data-verdict=NON_COMPLIANT])),
#f-ok:checked~.groups .group:not(:has(tr[data-verdict=COMPLIANT])),
#f-na:checked~.groups .group:not(:has(tr[data-verdict=NOT_APPLICABLE])){display:none}
footer{margin:18px 36px 30px;padding:18px 22px;border:1px solid var(--line);border-radius:8px;background:#fff}
footer .digest{font-size:13px;word-break:break-all}
pre#payload{max-height:360px;overflow:auto;background:#f6f8fa;padding:10px;border-radius:6px;font-size:11px}
.empty{color:var(--muted)}
@media print{body{background:#fff}section,footer{break-inside:avoid;border-color:#bbb}details{display:none}#search,.chip,input[name=verdict]{display:none}}
"#;

/// Sorting by column and text search. Without JS the tables keep their order (grouped by
/// account and service) and the verdict filter still works.
pub(crate) const JS: &str = r#"
(function(){
var q=document.getElementById('search');q.hidden=false;
q.addEventListener('input',function(){var t=q.value.toLowerCase();document.querySelectorAll('.resources tbody tr').forEach(function(r){r.style.display=r.textContent.toLowerCase().indexOf(t)<0?'none':''})});
document.querySelectorAll('table.sortable').forEach(function(tb){tb.classList.add('js');tb.querySelectorAll('th').forEach(function(th,i){th.tabIndex=0;th.addEventListener('click',function(){
var d=th.dataset.dir==='asc'?'desc':'asc',b=tb.tBodies[0],v=function(r){var c=r.cells[i];return c.dataset.sort!==undefined?c.dataset.sort:c.textContent.trim()};
tb.querySelectorAll('th').forEach(function(h){delete h.dataset.dir});th.dataset.dir=d;
Array.prototype.slice.call(b.rows).sort(function(x,y){return (d==='asc'?1:-1)*v(x).localeCompare(v(y),undefined,{numeric:true})}).forEach(function(r){b.appendChild(r)})})})});
})();
"#;
