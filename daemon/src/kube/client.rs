//! The cluster client: kube's HTTP stack, but with `TCP_NODELAY` on the connections to the API
//! server.
//!
//! Why: the port-forward to an agent is a WebSocket on such a connection, and each remote call
//! of a session crosses it as a few small writes. With Nagle's algorithm on (hyper's default), a
//! small write that follows one not yet acknowledged waits for the server's delayed ACK: 42 ms
//! on a remote 4 KiB read, and on one remote `stat` in a hundred, against a tenth of a
//! millisecond without (`cargo bench -p tether --bench kube`).
//!
//! The stack is kube's default minus what this build does not use (proxies are refused as kube
//! refuses them here, no gzip, no retries, no per-request spans): the connector with its
//! timeouts, rustls, the base URI, authentication and extra headers.

use hyper_timeout::TimeoutConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::ConfigExt;
use tower::ServiceBuilder;

/// A client for `config` whose connections send small writes at once.
pub fn build(config: kube::Config) -> anyhow::Result<kube::Client> {
    if config.proxy_url.is_some() {
        // kube's own builder says what this build does with a proxy.
        return Ok(kube::Client::try_from(config)?);
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let tls = config.rustls_https_connector_with_connector(http)?;
    let mut connector = TimeoutConnector::new(tls);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let http_client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(http_client);
    Ok(kube::Client::new(service, config.default_namespace))
}
