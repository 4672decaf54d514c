//! The status page: [`render`] writes a [`Status`] as one HTML page, with no script, that
//! reloads itself every 5 seconds. Every text that comes from outside (ids, peers, endpoints,
//! errors, paths) goes through [`escape`].

use std::fmt::{self, Write};

use super::{JobsView, Status, StoreStatus};
use crate::server::scrub::ScrubStatus;

/// `text` with the characters that mean something in HTML (text or quoted attribute) escaped.
pub(super) fn escape(text: &str) -> Escaped<'_> {
    Escaped(text)
}

/// See [`escape`].
pub(super) struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..at])?;
            f.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        f.write_str(rest)
    }
}

/// A byte count for people: `1.5 GiB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// A byte count: human-readable, with the exact count in `data-value` (and as a tooltip).
fn bytes_cell(id: &str, bytes: u64) -> String {
    format!(
        "<span id=\"{id}\" data-value=\"{bytes}\" title=\"{bytes} bytes\">{}</span>",
        size(bytes)
    )
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:75em}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse}td,th{padding:.2em .8em .2em 0;text-align:left;vertical-align:top}\
th{color:#555;font-weight:600}.num{text-align:right;font-variant-numeric:tabular-nums}\
.bar{width:30em;height:1.2em;background:#e8e8e8;border:1px solid #aaa;position:relative}\
.fill{height:100%;background:#4a8}.fill.high{background:#c84}.err{color:#a22}\
.muted{color:#777}code{font-size:.95em}";

/// The whole page.
pub(super) fn render(status: &Status) -> String {
    let mut out = String::with_capacity(8192);
    let _ = write_page(&mut out, status);
    out
}

fn write_page(out: &mut String, s: &Status) -> fmt::Result {
    write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"5\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>artifact server</title><style>{STYLE}</style></head><body>\n\
         <h1>artifact server <span class=\"muted\">{}</span></h1>\n\
         <p>Cache <code>{}</code>, up <span id=\"uptime\" data-value=\"{}\">{} s</span>. \
         The same as JSON: <a href=\"status\">status</a>; Prometheus: \
         <a href=\"metrics\">metrics</a>.</p>\n",
        escape(s.version),
        escape(&s.cache.root),
        s.uptime_secs,
        s.uptime_secs,
    )?;
    write_cache(out, s)?;
    write_traffic(out, s)?;
    write_transfers(out, s)?;
    if let Some(jobs) = &s.jobs {
        write_jobs(out, jobs)?;
    }
    if let Some(store) = &s.store {
        write_store(out, store)?;
    }
    if let Some(scrub) = &s.scrub {
        write_scrub(out, scrub)?;
    }
    write_warnings(out, s)?;
    out.write_str("</body></html>\n")
}

fn write_cache(out: &mut String, s: &Status) -> fmt::Result {
    let c = &s.cache;
    out.write_str("<h2>Cache</h2>\n")?;
    if let Some(error) = &c.error {
        writeln!(out, "<p class=\"err\" id=\"cache-error\">Cannot measure: {}</p>", escape(error))?;
    }
    if let Some(used) = c.used {
        let percent = (used * 100.0).clamp(0.0, 100.0);
        let high = if percent >= 90.0 { " high" } else { "" };
        writeln!(
            out,
            "<div class=\"bar\" title=\"{percent:.1}% of the size bound\">\
             <div class=\"fill{high}\" id=\"usage-bar\" style=\"width:{percent:.1}%\"></div></div>"
        )?;
    }
    out.write_str("<table>")?;
    if let Some(bytes) = c.bytes {
        write!(out, "<tr><th>Used</th><td>{}", bytes_cell("cache-bytes", bytes))?;
        match c.max_bytes {
            Some(max) => write!(out, " of {} (--max-size)", bytes_cell("cache-max", max))?,
            None => out.write_str(" <span class=\"muted\">(no size bound)</span>")?,
        }
        if let Some(used) = c.used {
            write!(out, ", <span id=\"cache-used\">{:.1}%</span>", used * 100.0)?;
        }
        out.write_str("</td></tr>")?;
    }
    if let Some(artifacts) = c.artifacts {
        write!(out, "<tr><th>Artifacts</th><td id=\"cache-artifacts\">{artifacts}</td></tr>")?;
    }
    out.write_str("<tr><th>Free space</th><td>")?;
    match c.free_bytes {
        Some(free) => out.write_str(&bytes_cell("cache-free", free))?,
        None => out.write_str("unknown")?,
    }
    match c.min_free_bytes {
        0 => out.write_str(" <span class=\"muted\">(no floor)</span>")?,
        floor => {
            let below = c.free_bytes.is_some_and(|free| free < floor);
            let class = if below { "err" } else { "muted" };
            write!(
                out,
                " <span class=\"{class}\">(floor {}{})</span>",
                bytes_cell("cache-floor", floor),
                if below { ": below it, uploads are refused" } else { "" }
            )?;
        }
    }
    writeln!(
        out,
        "</td></tr><tr><th>Evictions</th><td id=\"cache-evictions\">{}</td></tr></table>",
        c.evictions
    )
}

fn write_traffic(out: &mut String, s: &Status) -> fmt::Result {
    let t = &s.traffic;
    let rate = match t.hit_rate {
        Some(rate) => format!("{:.1}%", rate * 100.0),
        None => "–".to_owned(),
    };
    write!(
        out,
        "<h2>Requests</h2>\n<table>\
         <tr><th>Hits</th><td class=\"num\" id=\"hits\">{}</td>\
         <th>Misses</th><td class=\"num\" id=\"misses\">{}</td>\
         <th>Hit rate</th><td class=\"num\" id=\"hit-rate\">{rate}</td></tr>\
         <tr><th>Bytes in</th><td class=\"num\">{}</td>\
         <th>Bytes out</th><td class=\"num\">{}</td><td></td><td></td></tr>\
         <tr><th>Uploads</th><td class=\"num\" id=\"uploads\">{}</td>\
         <th>Rejected</th><td class=\"num\" id=\"uploads-rejected\">{}</td>\
         <th>Refused (503)</th><td class=\"num\" id=\"streams-refused\">{}</td></tr>\
         </table>\n",
        t.hits,
        t.misses,
        bytes_cell("bytes-in", t.bytes_in),
        bytes_cell("bytes-out", t.bytes_out),
        t.uploads,
        t.uploads_rejected,
        t.streams_refused,
    )
}

fn write_transfers(out: &mut String, s: &Status) -> fmt::Result {
    let t = &s.transfers;
    write!(
        out,
        "<h2>Transfers in flight</h2>\n<p><span id=\"transfers\">{}</span> in flight; \
         tar streams <span id=\"active-streams\">{}</span> of {}.</p>\n",
        t.count, t.active_streams, t.max_streams
    )?;
    if t.list.is_empty() {
        return Ok(());
    }
    out.write_str(
        "<table id=\"transfer-list\"><tr><th>kind</th><th>id</th><th>peer</th>\
         <th>progress</th><th class=\"num\">bytes</th><th class=\"num\">seconds</th></tr>\n",
    )?;
    for x in &t.list {
        let progress = match x.total {
            Some(total) if total > 0 => format!(
                "<progress value=\"{}\" max=\"{total}\"></progress> {:.0}%",
                x.bytes.min(total),
                x.bytes.min(total) as f64 * 100.0 / total as f64
            ),
            _ => "<span class=\"muted\">length unknown</span>".to_owned(),
        };
        let total = x.total.map(|t| format!(" of {}", size(t))).unwrap_or_default();
        writeln!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{progress}</td>\
             <td class=\"num\" data-value=\"{}\">{}{total}</td><td class=\"num\">{:.1}</td></tr>",
            x.kind,
            escape(&x.id),
            escape(x.peer.as_deref().unwrap_or("")),
            x.bytes,
            size(x.bytes),
            x.seconds,
        )?;
    }
    out.write_str("</table>\n")
}

fn write_jobs(out: &mut String, jobs: &JobsView) -> fmt::Result {
    out.write_str("<h2>Jobs</h2>\n")?;
    if let Some(error) = &jobs.error {
        writeln!(out, "<p class=\"err\">Cannot read the jobs: {}</p>", escape(error))?;
    }
    let j = &jobs.status;
    out.write_str("<table id=\"jobs-by-state\"><tr>")?;
    for state in j.by_state.keys() {
        write!(out, "<th>{}</th>", escape(state))?;
    }
    out.write_str("</tr><tr>")?;
    for (state, n) in &j.by_state {
        write!(out, "<td class=\"num\" id=\"jobs-{}\">{n}</td>", escape(state))?;
    }
    out.write_str("</tr></table>\n")?;
    if !j.active.is_empty() {
        out.write_str(
            "<table id=\"job-list\"><tr><th>job</th><th>action</th><th>id</th><th>state</th>\
             <th class=\"num\">attempts</th><th class=\"num\">bytes</th><th>endpoint</th>\
             <th>error</th></tr>\n",
        )?;
        for job in &j.active {
            writeln!(
                out,
                "<tr><td><a href=\"jobs/{0}\">{0}</a></td><td>{1}</td><td><code>{2}</code></td>\
                 <td>{3}</td><td class=\"num\">{4}</td><td class=\"num\">{5}</td><td>{6}</td>\
                 <td class=\"err\">{7}</td></tr>",
                job.job,
                escape(&job.action),
                escape(&job.id),
                escape(&job.state),
                job.attempts,
                size(job.bytes),
                escape(job.endpoint.as_deref().unwrap_or("")),
                escape(job.error.as_deref().unwrap_or("")),
            )?;
        }
        out.write_str("</table>\n")?;
    }
    if !j.endpoints.is_empty() {
        out.write_str(
            "<h2>Peers</h2>\n<table id=\"peers\"><tr><th>endpoint</th>\
             <th class=\"num\">bytes</th><th>transfers</th><th>last error</th></tr>\n",
        )?;
        for e in &j.endpoints {
            let transfers: Vec<String> = e
                .transfers
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(outcome, n)| format!("{} {n}", escape(outcome)))
                .collect();
            writeln!(
                out,
                "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"err\">{}</td></tr>",
                escape(&e.endpoint),
                size(e.bytes),
                transfers.join(", "),
                escape(e.last_error.as_deref().unwrap_or("")),
            )?;
        }
        out.write_str("</table>\n")?;
    }
    Ok(())
}

fn write_store(out: &mut String, store: &StoreStatus) -> fmt::Result {
    let c = &store.counters;
    let errors: Vec<String> = c.errors.iter().map(|(kind, n)| format!("{kind} {n}")).collect();
    write!(
        out,
        "<h2>Store</h2>\n<table><tr><th>URL</th><td><code>{}</code></td></tr>\
         <tr><th>Requests</th><td id=\"store-requests\">{}</td></tr>\
         <tr><th>Received</th><td>{}</td></tr><tr><th>Sent</th><td>{}</td></tr>\
         <tr><th>Errors</th><td>{}</td></tr><tr><th>Last error</th><td class=\"err\">{}</td></tr>\
         </table>\n",
        escape(&store.url),
        c.requests,
        bytes_cell("store-received", c.bytes_down),
        bytes_cell("store-sent", c.bytes_up),
        errors.join(", "),
        escape(store.last_error.as_ref().map_or("", |w| w.message.as_str())),
    )
}

fn write_scrub(out: &mut String, scrub: &ScrubStatus) -> fmt::Result {
    let sources = if scrub.repair_from.is_empty() {
        "<span class=\"muted\">none: corrupt artifacts are quarantined, not repaired</span>".into()
    } else {
        let listed: Vec<String> =
            scrub.repair_from.iter().map(|url| format!("<code>{}</code>", escape(url))).collect();
        listed.join(", ")
    };
    let last = match &scrub.last_pass {
        Some(pass) => format!(
            "ended {} (Unix time), {} verified, {} corrupt, {}",
            pass.finished,
            pass.verified,
            pass.corrupt,
            size(pass.bytes)
        ),
        None => "<span class=\"muted\">none yet</span>".into(),
    };
    let running = match scrub.running_since {
        Some(since) => format!("since {since} (Unix time)"),
        None => "no".into(),
    };
    write!(
        out,
        "<h2>Scrub</h2>\n<table><tr><th>Every</th><td>{} s at {}/s</td></tr>\
         <tr><th>Repair from</th><td>{sources}</td></tr>\
         <tr><th>Running</th><td id=\"scrub-running\">{running}</td></tr>\
         <tr><th>Last pass</th><td id=\"scrub-last\">{last}</td></tr>\
         <tr><th>Totals</th><td id=\"scrub-totals\">{} passes, {} verified, {} read, \
         {} corrupt, {} quarantined, {} repaired, {} repair failures, {} errors</td></tr>\
         </table>\n",
        scrub.interval_secs,
        size(scrub.rate_bytes_per_sec),
        scrub.passes,
        scrub.verified,
        size(scrub.bytes),
        scrub.corrupt,
        scrub.quarantined,
        scrub.repaired,
        scrub.repair_failures,
        scrub.errors,
    )?;
    if scrub.recent.is_empty() {
        return out
            .write_str("<p class=\"muted\" id=\"scrub-found\">No corrupt artifact found.</p>\n");
    }
    out.write_str(
        "<table id=\"scrub-found\"><tr><th>when (Unix time)</th><th>id</th><th>why</th>\
         <th>state</th><th>detail</th></tr>\n",
    )?;
    for event in &scrub.recent {
        writeln!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td class=\"err\">{}</td><td>{}</td>\
             <td>{}</td></tr>",
            event.at,
            escape(&event.id),
            escape(&event.reason),
            event.state,
            escape(&event.detail)
        )?;
    }
    out.write_str("</table>\n")
}

fn write_warnings(out: &mut String, s: &Status) -> fmt::Result {
    out.write_str("<h2>Recent warnings</h2>\n")?;
    if s.warnings.is_empty() {
        return out.write_str("<p class=\"muted\" id=\"warnings\">None.</p>\n");
    }
    out.write_str(
        "<table id=\"warnings\"><tr><th>when (Unix time)</th><th>endpoint</th><th>what</th></tr>\n",
    )?;
    for w in &s.warnings {
        writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"err\">{}</td></tr>",
            w.at,
            w.endpoint,
            escape(&w.message)
        )?;
    }
    out.write_str("</table>\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_means_something_in_html() {
        for (input, expect) in [
            ("plain", "plain"),
            ("", ""),
            ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
            ("a\"b'c&d", "a&quot;b&#39;c&amp;d"),
            ("&amp;", "&amp;amp;"),
            ("ünï<ü>", "ünï&lt;ü&gt;"),
        ] {
            assert_eq!(escape(input).to_string(), expect, "{input:?}");
        }
    }

    #[test]
    fn sizes_read_well() {
        for (bytes, expect) in
            [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 << 30, "5.0 GiB")]
        {
            assert_eq!(size(bytes), expect);
        }
    }
}
