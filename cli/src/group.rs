//! `fjord group list|describe|seek|delete`.

use std::collections::{BTreeMap, BTreeSet};

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use crate::client::Client;
use crate::error::{error_name, Error, Result};
use crate::ops::{self, OffsetSpec};
use crate::output::{key_values, Out, Table};
use crate::{parse_position, resolve_position, Outcome, Position};

#[derive(Subcommand, Debug)]
pub enum GroupCmd {
    /// List groups with their state, protocol type and coordinator.
    List,
    /// A group's state and members, and per partition its committed offset, log end and lag.
    Describe(DescribeArgs),
    /// Move an empty group's committed offsets to start, end, an offset or a time.
    Seek(SeekArgs),
    /// Delete groups (they must be empty).
    Delete(DeleteArgs),
}

#[derive(Args, Debug)]
pub struct DescribeArgs {
    /// The group.
    group: String,
}

#[derive(Args, Debug)]
pub struct SeekArgs {
    /// The group (it must have no members).
    group: String,
    /// Target: start, end, an offset, or @timestamp_ms.
    #[arg(long, value_parser = parse_position)]
    to: Position,
    /// Topics to seek (default: those the group has committed offsets for).
    #[arg(long, num_args = 1.., value_delimiter = ',')]
    topics: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Groups to delete.
    #[arg(required = true, value_name = "GROUP")]
    groups: Vec<String>,
}

pub fn run(cmd: &GroupCmd, client: &mut Client, out: &mut Out) -> Result<Outcome> {
    match cmd {
        GroupCmd::List => list(client, out),
        GroupCmd::Describe(a) => describe(a, client, out),
        GroupCmd::Seek(a) => seek(a, client, out),
        GroupCmd::Delete(a) => delete(a, client, out),
    }
}

fn list(client: &mut Client, out: &mut Out) -> Result<Outcome> {
    let groups = ops::list_groups(client)?;
    if out.is_json() {
        let docs: Vec<Value> = groups
            .iter()
            .map(|g| json!({ "group": g.group, "state": g.state, "protocol_type": g.protocol_type, "coordinator": g.coordinator }))
            .collect();
        return out.json(&Value::Array(docs)).map(|_| Outcome::Ok);
    }
    let mut t = Table::new(&["GROUP", "STATE", "PROTOCOL-TYPE", "COORDINATOR"]);
    for g in groups {
        t.row(vec![g.group, g.state, g.protocol_type, g.coordinator.to_string()]);
    }
    out.text(&t.render())?;
    Ok(Outcome::Ok)
}

/// One row of `group describe`.
struct Lag {
    topic: String,
    partition: i32,
    committed: Option<i64>,
    log_start: i64,
    log_end: i64,
    member: Option<(String, String, String)>,
}

impl Lag {
    fn lag(&self) -> Option<i64> {
        self.committed.map(|c| (self.log_end - c).max(0))
    }
}

fn describe(a: &DescribeArgs, client: &mut Client, out: &mut Out) -> Result<Outcome> {
    let desc = ops::describe_group(client, &a.group)?;
    if desc.state == "Dead" {
        return Err(Error::Kafka {
            code: 69,
            context: format!("group {}", a.group),
            message: Some("no such group".into()),
        });
    }
    let committed = ops::committed_offsets(client, &a.group)?;
    let mut owners: BTreeMap<(String, i32), (String, String, String)> = BTreeMap::new();
    for m in &desc.members {
        for tp in &m.assignment {
            owners.insert(tp.clone(), (m.member_id.clone(), m.client_id.clone(), m.client_host.clone()));
        }
    }
    let keys: BTreeSet<(String, i32)> = committed.keys().chain(owners.keys()).cloned().collect();
    let rows = lag_rows(client, &keys, &committed, &owners)?;
    let total_lag: i64 = rows.iter().filter_map(Lag::lag).sum();
    if out.is_json() {
        let members: Vec<Value> = desc
            .members
            .iter()
            .map(|m| {
                let assigned: Vec<Value> =
                    m.assignment.iter().map(|(t, p)| json!({ "topic": t, "partition": p })).collect();
                json!({ "member_id": m.member_id, "instance_id": m.instance_id, "client_id": m.client_id,
                        "client_host": m.client_host, "assignment": assigned })
            })
            .collect();
        let partitions: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({ "topic": r.topic, "partition": r.partition, "committed_offset": r.committed,
                        "log_start_offset": r.log_start, "log_end_offset": r.log_end, "lag": r.lag(),
                        "member_id": r.member.as_ref().map(|m| &m.0), "client_id": r.member.as_ref().map(|m| &m.1),
                        "host": r.member.as_ref().map(|m| &m.2) })
            })
            .collect();
        let doc = json!({ "group": desc.group, "state": desc.state, "protocol_type": desc.protocol_type,
                          "protocol": desc.protocol, "coordinator": desc.coordinator.id, "members": members,
                          "total_lag": total_lag, "partitions": partitions });
        return out.json(&doc).map(|_| Outcome::Ok);
    }
    let summary = key_values(&[
        ("GROUP", desc.group.clone()),
        ("COORDINATOR", format!("{} ({})", desc.coordinator.id, desc.coordinator.addr())),
        ("STATE", desc.state.clone()),
        ("PROTOCOL-TYPE", desc.protocol_type.clone()),
        ("BALANCER", desc.protocol.clone()),
        ("MEMBERS", desc.members.len().to_string()),
        ("TOTAL-LAG", total_lag.to_string()),
    ]);
    let mut t = Table::new(&[
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-START-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "MEMBER-ID",
        "CLIENT-ID",
        "HOST",
    ]);
    let dash = || "-".to_string();
    for r in &rows {
        let (member, client_id, host) = r.member.clone().unwrap_or_else(|| (dash(), dash(), dash()));
        t.row(vec![
            r.topic.clone(),
            r.partition.to_string(),
            r.committed.map_or_else(dash, |c| c.to_string()),
            r.log_start.to_string(),
            r.log_end.to_string(),
            r.lag().map_or_else(dash, |l| l.to_string()),
            member,
            client_id,
            host,
        ]);
    }
    out.text(&summary)?;
    out.text("\n")?;
    out.text(&t.render())?;
    Ok(Outcome::Ok)
}

