//! Canary guard (issue 25): takes a failing version off its split users within seconds, with a
//! bound α on the probability of ever doing so to a healthy one.
//!
//! Per version against the baseline: the failures of the pair feed a one-sided, anytime-valid
//! sequential test (Lindon & Malek's Dirichlet-multinomial Bayes factor, [`evidence`]) whose null
//! share comes from the version's measured share of the pair's requests ([`window`]); a trip
//! diverts the version's split users to the baseline, then probes and closes ([`state`]). The
//! state is plain bytes ([`codec`]) that the host glue shares across worker VMs with CAS.
//!
//! Pure: no proxy-wasm, no clock; the host glue passes the time and reads the decisions.

pub mod codec;
pub mod config;
pub mod evidence;
pub mod state;
pub mod window;

#[cfg(test)]
mod sim;

pub use codec::DecodeError;
pub use config::{GuardConfig, RawGuard};
pub use evidence::Evidence;
pub use state::{Event, EventKind, Guard, Outcome, Phase, Tally};
