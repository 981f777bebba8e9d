//! The web console: server-rendered HTML pages over the same data as the
//! JSON API ([`super::api`]): `/` (cluster overview and a live throughput
//! chart that polls `/v1/throughput`), `/console/topics`,
//! `/console/topics/{name}`, `/console/topics/{name}/messages`,
//! `/console/groups`, `/console/groups/{id}` and `/console/brokers`.
//!
//! Self-contained: the CSS and the little chart script are inline, nothing is
//! loaded from elsewhere. Every piece of data is HTML-escaped ([`esc`]).
//! Runs on an admin connection thread.

use std::fmt::Write;

use serde_json::Value;

use super::api::{self, ApiError, Format, MessageQuery, Start};
use super::http::{percent_encode, Request, Response};
use super::Admin;

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
header{background:#123;color:#fff;padding:.6em 1.2em;display:flex;gap:1.4em;align-items:center}
header a{color:#cde;text-decoration:none}header b{color:#fff}
main{padding:1em 1.4em}
table{border-collapse:collapse;background:#fff;margin:.4em 0 1.2em}
th,td{border:1px solid #d5d9de;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#eef1f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{margin:0;white-space:pre-wrap;word-break:break-all;max-width:60em}
.err{color:#a00}.muted{color:#778}
form{background:#fff;border:1px solid #d5d9de;padding:.6em;display:inline-block;margin-bottom:1em}
form label{margin-right:1em}
";

/// Answers the console's pages; None for any other path.
pub fn route(admin: &Admin, req: &Request) -> Option<Response> {
    if req.method != "GET" {
        return None;
    }
    let segs = req.segments();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let page = match segs.as_slice() {
        [] => Ok(overview(admin)),
        ["console"] => Ok(overview(admin)),
        ["console", "topics"] => Ok(topics(admin)),
        ["console", "topics", name] => topic(admin, name),
        ["console", "topics", name, "messages"] => messages(admin, name, req),
        ["console", "groups"] => groups(admin),
        ["console", "groups", id] => group(admin, id),
        ["console", "brokers"] => Ok(brokers(admin)),
        ["console", ..] => Err(ApiError::NotFound(format!("no such page: {}", req.path))),
        _ => return None,
    };
    Some(match page {
        Ok((title, body)) => Response::html(200, layout(&title, &body)),
        Err(e) => Response::html(
            e.status(),
            layout("Error", &format!("<h1>Error {}</h1><p class=\"err\">{}</p>", e.status(), esc(&e.message()))),
        ),
    })
}

type Page = (String, String);

/// Text made safe for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as escaped text: strings without quotes, null as a dash.
fn v(value: &Value) -> String {
    match value {
        Value::Null => "–".to_string(),
        Value::String(s) => esc(s),
        other => esc(&other.to_string()),
    }
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · Fjord console</title>\
         <style>{STYLE}</style></head><body><header><b>Fjord</b><a href=\"/\">Overview</a>\
         <a href=\"/console/topics\">Topics</a><a href=\"/console/groups\">Consumer groups</a>\
         <a href=\"/console/brokers\">Brokers</a></header><main>{body}</main></body></html>",
        esc(title)
    )
}

fn topic_link(name: &str) -> String {
    format!("<a href=\"/console/topics/{}\">{}</a>", percent_encode(name), esc(name))
}

fn bytes_human(n: &Value) -> String {
    let Some(b) = n.as_f64() else { return "–".to_string() };
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = b;
    let mut i = 0;
    while x >= 1024.0 && i + 1 < units.len() {
        x /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{x:.1} {}", units[i])
    }
}

/// Milliseconds since the epoch as `YYYY-MM-DD hh:mm:ss.mmm UTC`.
fn timestamp_text(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    let (h, m, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}.{milli:03} UTC")
}

// ------------------------------------------------------------------ pages

fn overview(admin: &Admin) -> Page {
    let md = admin.controller.current();
    let internal = md.topics.values().filter(|t| t.internal).count();
    let partitions: usize = md.topics.values().map(|t| t.partitions.len()).sum();
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>Cluster overview</h1><table>\
         <tr><th>Cluster id</th><td id=\"cluster-id\">{}</td></tr>\
         <tr><th>Controller</th><td>{}</td></tr>\
         <tr><th>This node</th><td>{}</td></tr>\
         <tr><th>Brokers</th><td class=\"num\">{} ({} down)</td></tr>\
         <tr><th>Topics</th><td class=\"num\">{} ({} internal)</td></tr>\
         <tr><th>Partitions</th><td class=\"num\">{}</td></tr></table>",
        esc(&md.cluster_id),
        if md.controller_id >= 0 { format!("node {}", md.controller_id) } else { "none".to_string() },
        admin.node_id,
        md.brokers.len(),
        md.brokers.values().filter(|b| b.fenced).count(),
        md.topics.len(),
        internal,
        partitions,
    );
    b.push_str(THROUGHPUT_CHART);
    ("Overview".to_string(), b)
}

/// A canvas and the script that polls `/v1/throughput` every 2 s and plots
/// the rates of the last 60 samples (bytes in and out of this node).
const THROUGHPUT_CHART: &str = r#"<h2>Throughput of this node</h2>
<p>In: <b id="rate-in">…</b> &nbsp; Out: <b id="rate-out">…</b> &nbsp; Messages in: <b id="rate-msgs">…</b></p>
<canvas id="chart" width="720" height="180" style="background:#fff;border:1px solid #d5d9de"></canvas>
<p class="muted">Bytes per second, sampled every 2 s; blue: produced, orange: consumed.</p>
<script>
(function(){
  var prev=null, ins=[], outs=[], N=60;
  function human(x){var u=['B/s','KiB/s','MiB/s','GiB/s'],i=0;while(x>=1024&&i<3){x/=1024;i++;}return x.toFixed(i?1:0)+' '+u[i];}
  function draw(){
    var c=document.getElementById('chart'),g=c.getContext('2d');g.clearRect(0,0,c.width,c.height);
    var max=Math.max(1,Math.max.apply(null,ins.concat(outs)));
    [[ins,'#1f6fd1'],[outs,'#e07b00']].forEach(function(s){
      g.strokeStyle=s[1];g.lineWidth=2;g.beginPath();
      s[0].forEach(function(y,i){var px=i*(c.width/(N-1)),py=c.height-4-(y/max)*(c.height-12);if(i)g.lineTo(px,py);else g.moveTo(px,py);});
      g.stroke();});
    g.fillStyle='#667';g.fillText('max '+human(max),4,12);
  }
  function poll(){
    fetch('/v1/throughput').then(function(r){return r.json();}).then(function(t){
      if(prev){var dt=Math.max(0.001,(t.time_ms-prev.time_ms)/1000);
        var i=Math.max(0,(t.bytes_in_total-prev.bytes_in_total)/dt),o=Math.max(0,(t.bytes_out_total-prev.bytes_out_total)/dt);
        var m=Math.max(0,(t.messages_in_total-prev.messages_in_total)/dt);
        ins.push(i);outs.push(o);if(ins.length>N){ins.shift();outs.shift();}
        document.getElementById('rate-in').textContent=human(i);
        document.getElementById('rate-out').textContent=human(o);
        document.getElementById('rate-msgs').textContent=m.toFixed(1)+'/s';
        draw();}
      prev=t;}).catch(function(){}).finally(function(){setTimeout(poll,2000);});
  }
  poll();
})();
</script>"#;

fn topics(admin: &Admin) -> Page {
    let doc = api::topics(admin);
    let mut b = String::from(
        "<h1>Topics</h1><table id=\"topics\"><tr><th>Topic</th><th>Partitions</th><th>Replication</th>\
         <th>Internal</th><th>Size on this node</th></tr>",
    );
    for t in doc["topics"].as_array().into_iter().flatten() {
        let name = t["name"].as_str().unwrap_or("");
        let _ = write!(
            b,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            topic_link(name),
            v(&t["partition_count"]),
            v(&t["replication_factor"]),
            if t["internal"].as_bool() == Some(true) { "yes" } else { "" },
            bytes_human(&t["local_size_bytes"]),
        );
    }
    b.push_str("</table>");
    ("Topics".to_string(), b)
}

fn replicas_text(replicas: &Value) -> String {
    replicas
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| format!("node {} / shard {}", v(&r["node_id"]), v(&r["shard"])))
        .collect::<Vec<_>>()
        .join("<br>")
}

fn topic(admin: &Admin, name: &str) -> Result<Page, ApiError> {
    let t = api::topic(admin, name)?;
    let enc = percent_encode(name);
    let mut b = format!(
        "<h1>Topic <span id=\"topic-name\">{}</span></h1><p>{} partitions, replication factor {}{}. \
         <a href=\"/console/topics/{enc}/messages\">Browse messages</a></p>\
         <h2>Partitions</h2><table id=\"partitions\"><tr><th>Partition</th><th>Leader</th><th>Replicas (node / shard)</th>\
         <th>ISR</th><th>Log start</th><th>High watermark</th><th>Messages</th><th>Size on this node</th></tr>",
        esc(name),
        v(&t["partition_count"]),
        v(&t["replication_factor"]),
        if t["internal"].as_bool() == Some(true) { ", internal" } else { "" },
    );
    for p in t["partitions"].as_array().into_iter().flatten() {
        let leader = match p["leader"].as_i64() {
            Some(l) if l >= 0 => format!("node {l} / shard {}", v(&p["leader_shard"])),
            _ => "<span class=\"err\">none</span>".to_string(),
        };
        let isr = p["isr"].as_array().into_iter().flatten().map(v).collect::<Vec<_>>().join(", ");
        let _ = write!(
            b,
            "<tr><td class=\"num\"><a href=\"/console/topics/{enc}/messages?partition={part}\">{part}</a></td><td>{leader}</td>\
             <td>{}</td><td>{isr}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td></tr>",
            replicas_text(&p["replicas"]),
            v(&p["log_start_offset"]),
            v(&p["high_watermark"]),
            v(&p["messages"]),
            bytes_human(&p["size_bytes"]),
            part = v(&p["partition"]),
        );
    }
    b.push_str("</table><h2>Configs</h2><table id=\"configs\"><tr><th>Name</th><th>Value</th><th>Source</th></tr>");
    for c in t["configs"].as_array().into_iter().flatten() {
        let _ = write!(b, "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", v(&c["name"]), v(&c["value"]), v(&c["source"]));
    }
    b.push_str("</table>");
    Ok((format!("Topic {name}"), b))
}

fn messages(admin: &Admin, name: &str, req: &Request) -> Result<Page, ApiError> {
    let q = MessageQuery::parse(req)?;
    let doc = api::read_messages(admin, name, q)?;
    let md = admin.controller.current();
    let partition_count = md.topic(name).map_or(0, |t| t.partitions.len());
    let (mode, position) = match q.start {
        Start::Offset(o) => ("offset", o.to_string()),
        Start::Timestamp(ms) => ("timestamp", ms.to_string()),
        Start::Beginning => ("start", String::new()),
        Start::End => ("end", String::new()),
    };
    let enc = percent_encode(name);
    let mut b = format!(
        "<h1>Messages of {}</h1><p><a href=\"/console/topics/{enc}\">Back to the topic</a></p>\
         <form method=\"get\" action=\"/console/topics/{enc}/messages\" id=\"browse\">",
        esc(name),
    );
    b.push_str("<label>Partition <select name=\"partition\">");
    for p in 0..partition_count {
        let selected = if p as i32 == q.partition { " selected" } else { "" };
        let _ = write!(b, "<option value=\"{p}\"{selected}>{p}</option>");
    }
    b.push_str("</select></label><label>Start at <select name=\"mode\">");
    for (value, label) in [("start", "the beginning"), ("offset", "offset"), ("timestamp", "timestamp (ms)"), ("end", "the end")] {
        let selected = if value == mode { " selected" } else { "" };
        let _ = write!(b, "<option value=\"{value}\"{selected}>{label}</option>");
    }
    let _ = write!(
        b,
        "</select></label><label><input name=\"position\" value=\"{}\" size=\"14\" placeholder=\"offset or ms\"></label>\
         <label>Limit <input name=\"limit\" value=\"{}\" size=\"4\"></label><label>Show as <select name=\"format\">",
        esc(&position),
        q.limit
    );
    for f in [Format::Text, Format::Json, Format::Hex, Format::Base64] {
        let selected = if f == q.format { " selected" } else { "" };
        let _ = write!(b, "<option value=\"{0}\"{selected}>{0}</option>", f.name());
    }
    let _ = write!(
        b,
        "</select></label><button type=\"submit\">Show</button></form>\
         <p>Partition {}: offsets {} to {} (high watermark); showing from offset {}.</p>\
         <table id=\"messages\"><tr><th>Offset</th><th>Timestamp</th><th>Key</th><th>Value</th><th>Headers</th></tr>",
        q.partition,
        v(&doc["log_start_offset"]),
        v(&doc["high_watermark"]),
        v(&doc["start_offset"]),
    );
    let list = doc["messages"].as_array().cloned().unwrap_or_default();
    for m in &list {
        let headers = m["headers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|h| format!("<b>{}</b>: {}", v(&h["key"]), v(&h["value"])))
            .collect::<Vec<_>>()
            .join("<br>");
        let _ = write!(
            b,
            "<tr class=\"message\"><td class=\"num\">{}</td><td>{}</td><td class=\"key\"><pre>{}</pre></td>\
             <td class=\"value\"><pre>{}</pre></td><td>{headers}</td></tr>",
            v(&m["offset"]),
            m["timestamp_ms"].as_i64().map_or("–".to_string(), timestamp_text),
            v(&m["key"]),
            v(&m["value"]),
        );
    }
    b.push_str("</table>");
    if list.is_empty() {
        b.push_str("<p class=\"muted\">No messages from here.</p>");
    } else if let Some(next) = doc["next_offset"].as_i64() {
        let _ = write!(
            b,
            "<p><a href=\"/console/topics/{enc}/messages?partition={}&amp;offset={next}&amp;limit={}&amp;format={}\">Next page</a></p>",
            q.partition,
            q.limit,
            q.format.name()
        );
    }
    Ok((format!("Messages of {name}"), b))
}

fn groups(admin: &Admin) -> Result<Page, ApiError> {
    let doc = api::groups(admin)?;
    let mut b = String::from(
        "<h1>Consumer groups</h1><table id=\"groups\"><tr><th>Group</th><th>State</th><th>Protocol type</th><th>Coordinator</th></tr>",
    );
    let list = doc["groups"].as_array().cloned().unwrap_or_default();
    for g in &list {
        let id = g["group_id"].as_str().unwrap_or("");
        let _ = write!(
            b,
            "<tr><td><a href=\"/console/groups/{}\">{}</a></td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            percent_encode(id),
            esc(id),
            v(&g["state"]),
            v(&g["protocol_type"]),
            v(&g["coordinator"]),
        );
    }
    b.push_str("</table>");
    if list.is_empty() {
        b.push_str("<p class=\"muted\">No groups.</p>");
    }
    Ok(("Consumer groups".to_string(), b))
}

fn group(admin: &Admin, id: &str) -> Result<Page, ApiError> {
    let g = api::group(admin, id)?;
    let mut b = format!(
        "<h1>Group <span id=\"group-id\">{}</span></h1><table>\
         <tr><th>State</th><td>{}</td></tr><tr><th>Protocol</th><td>{} {}</td></tr>\
         <tr><th>Coordinator</th><td>node {}</td></tr>\
         <tr><th>Total lag</th><td class=\"num\" id=\"total-lag\">{}</td></tr></table>\
         <h2>Members</h2><table id=\"members\"><tr><th>Member</th><th>Client id</th><th>Host</th><th>Assigned partitions</th></tr>",
        esc(id),
        v(&g["state"]),
        v(&g["protocol_type"]),
        v(&g["protocol"]),
        v(&g["coordinator"]),
        v(&g["total_lag"]),
    );
    let members = g["members"].as_array().cloned().unwrap_or_default();
    for m in &members {
        let assigned = m["assignment"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| format!("{}/{}", esc(a["topic"].as_str().unwrap_or("")), v(&a["partition"])))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{assigned}</td></tr>",
            v(&m["member_id"]),
            v(&m["client_id"]),
            v(&m["client_host"]),
        );
    }
    b.push_str("</table>");
    if members.is_empty() {
        b.push_str("<p class=\"muted\">No members (the group is empty).</p>");
    }
    b.push_str(
        "<h2>Lag per partition</h2><table id=\"lag\"><tr><th>Topic</th><th>Partition</th><th>Committed offset</th>\
         <th>End offset</th><th>Lag</th><th>Member</th></tr>",
    );
    for o in g["offsets"].as_array().into_iter().flatten() {
        let _ = write!(
            b,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num lag\">{}</td><td>{}</td></tr>",
            topic_link(o["topic"].as_str().unwrap_or("")),
            v(&o["partition"]),
            v(&o["committed_offset"]),
            v(&o["end_offset"]),
            v(&o["lag"]),
            v(&o["member_id"]),
        );
    }
    b.push_str("</table>");
    Ok((format!("Group {id}"), b))
}

fn brokers(admin: &Admin) -> Page {
    let md = admin.controller.current();
    let doc = api::brokers(&md);
    let mut b = String::from(
        "<h1>Brokers</h1><table id=\"brokers\"><tr><th>Node</th><th>Address</th><th>Rack</th><th>Shards</th>\
         <th>State</th><th>Leaders</th><th>Replicas</th></tr>",
    );
    for br in doc["brokers"].as_array().into_iter().flatten() {
        let state = if br["fenced"].as_bool() == Some(true) { "<span class=\"err\">down</span>" } else { "up" };
        let controller = if br["is_controller"].as_bool() == Some(true) { " (controller)" } else { "" };
        let _ = write!(
            b,
            "<tr><td class=\"num\">{}{controller}</td><td>{}:{}</td><td>{}</td><td class=\"num\">{}</td><td>{state}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            v(&br["node_id"]),
            v(&br["host"]),
            v(&br["port"]),
            v(&br["rack"]),
            v(&br["shard_count"]),
            v(&br["leader_count"]),
            v(&br["replica_count"]),
        );
    }
    b.push_str("</table><h2>Placement of partitions on brokers and shards</h2>");
    b.push_str("<p class=\"muted\">Each replica by broker and shard; <b>bold</b>: the leader.</p>");
    b.push_str("<table id=\"placement\"><tr><th>Broker</th><th>Shard</th><th>Replicas</th></tr>");
    for (id, broker) in &md.brokers {
        for shard in 0..broker.shard_count.max(1) {
            let mut cells = Vec::new();
            for t in md.topics.values() {
                for p in &t.partitions {
                    if p.replicas.iter().any(|r| r.node_id == *id && r.shard == shard) {
                        let label = format!("{}/{}", esc(&t.name), p.partition);
                        cells.push(if p.leader.node_id == *id { format!("<b>{label}</b>") } else { label });
                    }
                }
            }
            let _ = write!(
                b,
                "<tr><td class=\"num\">{id}</td><td class=\"num\">{shard}</td><td>{}</td></tr>",
                if cells.is_empty() { "<span class=\"muted\">none</span>".to_string() } else { cells.join(", ") }
            );
        }
    }
    b.push_str("</table>");
    ("Brokers".to_string(), b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Markup in data is escaped, quotes included (attribute values).
    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(esc("<b>\"a\" & 'b'</b>"), "&lt;b&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/b&gt;");
    }

    /// Epoch milliseconds render as a UTC date.
    #[test]
    fn timestamps_render_as_utc() {
        assert_eq!(timestamp_text(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(timestamp_text(1_700_000_000_123), "2023-11-14 22:13:20.123 UTC");
        assert_eq!(timestamp_text(951_782_400_000), "2000-02-29 00:00:00.000 UTC");
    }
}
