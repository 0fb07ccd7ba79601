//! Who may call what: one gate in front of every route.
//!
//! The rights a route needs follow from its method and path alone
//! ([`required`]), so no handler can forget its check and the route-by-role
//! test can walk the table. A request proves a role with
//! `Authorization: Bearer <token>`: the peer token from `cluster.toml`
//! (every right, and the only one accepted for Raft RPCs) or a client token
//! whose SHA-256 is listed under `[[client_token]]`. Tokens are compared as
//! hashes in constant time: every configured hash is compared, with no early
//! exit, so timing tells nothing about which entry matched or how much of a
//! guess was right. With no peer token configured the cluster is open (a
//! laptop setting) and everyone holds every role.

use sha2::{Digest, Sha256};
use warp::http::Method;

use crate::config::{ClusterConfig, Role};

/// What a route demands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed: the dashboard's static shell, which holds no data,
    /// and `/api/v1/local`, this peer's role and Raft position, so that
    /// health checks and load balancers need no secret.
    Public,
    /// At least this role.
    Role(Role),
}

/// The rights a request needs, from its method and path.
pub fn required(method: &Method, path: &str) -> Access {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let read = *method == Method::GET || *method == Method::HEAD;
    match segments.as_slice() {
        [""] | ["ui", ..] | ["api", "v1", "local"] if read => Access::Public,
        ["raft", ..] => Access::Role(Role::Peer),
        _ if read => Access::Role(Role::Read),
        ["api", "v1", rest @ ..] => match (method, rest) {
            (&Method::POST, ["jobs"] | ["jobs", "batch"] | ["jobs", _, "cancel"] | ["datasets"])
            | (&Method::PUT, ["artifacts", _]) => Access::Role(Role::Submit),
            _ => Access::Role(Role::Admin),
        },
        _ => Access::Role(Role::Admin),
    }
}

/// Why a request was turned away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No token, or one that matches nothing (401).
    Unauthenticated,
    /// A known token whose role is too small (403).
    Forbidden { holder: String, has: Role, needs: Role },
}

/// The configured tokens, as hashes.
#[derive(Debug, Clone)]
pub struct Authority {
    /// `None`: no peer token configured, everything is open.
    peer: Option<[u8; 32]>,
    clients: Vec<(String, Role, [u8; 32])>,
}

