//! Outgoing Raft RPCs over HTTP: one reused reqwest client per peer,
//! bincode bodies, the cluster token, openraft's per-RPC deadline, and
//! connection failures classified as `Unreachable` so openraft backs off.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{decode, encode, NodeId, TypeConfig};
use crate::tls::Trust;

/// Path prefix of the Raft RPC routes on every peer.
pub const RAFT_PATH: &str = "raft";

/// Creates per-peer network handles; keeps one HTTP client per peer so
/// connections are pooled and reused across openraft's reconnects.
pub struct HttpNetworkFactory {
    token: String,
    /// `http` or `https`, as every peer of the cluster serves.
    scheme: &'static str,
    /// The cluster CA, when peers serve https.
    trust: Trust,
    clients: BTreeMap<NodeId, reqwest::Client>,
}

impl HttpNetworkFactory {
    pub fn new(token: String, scheme: &'static str, trust: Trust) -> HttpNetworkFactory {
        HttpNetworkFactory { token, scheme, trust, clients: BTreeMap::new() }
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetworkFactory {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerConnection {
        let trust = &self.trust;
        let http = self
            .clients
            .entry(target)
            .or_insert_with(|| {
                trust
                    .peers_only(reqwest::Client::builder())
                    .connect_timeout(Duration::from_millis(500))
                    .tcp_nodelay(true)
                    .pool_max_idle_per_host(4)
                    .build()
                    .unwrap_or_default()
            })
            .clone();
        PeerConnection {
            target,
            base: format!("{}://{}/{RAFT_PATH}", self.scheme, node.addr),
            http,
            token: self.token.clone(),
        }
    }
}

/// A connection to one peer.
pub struct PeerConnection {
    target: NodeId,
    base: String,
    http: reqwest::Client,
    token: String,
}

impl PeerConnection {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = encode(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let response = self
            .http
            .post(format!("{}/{path}", self.base))
            .bearer_auth(&self.token)
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if !status.is_success() {
            let message =
                format!("peer {} answered {status}: {}", self.target, String::from_utf8_lossy(&bytes));
            return Err(RPCError::Network(NetworkError::new(&std::io::Error::other(message))));
        }
        let result: Result<Resp, RaftError<NodeId, E>> =
            decode(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("append", &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call("snapshot", &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("vote", &rpc, option.hard_ttl()).await
    }
}
