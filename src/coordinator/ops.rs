//! The group API operations, run on the coordinator shard against one loaded
//! `OffsetsPartition`. Handlers decode requests into the parameter structs
//! here (all `Send`, they cross the mesh) and encode the results.
//!
//! No `RefCell` borrow of the groups is held across an `.await`: each
//! operation decides under the borrow, drops it, then waits (for a rebalance
//! or a log append), then re-borrows to apply.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;

use super::group::{now_ms, Group, GroupState, JoinResult, Member, SyncResult};
use super::records::{self, OffsetValue};
use super::{timing, validate_group_id, GroupError, OffsetsPartition, OFFSET_METADATA_MAX_BYTES};
use crate::shard::ShardState;

#[derive(Debug, Clone)]
pub struct JoinParams {
    pub api_version: i16,
    pub group_id: String,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
}

enum Next<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
}

pub async fn join(shard: Rc<ShardState>, op: Rc<OffsetsPartition>, p: JoinParams) -> Result<JoinResult, GroupError> {
    validate_group_id(&p.group_id)?;
    let cfg = &shard.config;
    if p.session_timeout_ms < cfg.group_min_session_timeout_ms || p.session_timeout_ms > cfg.group_max_session_timeout_ms {
        return Err(GroupError::InvalidSessionTimeout);
    }
    let metadata_bytes: usize = p.protocols.iter().map(|(n, m)| n.len() + m.len()).sum();
    if metadata_bytes > cfg.group_member_metadata_max_bytes {
        return Err(GroupError::MetadataTooLarge);
    }
    let next = {
        let mut groups = op.groups.borrow_mut();
        let group = groups.entry(p.group_id.clone()).or_insert_with(|| Group::new(p.group_id.clone()));
        join_locked(&shard, group, &p)
    };
    let next = match next {
        Ok(n) => n,
        Err(e) => {
            // A group created only by this failed join leaves no trace.
            let mut groups = op.groups.borrow_mut();
            if groups.get(&p.group_id).is_some_and(|g| g.state == GroupState::Empty && g.members.is_empty() && g.offsets.is_empty() && g.generation == 0) {
                groups.remove(&p.group_id);
            }
            return Err(e);
        }
    };
    match next {
        Next::Now(r) => Ok(r),
        Next::Wait(rx) => Ok(rx.await.unwrap_or_else(|_| JoinResult::error(GroupError::UnknownMemberId, &p.member_id))),
    }
}

fn new_member_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

fn join_locked(shard: &ShardState, group: &mut Group, p: &JoinParams) -> Result<Next<JoinResult>, GroupError> {
    let now = Instant::now();
    let timing = timing(shard);
    if group.state == GroupState::Dead {
        return Err(GroupError::CoordinatorNotAvailable);
    }
    let known = !p.member_id.is_empty() && group.members.contains_key(&p.member_id);
    let except = known.then_some(p.member_id.as_str());
    if !group.supports(&p.protocol_type, &p.protocols, except) {
        return Err(GroupError::InconsistentGroupProtocol);
    }
    if p.member_id.is_empty() {
        // Static member coming back with a new incarnation: replaces the old member id.
        if let Some(instance) = &p.instance_id {
            if let Some(old_id) = group.static_members.get(instance).cloned() {
                return Ok(replace_static_member(group, &old_id, p, now, timing));
            }
        }
        if group.members.len() + group.pending.len() >= shard.config.group_max_size {
            return Err(GroupError::GroupMaxSizeReached);
        }
        let prefix = p.instance_id.clone().unwrap_or_else(|| p.client_id.clone());
        let member_id = new_member_id(&prefix);
        if p.api_version >= 4 && p.instance_id.is_none() {
            // KIP-394: hand out the id first; the member joins with it.
            group.pending.insert(member_id.clone(), now + Duration::from_millis(p.session_timeout_ms as u64));
            return Ok(Next::Now(JoinResult::error(GroupError::MemberIdRequired, &member_id)));
        }
        return Ok(add_member(group, member_id, p, now, timing));
    }
    if group.pending.remove(&p.member_id).is_some() {
        return Ok(add_member(group, p.member_id.clone(), p, now, timing));
    }
    group.check_member(&p.member_id, p.instance_id.as_deref())?;
    let changed = {
        let m = &group.members[&p.member_id];
        m.protocols != p.protocols
    };
    update_member(group, p, now);
    match group.state {
        GroupState::PreparingRebalance => {
            let rx = set_join_waiter(group, &p.member_id);
            group.try_complete_join(now);
            Ok(Next::Wait(rx))
        }
        GroupState::CompletingRebalance | GroupState::Stable
            if !changed && !(group.state == GroupState::Stable && group.leader.as_deref() == Some(&p.member_id)) =>
        {
            // Nothing changed: answer with the current generation (the leader gets the members).
            Ok(Next::Now(current_join_result(group, &p.member_id)))
        }
        GroupState::CompletingRebalance | GroupState::Stable => {
            let rx = set_join_waiter(group, &p.member_id);
            group.prepare_rebalance(now, timing);
            group.try_complete_join(now);
            Ok(Next::Wait(rx))
        }
        GroupState::Empty | GroupState::Dead => Err(GroupError::UnknownMemberId),
    }
}

