//! One classic consumer group: members, generation, the rebalance state
//! machine (Empty → PreparingRebalance → CompletingRebalance → Stable, and
//! Dead once deleted) and its committed offsets.
//!
//! Synchronous and I/O free: the owner shard's `OffsetsPartition` holds the
//! groups in a `RefCell` and calls these methods without awaiting; answers
//! for waiting JoinGroup / SyncGroup calls go out on oneshot channels.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;
use indexmap::IndexMap;

use super::records::{GroupValue, MemberValue, OffsetValue};
use super::GroupError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The names Kafka uses in DescribeGroups / ListGroups.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// What a JoinGroup caller is answered.
#[derive(Debug, Clone, Default)]
pub struct JoinResult {
    pub error: Option<GroupError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// (member id, group instance id, metadata): for the leader only.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    pub fn error(e: GroupError, member_id: &str) -> JoinResult {
        JoinResult { error: Some(e), generation: -1, member_id: member_id.to_string(), ..Default::default() }
    }
}

/// What a SyncGroup caller is answered.
#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    pub error: Option<GroupError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    pub fn error(e: GroupError) -> SyncResult {
        SyncResult { error: Some(e), ..Default::default() }
    }
}

pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub join_waiter: Option<oneshot::Sender<JoinResult>>,
    pub sync_waiter: Option<oneshot::Sender<SyncResult>>,
    pub last_heartbeat: Instant,
    /// Joined but not yet part of a completed generation.
    pub is_new: bool,
}

impl Member {
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(n, _)| n == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }

    /// Awaiting a JoinGroup or SyncGroup answer keeps a member alive; otherwise
    /// its heartbeats must arrive within the session timeout.
    fn alive_at(&self, now: Instant) -> bool {
        if self.join_waiter.is_some() || self.sync_waiter.is_some() {
            return true;
        }
        now.saturating_duration_since(self.last_heartbeat) <= self.session_timeout
    }
}

/// How a new rebalance is timed.
#[derive(Debug, Clone, Copy)]
pub struct RebalanceTiming {
    /// group.initial.rebalance.delay.ms, for a group leaving Empty.
    pub initial_delay: Duration,
}

pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// In join order (the first member leads when the leader is gone).
    pub members: IndexMap<String, Member>,
    /// group.instance.id → member id.
    pub static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they join or expire.
    pub pending: HashMap<String, Instant>,
    pub rebalance_deadline: Option<Instant>,
    /// Initial delayed join: no completion before this.
    pub not_before: Option<Instant>,
    pub not_before_cap: Option<Instant>,
    pub offsets: HashMap<(String, i32), OffsetValue>,
    pub state_timestamp_ms: i64,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Group {
    pub fn new(id: String) -> Group {
        Group {
            id,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: IndexMap::new(),
            static_members: HashMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
            not_before: None,
            not_before_cap: None,
            offsets: HashMap::new(),
            state_timestamp_ms: now_ms(),
        }
    }

    /// A group rebuilt from its GroupMetadataValue: Stable with its members
    /// when it had any (they must heartbeat within their session timeout).
    pub fn restore(id: String, v: GroupValue, now: Instant) -> Group {
        let mut g = Group::new(id);
        g.generation = v.generation;
        g.protocol_type = (!v.protocol_type.is_empty()).then_some(v.protocol_type);
        g.protocol = v.protocol;
        g.leader = v.leader;
        g.state_timestamp_ms = v.state_timestamp_ms;
        for m in v.members {
            if let Some(i) = &m.group_instance_id {
                g.static_members.insert(i.clone(), m.member_id.clone());
            }
            let protocol = g.protocol.clone().unwrap_or_default();
            g.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id,
                    instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout: Duration::from_millis(m.session_timeout_ms.max(0) as u64),
                    rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms.max(0) as u64),
                    protocols: vec![(protocol, m.subscription)],
                    assignment: m.assignment,
                    join_waiter: None,
                    sync_waiter: None,
                    last_heartbeat: now,
                    is_new: false,
                },
            );
        }
        g.state = if g.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
        if g.leader.as_ref().is_some_and(|l| !g.members.contains_key(l)) {
            g.leader = g.members.keys().next().cloned();
        }
        g
    }

    /// The GroupMetadataValue to persist.
    pub fn value(&self) -> GroupValue {
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as i32,
                    session_timeout_ms: m.session_timeout.as_millis() as i32,
                    subscription: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    pub fn set_state(&mut self, s: GroupState) {
        self.state = s;
        self.state_timestamp_ms = now_ms();
    }

    /// Protocols every member supports (names), in the first member's order.
    fn candidate_protocols(&self) -> Vec<String> {
        let mut it = self.members.values();
        let Some(first) = it.next() else { return Vec::new() };
        let mut c: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in it {
            c.retain(|n| m.protocols.iter().any(|(p, _)| p == n));
        }
        c
    }

    /// Whether a (new or changed) member's protocols fit the group.
    pub fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)], except: Option<&str>) -> bool {
        if protocols.is_empty() || protocol_type.is_empty() {
            return false;
        }
        let others: Vec<&Member> = self.members.values().filter(|m| Some(m.id.as_str()) != except).collect();
        if others.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(n, _)| others.iter().all(|m| m.protocols.iter().any(|(p, _)| p == n)))
    }

    /// Majority vote of members' preferred protocol among the candidates.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: IndexMap<&str, usize> = candidates.iter().map(|c| (c.as_str(), 0)).collect();
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                if let Some(v) = votes.get_mut(n.as_str()) {
                    *v += 1;
                }
            }
        }
        let best = votes.values().copied().max()?;
        votes.iter().find(|(_, v)| **v == best).map(|(n, _)| n.to_string())
    }

    fn max_rebalance_timeout(&self) -> Duration {
        self.members.values().map(|m| m.rebalance_timeout).max().unwrap_or(Duration::ZERO)
    }

    /// Starts a rebalance: waiting SyncGroup calls learn REBALANCE_IN_PROGRESS.
    pub fn prepare_rebalance(&mut self, now: Instant, timing: RebalanceTiming) {
        if self.state == GroupState::CompletingRebalance {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(w) = m.sync_waiter.take() {
                    let _ = w.send(SyncResult::error(GroupError::RebalanceInProgress));
                }
            }
        }
        let rebalance_timeout = self.max_rebalance_timeout();
        if self.state == GroupState::Empty && !timing.initial_delay.is_zero() {
            self.not_before = Some(now + timing.initial_delay.min(rebalance_timeout));
            self.not_before_cap = Some(now + rebalance_timeout);
        } else {
            self.not_before = None;
            self.not_before_cap = None;
        }
        self.rebalance_deadline = Some(now + rebalance_timeout);
        self.set_state(GroupState::PreparingRebalance);
    }

    /// A member joined during the initial delay: wait one more delay, up to the cap.
    pub fn extend_initial_delay(&mut self, now: Instant, timing: RebalanceTiming) {
        if let (Some(_), Some(cap)) = (self.not_before, self.not_before_cap) {
            self.not_before = Some((now + timing.initial_delay).min(cap));
        }
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.join_waiter.is_some())
    }

    /// Completes the join phase when everyone rejoined (after any initial
    /// delay) or the rebalance timeout passed. Returns true when the group's
    /// metadata changed in a way that must be persisted (it became Empty).
    pub fn try_complete_join(&mut self, now: Instant) -> bool {
        if self.state != GroupState::PreparingRebalance {
            return false;
        }
        let delayed = self.not_before.is_some_and(|t| now < t);
        let timed_out = self.rebalance_deadline.is_some_and(|t| now >= t);
        if (self.all_joined() && !delayed) || timed_out {
            return self.complete_join(now);
        }
        false
    }

    fn complete_join(&mut self, now: Instant) -> bool {
        // Members that did not rejoin in time are out.
        let missing: Vec<String> =
            self.members.values().filter(|m| m.join_waiter.is_none()).map(|m| m.id.clone()).collect();
        for id in missing {
            self.drop_member(&id);
        }
        self.pending.clear();
        self.not_before = None;
        self.not_before_cap = None;
        self.rebalance_deadline = None;
        self.generation = self.generation.wrapping_add(1);
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.set_state(GroupState::Empty);
            return true;
        }
        self.protocol = self.select_protocol();
        if self.leader.as_ref().is_none_or(|l| !self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.set_state(GroupState::CompletingRebalance);
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let all: Vec<(String, Option<String>, Bytes)> = self
            .members
            .values()
            .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata_for(&protocol)))
            .collect();
        for m in self.members.values_mut() {
            m.last_heartbeat = now;
            m.is_new = false;
            m.assignment = Bytes::new();
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResult {
                    error: None,
                    generation: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: self.protocol.clone(),
                    leader: leader.clone(),
                    member_id: m.id.clone(),
                    members: if m.id == leader { all.clone() } else { Vec::new() },
                });
            }
        }
        false
    }

    /// Removes a member, answering any call it is waiting in.
    fn drop_member(&mut self, id: &str) {
        if let Some(mut m) = self.members.shift_remove(id) {
            if let Some(i) = &m.instance_id {
                if self.static_members.get(i).map(String::as_str) == Some(id) {
                    self.static_members.remove(i);
                }
            }
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinResult::error(GroupError::UnknownMemberId, id));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(SyncResult::error(GroupError::UnknownMemberId));
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    /// A member left or expired: rebalance the rest. Returns true when the
    /// group became Empty and must be persisted.
    pub fn remove_member(&mut self, id: &str, now: Instant, timing: RebalanceTiming) -> bool {
        self.drop_member(id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, timing);
                self.try_complete_join(now)
            }
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty | GroupState::Dead => false,
        }
    }

    /// Expires silent members and pending member ids, and completes a join
    /// whose time is up. Returns true when the group must be persisted.
    pub fn tick(&mut self, now: Instant, timing: RebalanceTiming) -> bool {
        let mut persist = false;
        let expired: Vec<String> = self.members.values().filter(|m| !m.alive_at(now)).map(|m| m.id.clone()).collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            persist |= self.remove_member(&id, now, timing);
        }
        let before = self.pending.len();
        self.pending.retain(|_, expires| *expires > now);
        if self.pending.len() != before {
            persist |= self.try_complete_join(now);
        }
        persist |= self.try_complete_join(now);
        persist
    }

    /// Checks a request's member id / instance id against the group (fencing).
    pub fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), GroupError> {
        if let Some(i) = instance_id {
            match self.static_members.get(i) {
                Some(known) if known != member_id => return Err(GroupError::FencedInstanceId),
                Some(_) => {}
                None => {
                    if !self.members.contains_key(member_id) {
                        return Err(GroupError::UnknownMemberId);
                    }
                }
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        Ok(())
    }

    /// The topics members of a "consumer" group subscribe to (from their
    /// ConsumerProtocolSubscription metadata: version, [topic]).
    pub fn subscribed_topics(&self) -> Option<Vec<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol.clone().unwrap_or_default();
        let mut out = Vec::new();
        for m in self.members.values() {
            let meta = m.metadata_for(&protocol);
            out.extend(parse_subscription_topics(&meta)?);
        }
        Some(out)
    }
}