/// SHA-256 of a token, as stored in `cluster.toml` (lower-case hex).
pub fn token_hash_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn hash(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    // black_box keeps the compiler from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

impl Authority {
    /// Builds the table from a validated config (client hashes are checked
    /// hex by config validation; an entry that still fails to decode can
    /// never match).
    pub fn new(config: &ClusterConfig) -> Authority {
        let peer = (!config.token.is_empty()).then(|| hash(config.token.as_bytes()));
        let clients = config
            .client_tokens
            .iter()
            .filter_map(|t| {
                let bytes: [u8; 32] = hex::decode(&t.sha256).ok()?.try_into().ok()?;
                Some((t.name.clone(), t.role, bytes))
            })
            .collect();
        Authority { peer, clients }
    }

    /// The role an `Authorization` header proves, with the holder's name.
    fn identify(&self, header: Option<&str>) -> Option<(String, Role)> {
        let presented = header.and_then(|h| h.strip_prefix("Bearer "))?;
        let presented = hash(presented.as_bytes());
        let mut found = None;
        if let Some(peer) = &self.peer {
            if same(peer, &presented) {
                found = Some(("peer".to_string(), Role::Peer));
            }
        }
        for (name, role, expected) in &self.clients {
            if same(expected, &presented) && found.is_none() {
                found = Some((name.clone(), *role));
            }
        }
        found
    }

    /// Admits or refuses a request that needs `access`.
    pub fn check(&self, access: Access, header: Option<&str>) -> Result<(), Denied> {
        let needs = match access {
            Access::Public => return Ok(()),
            Access::Role(role) => role,
        };
        if self.peer.is_none() {
            return Ok(());
        }
        match self.identify(header) {
            None => Err(Denied::Unauthenticated),
            Some((_, has)) if has >= needs => Ok(()),
            Some((holder, has)) => Err(Denied::Forbidden { holder, has, needs }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> ClusterConfig {
        let text = format!(
            "token = \"peer-secret\"\n{extra}\n[[peer]]\nid = 1\naddress = \"127.0.0.1:7101\"\n\
             data_dir = \"d1\"\n"
        );
        ClusterConfig::parse(&text).expect("test config parses")
    }

    fn entry(name: &str, role: &str, token: &str) -> String {
        format!(
            "[[client_token]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n",
            token_hash_hex(token)
        )
    }

    #[test]
    fn routes_need_the_roles_the_docs_promise() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(required(&get, "/"), Access::Public);
        assert_eq!(required(&get, "/ui/app.js"), Access::Public);
        assert_eq!(required(&get, "/api/v1/local"), Access::Public);
        assert_eq!(required(&get, "/api/v1/nodes"), Access::Role(Role::Read));
        assert_eq!(required(&get, "/api/v1/jobs/7/logs"), Access::Role(Role::Read));
        assert_eq!(required(&get, "/metrics"), Access::Role(Role::Read));
        assert_eq!(required(&post, "/api/v1/jobs"), Access::Role(Role::Submit));
        assert_eq!(required(&post, "/api/v1/jobs/7/cancel"), Access::Role(Role::Submit));
        assert_eq!(required(&Method::PUT, "/api/v1/artifacts/ab"), Access::Role(Role::Submit));
        assert_eq!(required(&post, "/api/v1/schedules/apply"), Access::Role(Role::Admin));
        assert_eq!(required(&post, "/api/v1/queue/pause"), Access::Role(Role::Admin));
        assert_eq!(required(&Method::DELETE, "/api/v1/jobs"), Access::Role(Role::Admin));
        assert_eq!(required(&post, "/raft/append"), Access::Role(Role::Peer));
        assert_eq!(required(&get, "/raft/append"), Access::Role(Role::Peer));
        assert_eq!(required(&post, "/"), Access::Role(Role::Admin));
    }

    #[test]
    fn tokens_prove_exactly_their_role() {
        let cfg = config(&(entry("viewer", "read", "r-tok") + &entry("ci", "submit", "s-tok")));
        let auth = Authority::new(&cfg);
        let read = Access::Role(Role::Read);
        let submit = Access::Role(Role::Submit);
        let peer = Access::Role(Role::Peer);
        assert_eq!(auth.check(read, None), Err(Denied::Unauthenticated));
        assert_eq!(auth.check(read, Some("Bearer nope")), Err(Denied::Unauthenticated));
        assert_eq!(auth.check(read, Some("r-tok")), Err(Denied::Unauthenticated), "Bearer prefix required");
        assert_eq!(auth.check(read, Some("Bearer r-tok")), Ok(()));
        assert_eq!(
            auth.check(submit, Some("Bearer r-tok")),
            Err(Denied::Forbidden { holder: "viewer".into(), has: Role::Read, needs: Role::Submit })
        );
        assert_eq!(auth.check(submit, Some("Bearer s-tok")), Ok(()));
        assert!(matches!(auth.check(peer, Some("Bearer s-tok")), Err(Denied::Forbidden { .. })));
        assert_eq!(auth.check(peer, Some("Bearer peer-secret")), Ok(()));
        assert_eq!(auth.check(Access::Public, None), Ok(()));
    }

    #[test]
    fn no_peer_token_means_open() {
        let cfg = ClusterConfig::parse("[[peer]]\nid = 1\naddress = \"127.0.0.1:7101\"\ndata_dir = \"d\"\n")
            .expect("parses");
        let auth = Authority::new(&cfg);
        assert_eq!(auth.check(Access::Role(Role::Peer), None), Ok(()));
    }

    #[test]
    fn bad_client_token_entries_are_named() {
        let bad_hash = "[[client_token]]\nname = \"ci\"\nrole = \"submit\"\nsha256 = \"abc\"\n";
        let err = ClusterConfig::parse(&format!(
            "token = \"t\"\n{bad_hash}[[peer]]\nid = 1\naddress = \"127.0.0.1:7101\"\ndata_dir = \"d\"\n"
        ))
        .expect_err("short hash refused")
        .to_string();
        assert!(err.contains("client_token[0].sha256"), "{err}");
        let err = ClusterConfig::parse(&format!(
            "{}[[peer]]\nid = 1\naddress = \"127.0.0.1:7101\"\ndata_dir = \"d\"\n",
            entry("ci", "submit", "x")
        ))
        .expect_err("client tokens without a peer token refused")
        .to_string();
        assert!(err.contains("peer token"), "{err}");
        let err = ClusterConfig::parse(&format!(
            "token = \"t\"\n{}[[peer]]\nid = 1\naddress = \"127.0.0.1:7101\"\ndata_dir = \"d\"\n",
            entry("ci", "superuser", "x")
        ))
        .expect_err("unknown role refused")
        .to_string();
        assert!(err.contains("superuser"), "{err}");
    }
}
