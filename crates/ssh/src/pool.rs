//! Connections kept open between the steps of one run (facts before planning, the converge
//! after it), so a host is still reached over one connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::{Session, Target};

/// Parked sessions by the exact target they were opened for (address, port, user, key and
/// `become`): a session is only ever reused for the same login. Each is taken once.
#[derive(Clone, Default)]
pub struct SessionPool {
    parked: Arc<Mutex<HashMap<Target, Session>>>,
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

    pub(crate) fn put(&self, target: Target, session: Session) {
        self.lock().insert(target, session);
    }

    /// The parked session for `target`, if it is still open.
    pub(crate) fn take(&self, target: &Target) -> Option<Session> {
        self.lock().remove(target).filter(|s| !s.is_closed())
    }
}