fn lag_rows(
    client: &mut Client,
    keys: &BTreeSet<(String, i32)>,
    committed: &BTreeMap<(String, i32), i64>,
    owners: &BTreeMap<(String, i32), (String, String, String)>,
) -> Result<Vec<Lag>> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in keys {
        by_topic.entry(t).or_default().push(*p);
    }
    let topics: Vec<String> = by_topic.keys().map(|t| t.to_string()).collect();
    client.refresh_metadata(Some(&topics))?;
    let mut rows = Vec::new();
    for (topic, parts) in by_topic {
        // A deleted topic still has committed offsets: show them without log offsets.
        let (start, end) = match client.metadata().topic(topic) {
            Ok(_) => {
                let t = [topic.to_string()];
                let start = ops::retrying(client, &t, |c| ops::list_offsets(c, topic, &parts, OffsetSpec::Earliest))?;
                let end = ops::retrying(client, &t, |c| ops::list_offsets(c, topic, &parts, OffsetSpec::Latest))?;
                (start, end)
            }
            Err(_) => (BTreeMap::new(), BTreeMap::new()),
        };
        for p in parts {
            let key = (topic.to_string(), p);
            rows.push(Lag {
                topic: topic.to_string(),
                partition: p,
                committed: committed.get(&key).copied(),
                log_start: start.get(&p).copied().unwrap_or(-1),
                log_end: end.get(&p).copied().unwrap_or(-1),
                member: owners.get(&key).cloned(),
            });
        }
    }
    Ok(rows)
}

fn seek(a: &SeekArgs, client: &mut Client, out: &mut Out) -> Result<Outcome> {
    let desc = ops::describe_group(client, &a.group)?;
    if !desc.members.is_empty() {
        return Err(Error::Usage(format!(
            "group {} has {} active member(s) (state {}): offsets can only be moved while the group is empty; stop its consumers first",
            a.group,
            desc.members.len(),
            desc.state
        )));
    }
    let prior = ops::committed_offsets(client, &a.group)?;
    let topics: Vec<String> = if a.topics.is_empty() {
        prior.keys().map(|(t, _)| t.clone()).collect::<BTreeSet<_>>().into_iter().collect()
    } else {
        a.topics.clone()
    };
    if topics.is_empty() {
        return Err(Error::Usage(format!("group {} has no committed offsets; name the topics with --topics", a.group)));
    }
    client.refresh_metadata(Some(&topics))?;
    let mut target = BTreeMap::new();
    for t in &topics {
        let parts: Vec<i32> = client.metadata().topic(t)?.partitions.iter().map(|p| p.index).collect();
        for (p, o) in resolve_position(client, t, &parts, a.to)? {
            target.insert((t.clone(), p), o);
        }
    }
    ops::commit_offsets(client, &a.group, &target)?;
    if out.is_json() {
        let docs: Vec<Value> = target
            .iter()
            .map(|((t, p), o)| json!({ "topic": t, "partition": p, "prior_offset": prior.get(&(t.clone(), *p)), "offset": o }))
            .collect();
        return out.json(&json!({ "group": a.group, "partitions": docs })).map(|_| Outcome::Ok);
    }
    let mut table = Table::new(&["TOPIC", "PARTITION", "PRIOR-OFFSET", "CURRENT-OFFSET"]);
    for ((t, p), o) in &target {
        let before = prior.get(&(t.clone(), *p)).map_or("-".to_string(), |o| o.to_string());
        table.row(vec![t.clone(), p.to_string(), before, o.to_string()]);
    }
    out.text(&table.render())?;
    Ok(Outcome::Ok)
}

fn delete(a: &DeleteArgs, client: &mut Client, out: &mut Out) -> Result<Outcome> {
    let results = ops::delete_groups(client, &a.groups)?;
    let mut failed = false;
    let mut table = Table::new(&["GROUP", "STATUS"]);
    let mut docs = Vec::new();
    for (g, r) in results {
        let status = match &r {
            Ok(()) => "OK".to_string(),
            Err(e) => {
                failed = true;
                eprintln!("fjord: {e}");
                e.kafka_code().map(error_name).unwrap_or_else(|| e.to_string())
            }
        };
        docs.push(json!({ "group": g, "ok": r.is_ok(), "error": r.is_err().then(|| status.clone()) }));
        table.row(vec![g, status]);
    }
    if out.is_json() {
        out.json(&Value::Array(docs))?;
    } else {
        out.text(&table.render())?;
    }
    Ok(if failed { Outcome::Failed } else { Outcome::Ok })
}
