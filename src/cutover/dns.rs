//! MX records and their TTL, from a real resolver (hickory). The TTL that matters is the
//! one the domain's own servers hand out (what a resolver caches at most), not the
//! remaining lifetime a caching resolver reports. So, without `[cutover] nameservers`, the
//! domain's NS records are looked up with the system resolver and the MX question is put
//! to those servers directly; only when none of them answers does the system resolver's
//! (possibly counted-down) TTL stand in, and the answer says so. With `nameservers`, those
//! servers are asked directly and taken as they answer (tests, split-horizon DNS).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;

use super::{MxHost, MxObservation};
use crate::diagnostics::HasHint;

/// Per DNS question; two attempts.
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub(crate) enum DnsError {
    #[error("the domain `{domain}` does not exist in DNS")]
    NoSuchDomain { domain: String },
    #[error("the domain `{domain}` has no MX records")]
    NoMx { domain: String },
    #[error("cannot look up the MX records of `{domain}`")]
    Lookup {
        domain: String,
        #[source]
        source: hickory_resolver::net::NetError,
    },
    #[error("cannot read the system's DNS configuration")]
    SystemConfig {
        #[source]
        source: hickory_resolver::net::NetError,
    },
}

impl HasHint for DnsError {
    fn hint(&self) -> Option<String> {
        match self {
            DnsError::NoSuchDomain { domain } | DnsError::NoMx { domain } => Some(format!(
                "`{domain}` comes from the users in the accounts CSV; check the domain, or \
                 the `[cutover] nameservers` asked"
            )),
            DnsError::Lookup { .. } | DnsError::SystemConfig { .. } => Some(
                "check the network, `/etc/resolv.conf`, or set `[cutover] nameservers`".to_string(),
            ),
        }
    }
}

/// Where the TTL came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TtlSource {
    /// `[cutover] nameservers`.
    Configured,
    /// The domain's own (authoritative) name servers.
    Authoritative,
    /// A caching resolver: the TTL may be lower than the one the domain hands out.
    Cache,
}

impl TtlSource {
    pub(crate) fn code(self) -> &'static str {
        match self {
            TtlSource::Configured => "configured-nameservers",
            TtlSource::Authoritative => "authoritative",
            TtlSource::Cache => "cache",
        }
    }
}

/// Asks DNS about MX records.
pub(crate) struct MxResolver {
    configured: Option<TokioResolver>,
    system: Option<TokioResolver>,
}

fn options() -> ResolverOpts {
    let mut opts = ResolverOpts::default();
    opts.timeout = TIMEOUT;
    opts.attempts = 2;
    opts.cache_size = 0;
    opts
}

fn resolver_for(servers: &[SocketAddr], recursion: bool) -> TokioResolver {
    let mut config = ResolverConfig::from_name_servers(Vec::new());
    for addr in servers {
        let mut udp = ConnectionConfig::udp();
        udp.port = addr.port();
        let mut tcp = ConnectionConfig::tcp();
        tcp.port = addr.port();
        config.add_name_server(NameServerConfig::new(addr.ip(), true, vec![udp, tcp]));
    }
    let mut opts = options();
    opts.recursion_desired = recursion;
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .expect("a resolver with explicit servers always builds")
}

impl MxResolver {
    /// `nameservers` empty: the system's configuration (`/etc/resolv.conf`).
    pub(crate) fn new(nameservers: &[SocketAddr]) -> Result<MxResolver, DnsError> {
        if !nameservers.is_empty() {
            return Ok(MxResolver {
                configured: Some(resolver_for(nameservers, true)),
                system: None,
            });
        }
        let mut builder =
            TokioResolver::builder_tokio().map_err(|source| DnsError::SystemConfig { source })?;
        *builder.options_mut() = {
            let mut o = options();
            o.ndots = builder.options_mut().ndots;
            o
        };
        let system = builder
            .build()
            .map_err(|source| DnsError::SystemConfig { source })?;
        Ok(MxResolver {
            configured: None,
            system: Some(system),
        })
    }

    /// The MX records of `domain` and their TTL, and where the TTL came from.
    pub(crate) async fn lookup(
        &self,
        domain: &str,
    ) -> Result<(MxObservation, TtlSource), DnsError> {
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        if let Some(r) = &self.configured {
            return Ok((mx(r, domain, &fqdn).await?, TtlSource::Configured));
        }
        let system = self.system.as_ref().expect("one resolver is set");
        let cached = mx(system, domain, &fqdn).await?;
        match self.authoritative(system, domain, &fqdn).await {
            Some(observation) => Ok((observation, TtlSource::Authoritative)),
            None => Ok((cached, TtlSource::Cache)),
        }
    }

    /// Asks the domain's NS servers directly; `None` when that does not work out.
    async fn authoritative(
        &self,
        system: &TokioResolver,
        domain: &str,
        fqdn: &str,
    ) -> Option<MxObservation> {
        let ns = system.ns_lookup(fqdn).await.ok()?;
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for record in ns.answers() {
            let RData::NS(name) = &record.data else {
                continue;
            };
            if let Ok(ips) = system.lookup_ip(name.0.to_string()).await {
                addrs.extend(ips.iter().map(|ip: IpAddr| SocketAddr::new(ip, 53)));
            }
            if addrs.len() >= 4 {
                break;
            }
        }
        if addrs.is_empty() {
            return None;
        }
        let direct = resolver_for(&addrs, false);
        match mx(&direct, domain, fqdn).await {
            Ok(o) => Some(o),
            Err(e) => {
                tracing::debug!(%domain, error = %e, "the domain's name servers did not answer; using the resolver's TTL");
                None
            }
        }
    }
}

async fn mx(resolver: &TokioResolver, domain: &str, fqdn: &str) -> Result<MxObservation, DnsError> {
    let lookup = match resolver.mx_lookup(fqdn).await {
        Ok(l) => l,
        Err(e) if e.is_nx_domain() => {
            return Err(DnsError::NoSuchDomain {
                domain: domain.to_string(),
            })
        }
        Err(e) if e.is_no_records_found() => {
            return Err(DnsError::NoMx {
                domain: domain.to_string(),
            })
        }
        Err(source) => {
            return Err(DnsError::Lookup {
                domain: domain.to_string(),
                source,
            })
        }
    };
    let mut hosts = Vec::new();
    let mut ttl = 0;
    for record in lookup.answers() {
        if let RData::MX(mx) = &record.data {
            ttl = ttl.max(record.ttl);
            hosts.push(MxHost {
                preference: mx.preference,
                exchange: mx
                    .exchange
                    .to_string()
                    .trim_end_matches('.')
                    .to_ascii_lowercase(),
            });
        }
    }
    if hosts.is_empty() {
        return Err(DnsError::NoMx {
            domain: domain.to_string(),
        });
    }
    hosts.sort_by(|a, b| (a.preference, &a.exchange).cmp(&(b.preference, &b.exchange)));
    Ok(MxObservation { hosts, ttl })
}