fn current_join_result(group: &Group, member_id: &str) -> JoinResult {
    let protocol = group.protocol.clone().unwrap_or_default();
    let leader = group.leader.clone().unwrap_or_default();
    JoinResult {
        error: None,
        generation: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol.clone(),
        leader: leader.clone(),
        member_id: member_id.to_string(),
        members: if leader == member_id {
            group.members.values().map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata_for(&protocol))).collect()
        } else {
            Vec::new()
        },
    }
}

fn update_member(group: &mut Group, p: &JoinParams, now: Instant) {
    if let Some(m) = group.members.get_mut(&p.member_id) {
        m.protocols = p.protocols.clone();
        m.session_timeout = Duration::from_millis(p.session_timeout_ms as u64);
        m.rebalance_timeout = Duration::from_millis(p.rebalance_timeout_ms.max(0) as u64);
        m.client_id = p.client_id.clone();
        m.client_host = p.client_host.clone();
        m.last_heartbeat = now;
    }
}

fn set_join_waiter(group: &mut Group, member_id: &str) -> oneshot::Receiver<JoinResult> {
    let (tx, rx) = oneshot::channel();
    if let Some(m) = group.members.get_mut(member_id) {
        if let Some(old) = m.join_waiter.replace(tx) {
            // A second join from the same member supersedes the first.
            let _ = old.send(JoinResult::error(GroupError::RebalanceInProgress, member_id));
        }
    }
    rx
}

fn add_member(
    group: &mut Group,
    member_id: String,
    p: &JoinParams,
    now: Instant,
    timing: super::group::RebalanceTiming,
) -> Next<JoinResult> {
    if group.members.is_empty() {
        group.protocol_type = Some(p.protocol_type.clone());
    }
    let (tx, rx) = oneshot::channel();
    if let Some(i) = &p.instance_id {
        group.static_members.insert(i.clone(), member_id.clone());
    }
    group.members.insert(
        member_id.clone(),
        Member {
            id: member_id,
            instance_id: p.instance_id.clone(),
            client_id: p.client_id.clone(),
            client_host: p.client_host.clone(),
            session_timeout: Duration::from_millis(p.session_timeout_ms as u64),
            rebalance_timeout: Duration::from_millis(p.rebalance_timeout_ms.max(0) as u64),
            protocols: p.protocols.clone(),
            assignment: Bytes::new(),
            join_waiter: Some(tx),
            sync_waiter: None,
            last_heartbeat: now,
            is_new: true,
        },
    );
    match group.state {
        GroupState::PreparingRebalance => group.extend_initial_delay(now, timing),
        _ => group.prepare_rebalance(now, timing),
    }
    group.try_complete_join(now);
    Next::Wait(rx)
}

