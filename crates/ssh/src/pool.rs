//! Connections kept open between the steps of one run (facts before planning, the converge
//! after it), so a host is still reached over one connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::{Session, Target};

/// Parked sessions by the exact target they were opened for (address, port, user, key and
/// `become`): a session is only ever reused for the same login. Each is taken once.
/// And the run's connections to jump hosts, each opened once and shared by every target
/// behind it.
#[derive(Clone, Default)]
pub struct SessionPool {
    parked: Arc<Mutex<HashMap<Target, Session>>>,
    jumps: Arc<Mutex<HashMap<Target, JumpCell>>>,
}

/// One jump host's connection: opened by the first target that needs it, while the others
/// wait for it. A failure is not kept: the next target tries again (a bastion back after a
/// blip serves the rest of the run).
type JumpCell = Arc<tokio::sync::OnceCell<Arc<Session>>>;

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

    pub(crate) fn put(&self, target: Target, session: Session) {
        self.lock().insert(target, session);
    }

    /// The parked session for `target`, if it is still open.
    pub(crate) fn take(&self, target: &Target) -> Option<Session> {
        self.lock().remove(target).filter(|s| !s.is_closed())
    }

    /// The jump host's cell: its connection, once the first caller has opened it.
    pub(crate) fn jump(&self, jump: &Target) -> JumpCell {
        let mut jumps = self.jumps.lock().unwrap_or_else(|e| e.into_inner());
        // A connection that closed (the jump host went away) is opened again.
        let closed = jumps
            .get(jump)
            .and_then(|cell| cell.get())
            .is_some_and(|session| session.is_closed());
        if closed {
            jumps.remove(jump);
        }
        jumps.entry(jump.clone()).or_default().clone()
    }
}
