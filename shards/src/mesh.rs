//! The cross-shard mesh: run a closure on another shard with its local state
//! and await the result.
//!
//! Each shard has one bounded inbox of jobs. A job is a `Send` closure that,
//! on the target shard, builds a (non-`Send`) future from the shard's state;
//! the result comes back on a oneshot channel. Calls to the caller's own
//! shard skip the inbox and run inline.

use std::cell::OnceCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use futures_channel::oneshot;

use crate::ShardId;

type LocalFuture = Pin<Box<dyn Future<Output = ()>>>;
pub(crate) type Job<S> = Box<dyn FnOnce(Rc<S>) -> LocalFuture + Send>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeshError {
    /// No such shard in this process.
    NoSuchShard(ShardId),
    /// The target shard stopped (shutdown) before answering.
    ShardStopped(ShardId),
}

impl std::fmt::Display for MeshError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MeshError::NoSuchShard(s) => write!(f, "no shard {s}"),
            MeshError::ShardStopped(s) => write!(f, "shard {s} stopped"),
        }
    }
}

impl std::error::Error for MeshError {}

/// One shard's view of the mesh. Lives on exactly one shard (not `Send`):
/// clone it freely within the shard.
pub struct Mesh<S: 'static> {
    id: ShardId,
    inboxes: Rc<Vec<async_channel::Sender<Job<S>>>>,
    local: Rc<OnceCell<Rc<S>>>,
}

impl<S: 'static> Clone for Mesh<S> {
    fn clone(&self) -> Self {
        Mesh { id: self.id, inboxes: self.inboxes.clone(), local: self.local.clone() }
    }
}

impl<S: 'static> Mesh<S> {
    pub(crate) fn new(id: ShardId, inboxes: Vec<async_channel::Sender<Job<S>>>) -> Self {
        Mesh { id, inboxes: Rc::new(inboxes), local: Rc::new(OnceCell::new()) }
    }

    pub(crate) fn set_local(&self, state: Rc<S>) {
        assert!(self.local.set(state).is_ok(), "shard state registered twice");
    }

    /// This shard's id.
    pub fn shard_id(&self) -> ShardId {
        self.id
    }

    pub fn shard_count(&self) -> usize {
        self.inboxes.len()
    }

    /// Runs `f` on shard `target` with that shard's state and returns its
    /// result. Waits (back-pressure) while the target's inbox is full.
    pub async fn call<T, F, Fut>(&self, target: ShardId, f: F) -> Result<T, MeshError>
    where
        T: Send + 'static,
        F: FnOnce(Rc<S>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        if target == self.id {
            if let Some(state) = self.local.get() {
                return Ok(f(state.clone()).await);
            }
        }
        let inbox = self.inboxes.get(target).ok_or(MeshError::NoSuchShard(target))?;
        let started = std::time::Instant::now();
        let (reply_tx, reply_rx) = oneshot::channel::<T>();
        let job: Job<S> = Box::new(move |state: Rc<S>| {
            Box::pin(async move {
                let value = f(state).await;
                // The caller may have gone away (connection closed): nothing to do then.
                let _ = reply_tx.send(value);
            })
        });
        inbox.send(job).await.map_err(|_| MeshError::ShardStopped(target))?;
        let reply = reply_rx.await.map_err(|_| MeshError::ShardStopped(target));
        crate::metrics::record_mesh_call(started.elapsed());
        reply
    }
}

/// Runs jobs arriving in a shard's inbox, each as its own task, until the
/// inbox is closed.
pub(crate) async fn serve_inbox<S: 'static>(inbox: async_channel::Receiver<Job<S>>, state: Rc<S>) {
    while let Ok(job) = inbox.recv().await {
        glommio::spawn_local(job(state.clone())).detach();
    }
}