fn replace_static_member(
    group: &mut Group,
    old_id: &str,
    p: &JoinParams,
    now: Instant,
    timing: super::group::RebalanceTiming,
) -> Next<JoinResult> {
    let instance = p.instance_id.clone().unwrap_or_default();
    let new_id = new_member_id(&instance);
    let Some(mut m) = group.members.shift_remove(old_id) else {
        return add_member(group, new_id, p, now, timing);
    };
    if let Some(w) = m.join_waiter.take() {
        let _ = w.send(JoinResult::error(GroupError::FencedInstanceId, old_id));
    }
    if let Some(w) = m.sync_waiter.take() {
        let _ = w.send(SyncResult::error(GroupError::FencedInstanceId));
    }
    let unchanged = m.protocols == p.protocols;
    m.id = new_id.clone();
    m.protocols = p.protocols.clone();
    m.last_heartbeat = now;
    m.session_timeout = Duration::from_millis(p.session_timeout_ms as u64);
    m.rebalance_timeout = Duration::from_millis(p.rebalance_timeout_ms.max(0) as u64);
    group.members.insert(new_id.clone(), m);
    group.static_members.insert(instance, new_id.clone());
    let was_leader = group.leader.as_deref() == Some(old_id);
    if was_leader {
        group.leader = Some(new_id.clone());
    }
    if group.state == GroupState::Stable && unchanged && !was_leader {
        // KIP-345: a static member's restart does not rebalance the group.
        return Next::Now(current_join_result(group, &new_id));
    }
    let rx = set_join_waiter(group, &new_id);
    if group.state != GroupState::PreparingRebalance {
        group.prepare_rebalance(now, timing);
    }
    group.try_complete_join(now);
    Next::Wait(rx)
}

#[derive(Debug, Clone)]
pub struct SyncParams {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignments: Vec<(String, Bytes)>,
}

pub async fn sync(shard: Rc<ShardState>, op: Rc<OffsetsPartition>, p: SyncParams) -> Result<SyncResult, GroupError> {
    let (rx, leader_persist) = {
        let mut groups = op.groups.borrow_mut();
        let Some(group) = groups.get_mut(&p.group_id) else { return Err(GroupError::UnknownMemberId) };
        if group.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        group.check_member(&p.member_id, p.instance_id.as_deref())?;
        if p.generation != group.generation {
            return Err(GroupError::IllegalGeneration);
        }
        if p.protocol_type.as_ref().is_some_and(|t| Some(t) != group.protocol_type.as_ref())
            || p.protocol_name.as_ref().is_some_and(|n| Some(n) != group.protocol.as_ref())
        {
            return Err(GroupError::InconsistentGroupProtocol);
        }
        match group.state {
            GroupState::Empty | GroupState::Dead => return Err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => return Err(GroupError::RebalanceInProgress),
            GroupState::Stable => {
                let m = &mut group.members[&p.member_id];
                m.last_heartbeat = Instant::now();
                return Ok(SyncResult {
                    error: None,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol.clone(),
                    assignment: m.assignment.clone(),
                });
            }
            GroupState::CompletingRebalance => {}
        }
        let (tx, rx) = oneshot::channel();
        let is_leader = group.leader.as_deref() == Some(p.member_id.as_str());
        if let Some(m) = group.members.get_mut(&p.member_id) {
            m.sync_waiter = Some(tx);
            m.last_heartbeat = Instant::now();
        }
        if is_leader {
            for m in group.members.values_mut() {
                m.assignment = p.assignments.iter().find(|(id, _)| *id == m.id).map(|(_, a)| a.clone()).unwrap_or_default();
            }
        }
        (rx, is_leader.then_some(group.generation))
    };
    if let Some(generation) = leader_persist {
        let result = op.persist_group(&p.group_id).await;
        let mut groups = op.groups.borrow_mut();
        if let Some(group) = groups.get_mut(&p.group_id) {
            if group.state == GroupState::CompletingRebalance && group.generation == generation {
                match result {
                    Ok(()) => {
                        group.set_state(GroupState::Stable);
                        let (pt, pn) = (group.protocol_type.clone(), group.protocol.clone());
                        for m in group.members.values_mut() {
                            if let Some(w) = m.sync_waiter.take() {
                                let _ = w.send(SyncResult {
                                    error: None,
                                    protocol_type: pt.clone(),
                                    protocol_name: pn.clone(),
                                    assignment: m.assignment.clone(),
                                });
                            }
                        }
                    }
                    Err(e) => {
                        for m in group.members.values_mut() {
                            if let Some(w) = m.sync_waiter.take() {
                                let _ = w.send(SyncResult::error(e));
                            }
                        }
                        group.prepare_rebalance(Instant::now(), timing(&shard));
                    }
                }
            }
        }
    }
    Ok(rx.await.unwrap_or_else(|_| SyncResult::error(GroupError::RebalanceInProgress)))
}

