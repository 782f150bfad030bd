//! API keys and scopes (docs/API.md, "Authentication").
//!
//! Keys come from `EVENTIDE_KEYS` (`scope:secret,…`) or from `DATA/keys.json`, which holds
//! only SHA-256 hashes of the secrets. A request carries its key as `X-Honeycomb-Team: KEY`
//! or `Authorization: Bearer KEY`. `admin` may do everything; `ingest` sends events (and
//! markers); `query` runs queries. A key may be limited to datasets matching a pattern
//! (`*` matches any run of characters), and to a rate of events per second (more gets 429
//! with `Retry-After`). Changes to the keys file (new or removed keys) take effect within a
//! second, without a restart. A secret is compared with every stored hash in constant time.
//!
//! # Layout
//! - `keys`: [`Scope`], [`KeyEntry`], secrets and their hashes, dataset patterns, and the
//!   keys file ([`create_key`]).
//! - `store`: [`Keys`], the accepted keys, and the checks of a secret against them.
//! - `rate`: per-key rate limits ([`charge_events`]).
//! - `guard`: the middleware ([`guard()`], [`require`]), the secret a request carries, and how
//!   a refusal ([`Denied`]) maps to an [`ApiError`](crate::ApiError).
//! - `endpoint`: `GET /1/auth` ([`get_auth`]).

mod endpoint;
mod guard;
mod keys;
mod rate;
mod store;

pub use endpoint::get_auth;
pub use guard::{Require, guard, request_secret, require};
pub use keys::{KEYS_FILE, KeyEntry, KeyError, Scope, create_key, new_secret};
pub use rate::charge_events;
pub use store::{Denied, Keys};
