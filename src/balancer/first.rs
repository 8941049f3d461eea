//! `first`: the first healthy backend in config order (primary, then backups).

use super::ordered::{BackendTable, HasOrdered, Ordered, RotationIter};
use pingora_load_balancing::selection::BackendSelection;
use pingora_load_balancing::Backend;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Always starts from the first backend in config order; health filtering does the rest.
pub struct First {
    ordered: Ordered,
}

impl HasOrdered for First {
    fn ordered(&self) -> &Ordered {
        &self.ordered
    }
}

impl BackendSelection for First {
    type Iter = RotationIter<First>;
    type Config = Arc<BackendTable>;

    fn build(backends: &BTreeSet<Backend>) -> Self {
        Self::build_with_config(backends, &Arc::new(BackendTable::standalone(backends)))
    }

    fn build_with_config(backends: &BTreeSet<Backend>, table: &Self::Config) -> Self {
        First {
            ordered: table.ordered(backends),
        }
    }

    fn iter(self: &Arc<Self>, _key: &[u8]) -> Self::Iter {
        RotationIter::new(Arc::clone(self), 0)
    }
}