pub fn heartbeat(op: &OffsetsPartition, group_id: &str, generation: i32, member_id: &str, instance_id: Option<&str>) -> Result<(), GroupError> {
    let mut groups = op.groups.borrow_mut();
    let Some(group) = groups.get_mut(group_id) else { return Err(GroupError::UnknownMemberId) };
    match group.state {
        GroupState::Dead => return Err(GroupError::CoordinatorNotAvailable),
        GroupState::Empty => return Err(GroupError::UnknownMemberId),
        _ => {}
    }
    group.check_member(member_id, instance_id)?;
    if generation != group.generation {
        return Err(GroupError::IllegalGeneration);
    }
    if let Some(m) = group.members.get_mut(member_id) {
        m.last_heartbeat = Instant::now();
    }
    match group.state {
        GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
        _ => Ok(()),
    }
}

/// LeaveGroup: one result per (member id, instance id); Ok(None) when the group is unknown.
pub async fn leave(
    shard: Rc<ShardState>,
    op: Rc<OffsetsPartition>,
    group_id: String,
    members: Vec<(String, Option<String>)>,
) -> Result<Vec<Result<(), GroupError>>, GroupError> {
    let now = Instant::now();
    let timing = timing(&shard);
    let (results, persist) = {
        let mut groups = op.groups.borrow_mut();
        let Some(group) = groups.get_mut(&group_id) else {
            return Ok(members.iter().map(|_| Err(GroupError::UnknownMemberId)).collect());
        };
        if group.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        let mut persist = false;
        let mut results = Vec::with_capacity(members.len());
        for (member_id, instance_id) in members {
            let target = match &instance_id {
                Some(i) => match group.static_members.get(i) {
                    Some(known) if !member_id.is_empty() && *known != member_id => Err(GroupError::FencedInstanceId),
                    Some(known) => Ok(known.clone()),
                    None => Err(GroupError::UnknownMemberId),
                },
                None if group.members.contains_key(&member_id) => Ok(member_id.clone()),
                None if group.pending.remove(&member_id).is_some() => {
                    results.push(Ok(()));
                    continue;
                }
                None => Err(GroupError::UnknownMemberId),
            };
            match target {
                Ok(id) => {
                    tracing::debug!(group = %group_id, member = %id, "member left");
                    persist |= group.remove_member(&id, now, timing);
                    results.push(Ok(()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        (results, persist)
    };
    if persist {
        op.persist_group(&group_id).await?;
    }
    Ok(results)
}

#[derive(Debug, Clone)]
pub struct CommitParams {
    pub group_id: String,
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    /// (topic, partition, offset, leader epoch, metadata)
    pub offsets: Vec<(String, i32, i64, i32, Option<String>)>,
}

/// OffsetCommit: per-partition results in request order.
pub async fn commit(
    shard: Rc<ShardState>,
    op: Rc<OffsetsPartition>,
    p: CommitParams,
) -> Result<Vec<Result<(), GroupError>>, GroupError> {
    validate_group_id(&p.group_id)?;
    {
        let mut groups = op.groups.borrow_mut();
        match groups.get_mut(&p.group_id) {
            None if p.generation < 0 => {
                groups.insert(p.group_id.clone(), Group::new(p.group_id.clone()));
            }
            None => return Err(GroupError::IllegalGeneration),
            Some(group) => {
                if group.state == GroupState::Dead {
                    return Err(GroupError::CoordinatorNotAvailable);
                }
                if let Some(i) = &p.instance_id {
                    if group.static_members.get(i).is_some_and(|known| *known != p.member_id) {
                        return Err(GroupError::FencedInstanceId);
                    }
                }
                if !(p.generation < 0 && group.state == GroupState::Empty) {
                    if !group.members.contains_key(&p.member_id) {
                        return Err(GroupError::UnknownMemberId);
                    }
                    if p.generation != group.generation {
                        return Err(GroupError::IllegalGeneration);
                    }
                    if group.state == GroupState::CompletingRebalance {
                        return Err(GroupError::RebalanceInProgress);
                    }
                    if let Some(m) = group.members.get_mut(&p.member_id) {
                        m.last_heartbeat = Instant::now();
                    }
                }
            }
        }
    }
    let md = shard.metadata();
    let now = now_ms();
    let mut results = Vec::with_capacity(p.offsets.len());
    let mut recs = Vec::new();
    let mut accepted = Vec::new();
    for (topic, partition, offset, epoch, metadata) in &p.offsets {
        if md.partition(topic, *partition).is_none() {
            results.push(Err(GroupError::UnknownTopicOrPartition));
            continue;
        }
        let metadata = metadata.clone().unwrap_or_default();
        if metadata.len() > OFFSET_METADATA_MAX_BYTES {
            results.push(Err(GroupError::OffsetMetadataTooLarge));
            continue;
        }
        let v = OffsetValue { offset: *offset, leader_epoch: *epoch, metadata, commit_timestamp_ms: now };
        recs.push((records::offset_key(&p.group_id, topic, *partition), Some(records::offset_value(&v))));
        accepted.push((results.len(), topic.clone(), *partition, v));
        results.push(Ok(()));
    }
    if recs.is_empty() {
        return Ok(results);
    }
    if let Err(e) = op.append(&recs).await {
        for (i, ..) in &accepted {
            results[*i] = Err(e);
        }
        return Ok(results);
    }
    let mut groups = op.groups.borrow_mut();
    let group = groups.entry(p.group_id.clone()).or_insert_with(|| Group::new(p.group_id.clone()));
    for (_, topic, partition, v) in accepted {
        group.offsets.insert((topic, partition), v);
    }
    Ok(results)
}

/// Committed offsets of a group: the requested partitions, or all with `None`.
pub fn fetch_offsets(
    op: &OffsetsPartition,
    group_id: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> Vec<(String, Vec<(i32, Option<OffsetValue>)>)> {
    let groups = op.groups.borrow();
    let group = groups.get(group_id);
    match wanted {
        Some(topics) => topics
            .into_iter()
            .map(|(t, parts)| {
                let vals = parts
                    .into_iter()
                    .map(|p| (p, group.and_then(|g| g.offsets.get(&(t.clone(), p)).cloned())))
                    .collect();
                (t, vals)
            })
            .collect(),
        None => {
            let mut by_topic: std::collections::BTreeMap<String, Vec<(i32, Option<OffsetValue>)>> = Default::default();
            if let Some(g) = group {
                for ((t, p), v) in &g.offsets {
                    by_topic.entry(t.clone()).or_default().push((*p, Some(v.clone())));
                }
            }
            by_topic
                .into_iter()
                .map(|(t, mut v)| {
                    v.sort_by_key(|(p, _)| *p);
                    (t, v)
                })
                .collect()
        }
    }
}

/// One group as DescribeGroups shows it.
#[derive(Debug, Clone, Default)]
pub struct GroupDescription {
    pub found: bool,
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    /// (member id, instance id, client id, client host, metadata, assignment)
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

pub fn describe(op: &OffsetsPartition, group_id: &str) -> GroupDescription {
    let groups = op.groups.borrow();
    let Some(g) = groups.get(group_id) else {
        return GroupDescription { found: false, state: "Dead".into(), ..Default::default() };
    };
    let stable = g.state == GroupState::Stable;
    let protocol = g.protocol.clone().unwrap_or_default();
    GroupDescription {
        found: true,
        state: g.state.name().to_string(),
        protocol_type: g.protocol_type.clone().unwrap_or_default(),
        protocol: if stable { protocol.clone() } else { String::new() },
        members: g
            .members
            .values()
            .map(|m| {
                let (meta, asg) =
                    if stable { (m.metadata_for(&protocol), m.assignment.clone()) } else { (Bytes::new(), Bytes::new()) };
                (m.id.clone(), m.instance_id.clone(), m.client_id.clone(), m.client_host.clone(), meta, asg)
            })
            .collect(),
    }
}

/// (group id, protocol type, state) of every group of this partition.
pub fn list(op: &OffsetsPartition) -> Vec<(String, String, String)> {
    op.groups
        .borrow()
        .values()
        .filter(|g| g.state != GroupState::Dead)
        .map(|g| (g.id.clone(), g.protocol_type.clone().unwrap_or_default(), g.state.name().to_string()))
        .collect()
}

/// DeleteGroups for one group: only an empty group can go.
pub async fn delete_group(op: Rc<OffsetsPartition>, group_id: String) -> Result<(), GroupError> {
    let recs = {
        let groups = op.groups.borrow();
        let Some(g) = groups.get(&group_id) else { return Err(GroupError::GroupIdNotFound) };
        match g.state {
            GroupState::Dead => return Err(GroupError::GroupIdNotFound),
            GroupState::Empty => {}
            _ => return Err(GroupError::NonEmptyGroup),
        }
        let mut recs: Vec<(Bytes, Option<Bytes>)> =
            g.offsets.keys().map(|(t, p)| (records::offset_key(&group_id, t, *p), None)).collect();
        recs.push((records::group_key(&group_id), None));
        recs
    };
    op.append(&recs).await?;
    let mut groups = op.groups.borrow_mut();
    if groups.get(&group_id).is_some_and(|g| g.state == GroupState::Empty) {
        if let Some(mut g) = groups.remove(&group_id) {
            g.set_state(GroupState::Dead);
        }
    }
    Ok(())
}

/// OffsetDelete: per-partition results; refused for topics an active consumer group subscribes to.
pub async fn delete_offsets(
    shard: Rc<ShardState>,
    op: Rc<OffsetsPartition>,
    group_id: String,
    partitions: Vec<(String, i32)>,
) -> Result<Vec<Result<(), GroupError>>, GroupError> {
    let md = shard.metadata();
    let (results, recs, keys) = {
        let groups = op.groups.borrow();
        let Some(g) = groups.get(&group_id) else { return Err(GroupError::GroupIdNotFound) };
        if g.state == GroupState::Dead {
            return Err(GroupError::GroupIdNotFound);
        }
        let subscribed = if g.state == GroupState::Empty {
            Some(Vec::new())
        } else {
            g.subscribed_topics()
        };
        let Some(subscribed) = subscribed else { return Err(GroupError::NonEmptyGroup) };
        let mut results = Vec::new();
        let mut recs = Vec::new();
        let mut keys = Vec::new();
        for (t, p) in partitions {
            if md.partition(&t, p).is_none() {
                results.push(Err(GroupError::UnknownTopicOrPartition));
            } else if subscribed.contains(&t) {
                results.push(Err(GroupError::GroupSubscribedToTopic));
            } else {
                if g.offsets.contains_key(&(t.clone(), p)) {
                    recs.push((records::offset_key(&group_id, &t, p), None));
                    keys.push((t, p));
                }
                results.push(Ok(()));
            }
        }
        (results, recs, keys)
    };
    if !recs.is_empty() {
        op.append(&recs).await?;
        if let Some(g) = op.groups.borrow_mut().get_mut(&group_id) {
            for k in keys {
                g.offsets.remove(&k);
            }
        }
    }
    Ok(results)
}
