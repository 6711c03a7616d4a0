//! Connections kept open between the steps of one run (facts before planning, the converge
//! after it), so a host is still reached over one connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::{ClientOptions, Session, SshError, Target};

/// Parked sessions by the exact target they were opened for (address, port, user, key and
/// `become`): a session is only ever reused for the same login. Each is taken once.
/// And the run's connections to jump hosts, each opened once and shared by every target
/// behind it ([`SharedSessions`]).
#[derive(Clone)]
pub struct SessionPool {
    parked: Arc<Mutex<HashMap<Target, Session>>>,
    pub(crate) jumps: SharedSessions,
    /// Sessions parked at once at most: the share of the open-files limit left to them.
    /// A session beyond it is closed, and its target logs in again when next reached.
    capacity: Arc<AtomicUsize>,
}

impl Default for SessionPool {
    fn default() -> Self {
        SessionPool {
            parked: Arc::default(),
            jumps: SharedSessions::default(),
            capacity: Arc::new(AtomicUsize::new(usize::MAX)),
        }
    }
}

/// Connections shared by many tasks (to a jump host, by the targets behind it; to a peer, by
/// a batch's gates), each opened by the first task that needs it while the others wait: not
/// a burst of logins to one sshd. A failure is not kept, nor a connection that closed: the
/// next task tries again (a host back after a blip serves the rest). Each connection ends
/// when its last holder drops it.
#[derive(Clone, Default)]
pub struct SharedSessions(Arc<Mutex<HashMap<Target, SharedCell>>>);

type SharedCell = Arc<tokio::sync::OnceCell<Arc<Session>>>;

impl SharedSessions {
    /// The shared connection to `target` (a parked one if `opts.pool` holds it).
    pub async fn connect(
        &self,
        target: &Target,
        opts: &ClientOptions,
    ) -> Result<Arc<Session>, SshError> {
        let open = || async { Session::connect(target, opts).await.map(Arc::new) };
        self.cell(target).get_or_try_init(open).await.cloned()
    }

    /// Hands each connection no task holds any more to `opts.pool` when `reached_again`
    /// says its host has a next step in this run (a gate's peer is converged, or has its
    /// backups removed, next); closes the others.
    pub fn park(&self, opts: &ClientOptions, reached_again: impl Fn(&Target) -> bool) {
        let cells = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        for (target, cell) in cells.into_iter().filter(|(t, _)| reached_again(t)) {
            let session = Arc::try_unwrap(cell)
                .ok()
                .and_then(|cell| cell.into_inner());
            if let Some(Ok(session)) = session.map(Arc::try_unwrap) {
                if !session.is_closed() {
                    session.park(&target, opts);
                }
            }
        }
    }

    /// `target`'s cell: its connection, once the first caller has opened it.
    pub(crate) fn cell(&self, target: &Target) -> SharedCell {
        let mut cells = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let closed = cells
            .get(target)
            .and_then(|cell| cell.get())
            .is_some_and(|session| session.is_closed());
        if closed {
            cells.remove(target);
        }
        cells.entry(target.clone()).or_default().clone()
    }
}

impl std::fmt::Debug for SessionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPool")
            .field("parked", &self.lock().len())
            .finish()
    }
}

/// Two options are equal when they share one pool.
impl PartialEq for SessionPool {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.parked, &other.parked)
    }
}

impl Eq for SessionPool {}

impl SessionPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Target, Session>> {
        // A panic elsewhere while holding the lock leaves the map itself intact.
        self.parked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Parks no more than `sessions` at once from now on (see [`crate::raise_open_files_limit`]);
    /// sessions parked beyond it are closed (their targets log in again when next reached).
    pub fn limit_parked(&self, sessions: usize) {
        self.capacity.store(sessions, Ordering::Relaxed);
        let mut parked = self.lock();
        let over: Vec<Target> = parked.keys().skip(sessions).cloned().collect();
        for target in over {
            parked.remove(&target);
        }
    }

    /// Sessions parked now.
    pub fn parked(&self) -> usize {
        self.lock().len()
    }

    /// Parks `session`; a session past the capacity is dropped, which ends its connection.
    pub(crate) fn put(&self, target: Target, session: Session) {
        let mut parked = self.lock();
        if parked.len() < self.capacity.load(Ordering::Relaxed) || parked.contains_key(&target) {
            parked.insert(target, session);
        }
    }

    /// Closes the session parked for `target`, if any: the step it was kept for did not
    /// need it.
    pub fn release(&self, target: &Target) {
        self.lock().remove(target);
    }

    /// The parked session for `target`, if it is still open.
    pub(crate) fn take(&self, target: &Target) -> Option<Session> {
        self.lock().remove(target).filter(|s| !s.is_closed())
    }
}
