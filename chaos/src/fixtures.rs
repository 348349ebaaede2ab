//! What a fault needs in place before a scenario's processes start: a fault proxy between `flk`
//! and Postgres, each Redis node or Kafka, or a small disk under Postgres's tables. The
//! deployment's `flk` processes are pointed at them; the tests' own reads (the checker's, the
//! replay's state hash) still go straight to the stack.

use crate::deployment::Deployment;
use crate::faults::Fault;
use crate::link_proxy::LinkProxy;
use crate::small_disk::SmallDisk;

/// Size of the small disk under Postgres's tables: room for the scenario's tables and indexes
/// (a few MiB for the short form) until the fault fills it.
const SMALL_DISK_MIB: u64 = 256;

/// The proxies and disks one scenario runs with (none for most faults).
#[derive(Debug, Default)]
pub struct Fixtures {
    /// In front of Postgres.
    pub postgres_proxy_opt: Option<LinkProxy>,
    /// One in front of each Redis node, in the stack's order.
    pub redis_proxies: Vec<LinkProxy>,
    /// In front of the broker's LINK listener, which advertises the proxy's address, so every
    /// connection `flk` makes to the cluster goes through it.
    pub broker_proxy_opt: Option<LinkProxy>,
    /// Under the deployment's tables.
    pub small_disk_opt: Option<SmallDisk>,
}

impl Fixtures {
    /// Starts what `fault` needs and points `deployment` at it.
    pub async fn prepare(fault: Fault, deployment: &mut Deployment) -> anyhow::Result<Self> {
        let mut fixtures = Fixtures::default();
        match fault {
            Fault::SlowPostgres | Fault::PostgresBlackhole => {
                let (proxy, url) = proxy_in_front_of_postgres(deployment).await?;
                deployment.flk_postgres_url_opt = Some(url);
                fixtures.postgres_proxy_opt = Some(proxy);
            }
            Fault::RedisLinkFaults => {
                let mut urls = Vec::new();
                for url in &deployment.stack.redis_urls {
                    let address = url.trim_start_matches("redis://").trim_end_matches('/');
                    let listen = free_local_address()?;
                    fixtures
                        .redis_proxies
                        .push(LinkProxy::start(&listen, address).await?);
                    urls.push(format!("redis://{listen}"));
                }
                deployment.flk_redis_urls_opt = Some(urls);
            }
            Fault::BrokerLinkFaults => {
                let (upstream, advertised) = deployment.stack.link()?;
                fixtures.broker_proxy_opt = Some(LinkProxy::start(&advertised, &upstream).await?);
                deployment.flk_brokers_opt = Some(advertised);
            }
            Fault::PostgresDiskFull => {
                let disk = SmallDisk::create(deployment, SMALL_DISK_MIB).await?;
                deployment.flk_postgres_url_opt =
                    Some(disk.url_for(&deployment.stack.postgres_url));
                fixtures.small_disk_opt = Some(disk);
            }
            _ => {}
        }
        Ok(fixtures)
    }

    /// Stops the proxies and removes the small disk; call after [`Deployment::cleanup`] (a
    /// tablespace can only be dropped once the schema on it is gone).
    pub async fn remove(self, deployment: &Deployment) {
        if let Some(disk) = self.small_disk_opt {
            disk.remove(deployment).await;
        }
    }
}

/// A proxy on a free local port in front of the stack's Postgres, and the URL that goes through
/// it.
async fn proxy_in_front_of_postgres(
    deployment: &Deployment,
) -> anyhow::Result<(LinkProxy, String)> {
    let url = &deployment.stack.postgres_url;
    let (scheme_user, rest) = url
        .split_once('@')
        .ok_or_else(|| anyhow::anyhow!("postgres URL without a host: {url}"))?;
    let (address, database) = rest.split_once('/').unwrap_or((rest, ""));
    let listen = free_local_address()?;
    let proxy = LinkProxy::start(&listen, address).await?;
    Ok((proxy, format!("{scheme_user}@{listen}/{database}")))
}

/// `127.0.0.1:<a port free right now>`.
fn free_local_address() -> anyhow::Result<String> {
    let free = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(free.local_addr()?.to_string())
}