/// Topics of a ConsumerProtocolSubscription (int16 version, int32 count, strings).
pub fn parse_subscription_topics(meta: &[u8]) -> Option<Vec<String>> {
    let mut pos = 2usize;
    let count = i32::from_be_bytes(meta.get(pos..pos + 4)?.try_into().ok()?);
    pos += 4;
    let mut topics = Vec::new();
    for _ in 0..count.clamp(0, 100_000) {
        let len = i16::from_be_bytes(meta.get(pos..pos + 2)?.try_into().ok()?);
        pos += 2;
        let len = usize::try_from(len).ok()?;
        topics.push(String::from_utf8(meta.get(pos..pos + len)?.to_vec()).ok()?);
        pos += len;
    }
    Some(topics)
}

/// A member for unit tests: `protocols` with their metadata.
#[cfg(test)]
pub(crate) fn test_member(id: &str, protocols: Vec<(String, Bytes)>) -> Member {
    Member {
        id: id.into(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(30),
        protocols,
        assignment: Bytes::new(),
        join_waiter: None,
        sync_waiter: None,
        last_heartbeat: Instant::now(),
        is_new: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, protocols: &[&str]) -> Member {
        test_member(id, protocols.iter().map(|p| (p.to_string(), Bytes::from_static(b"m"))).collect())
    }

    const NO_DELAY: RebalanceTiming = RebalanceTiming { initial_delay: Duration::ZERO };

    /// Two members joining complete one generation: the leader gets all members, the other none.
    #[test]
    fn join_completes_when_all_members_rejoined() {
        let now = Instant::now();
        let mut g = Group::new("g".into());
        g.protocol_type = Some("consumer".into());
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        let mut a = member("a", &["range", "roundrobin"]);
        a.join_waiter = Some(tx1);
        g.members.insert("a".into(), a);
        g.prepare_rebalance(now, NO_DELAY);
        let mut b = member("b", &["roundrobin", "range"]);
        b.join_waiter = Some(tx2);
        g.members.insert("b".into(), b);
        assert!(!g.try_complete_join(now));
        assert_eq!(g.state, GroupState::CompletingRebalance);
        assert_eq!(g.generation, 1);
        let r1 = rx1.try_recv().unwrap().unwrap();
        let r2 = rx2.try_recv().unwrap().unwrap();
        assert_eq!(r1.leader, "a");
        assert_eq!(r1.members.len(), 2);
        assert!(r2.members.is_empty());
        // One vote each: the tie goes to the first candidate in the first member's order.
        assert_eq!(r1.protocol_name.as_deref(), Some("range"));
    }

    /// A member that misses the rebalance deadline is removed, and a silent member expires.
    #[test]
    fn deadline_removes_members_that_did_not_rejoin() {
        let now = Instant::now();
        let mut g = Group::new("g".into());
        g.protocol_type = Some("consumer".into());
        g.members.insert("a".into(), member("a", &["range"]));
        let (tx, _rx) = oneshot::channel();
        let mut b = member("b", &["range"]);
        b.join_waiter = Some(tx);
        g.members.insert("b".into(), b);
        g.prepare_rebalance(now, NO_DELAY);
        assert!(!g.try_complete_join(now));
        assert_eq!(g.state, GroupState::PreparingRebalance);
        g.try_complete_join(now + Duration::from_secs(31));
        assert_eq!(g.members.len(), 1);
        assert_eq!(g.leader.as_deref(), Some("b"));
        // b never heartbeats: after its session timeout the group is empty.
        let persist = g.tick(now + Duration::from_secs(60), NO_DELAY);
        assert!(persist);
        assert_eq!(g.state, GroupState::Empty);
        assert!(g.members.is_empty());
    }

    /// Subscription topics are read from ConsumerProtocolSubscription bytes; garbage gives None.
    #[test]
    fn subscription_topics() {
        let meta = [0u8, 1, 0, 0, 0, 2, 0, 1, b'a', 0, 2, b'b', b'c', 0, 0, 0, 0];
        assert_eq!(parse_subscription_topics(&meta), Some(vec!["a".to_string(), "bc".to_string()]));
        assert_eq!(parse_subscription_topics(&meta[..8]), None);
    }
}
