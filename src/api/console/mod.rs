//! The web console (axum, on the HTTP port): public lookup pages with QR codes, enterprise
//! pages (register, batch upload, list, edit, grants, usage) and operator pages (dashboard,
//! enterprises, quotas). Hand-written HTML, CSS and JavaScript compiled into the binary
//! (`assets/`, no build step); every page is one shell that `app.js` fills from JSON.
//!
//! - `GET /`, `/console/{signin,enterprise,operator}` and `GET /{identifier}` (any other
//!   path whose first segment is not `api`, `console`, `metrics` or `healthz` and that
//!   holds a `/`): the page shell. An identifier that does not parse answers 400.
//! - `GET /console/assets/...`: the shell's script, style sheet, string tables.
//! - `GET /console/qr/{identifier}?format=svg|png`: a QR code of the identifier's
//!   resolution link, `<public URL>/<identifier>` (suffix percent-encoded).
//! - `/console/api/...` (`handlers.rs`): JSON. Public: `resolve`, `templates`. Everything
//!   else needs `Authorization: Bearer <token>` (an enterprise's or the admin's) and calls
//!   the same `Core` methods, with the same authorisation, as gRPC and the Handle API.
//!
//! Every console response carries a strict Content-Security-Policy (no inline script or
//! style, `default-src 'self'`, `frame-ancestors 'none'`), `X-Content-Type-Options:
//! nosniff` and `Referrer-Policy: no-referrer`. The page stores the token in
//! `sessionStorage` and sends it only in the `Authorization` header: no cookie, so no
//! ambient credential a cross-site request could use (no CSRF), and never in a URL. Data is
//! put into the page as text (`textContent`), never as markup. Owns no rules.

mod convert;
mod handlers;
mod qr;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::resolver::{Core, Interface};
use crate::telemetry::Telemetry;
use crate::upstream::Reporter;

/// The content security policy of every console response: scripts, styles, images and
/// requests from this origin only; nothing inline; no frames, plugins or base changes.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// First path segments that are never identifiers: the node's other endpoints.
const RESERVED: [&str; 4] = ["api", "console", "metrics", "healthz"];

/// What the console needs besides the core.
pub struct Console {
    pub core: Arc<Core>,
    pub telemetry: Arc<Telemetry>,
    /// The top-level node (embedded or external), for the federation's statistics.
    pub reporter: Arc<dyn Reporter>,
    /// The start of resolution links, without a trailing `/`: `--public-url`, else the
    /// HTTP listener's own URL.
    pub public_url: String,
    /// The HTTP body limit (`limits.max_http_body_bytes`): batch uploads are cut below it.
    pub max_body_bytes: usize,
}

impl Console {
    /// The console of a node whose HTTP listener is `http_addr` (`tls`: served over HTTPS).
    pub fn new(
        core: Arc<Core>,
        telemetry: Arc<Telemetry>,
        reporter: Arc<dyn Reporter>,
        public_url: Option<String>,
        http_addr: SocketAddr,
        tls: bool,
        max_body_bytes: usize,
    ) -> Console {
        let scheme = if tls { "https" } else { "http" };
        Console {
            core,
            telemetry,
            reporter,
            public_url: public_url.unwrap_or_else(|| format!("{scheme}://{http_addr}")),
            max_body_bytes,
        }
    }

    /// The resolution link of `id`: the public URL, the prefix, the percent-encoded suffix
    /// (`/` kept, so the path reads like the identifier).
    pub fn link(&self, id: &crate::identifier::Identifier) -> String {
        format!(
            "{}/{}/{}",
            self.public_url,
            id.prefix_str(),
            percent_encoding::utf8_percent_encode(id.suffix(), SUFFIX)
        )
    }
}

/// Bytes of a suffix written as they are in a link: unreserved characters and `/`.
const SUFFIX: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// The console's routes (merged into the HTTP router, behind its admission and body
/// limit).
pub fn router(console: Arc<Console>) -> Router {
    let api = Router::new()
        .route("/resolve", get(handlers::resolve))
        .route("/templates", get(handlers::templates))
        .route("/session", get(handlers::session))
        .route("/records", get(handlers::records))
        .route(
            "/record",
            get(handlers::record)
                .post(handlers::register)
                .put(handlers::replace)
                .delete(handlers::delete),
        )
        .route("/batch", post(handlers::batch))
        .route(
            "/grants",
            get(handlers::grants)
                .post(handlers::grant)
                .delete(handlers::revoke_grant),
        )
        .route("/usage", get(handlers::usage))
        .route("/dashboard", get(handlers::dashboard))
        .route(
            "/enterprises",
            get(handlers::enterprises).post(handlers::create_enterprise),
        )
        .route("/enterprises/rotate", post(handlers::rotate))
        .route("/quota", axum::routing::put(handlers::quota))
        .fallback(|| async {
            handlers::Failure::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
                .into_response()
        })
        .layer(axum::middleware::map_response(no_store));
    Router::new()
        .route("/", get(page))
        .route("/console/{page}", get(console_page))
        .route("/console/assets/{*file}", get(asset))
        .route("/console/qr/{*identifier}", get(qr_code))
        .nest("/console/api", api)
        .layer(axum::middleware::map_response(secure))
        .with_state(console)
}

/// Adds the security headers to a console response (a middleware).
async fn secure(response: Response) -> Response {
    secured(response)
}

/// Adds the security headers to a console response.
pub fn secured(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// API answers are per caller: never cached.
async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

const INDEX: &str = include_str!("assets/index.html");

fn shell(status: StatusCode) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INDEX,
    )
        .into_response()
}

async fn page() -> Response {
    shell(StatusCode::OK)
}

async fn console_page(Path(page): Path<String>) -> Response {
    match page.as_str() {
        "signin" | "enterprise" | "operator" => shell(StatusCode::OK),
        _ => shell(StatusCode::NOT_FOUND),
    }
}

/// The page of `/{identifier}`, for the HTTP router's fallback: `None` when the path is
/// not an identifier page (the caller answers its own 404). 400 when the identifier does
/// not parse (the page then says so).
pub fn identifier_page(console: &Console, request: &Request) -> Option<Response> {
    if request.method() != axum::http::Method::GET {
        return None;
    }
    let path = request.uri().path().strip_prefix('/')?;
    let (first, _) = path.split_once('/')?;
    if RESERVED.contains(&first) {
        return None;
    }
    let text = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .ok()?;
    let response = match console.core.parse_identifier(&text) {
        Ok(_) => shell(StatusCode::OK),
        Err(_) => shell(StatusCode::BAD_REQUEST),
    };
    Some(secured(response))
}

/// The compiled-in assets: (path under `/console/assets/`, content type, bytes).
const ASSETS: [(&str, &str, &[u8]); 5] = [
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/app.css"),
    ),
    (
        "i18n/zh-CN.json",
        "application/json",
        include_bytes!("assets/i18n/zh-CN.json"),
    ),
    (
        "i18n/en.json",
        "application/json",
        include_bytes!("assets/i18n/en.json"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("assets/favicon.svg"),
    ),
];

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, bytes)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

async fn qr_code(
    State(console): State<Arc<Console>>,
    Path(identifier): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let id = match console.core.parse_identifier(&identifier) {
        Ok(id) => id,
        Err(e) => {
            return handlers::Failure::new(StatusCode::BAD_REQUEST, "invalid_argument", e.message)
                .into_response()
        }
    };
    let link = console.link(&id);
    let q = crate::api::http::convert::query_pairs(raw.as_deref());
    let format = crate::api::http::convert::all(&q, "format")
        .next()
        .unwrap_or("svg");
    let image = match format {
        "svg" => qr::svg(&link).map(|s| ("image/svg+xml", s.into_bytes())),
        "png" => qr::png(&link).map(|b| ("image/png", b)),
        _ => {
            return handlers::Failure::new(
                StatusCode::BAD_REQUEST,
                "invalid_argument",
                "format must be svg or png",
            )
            .into_response()
        }
    };
    match image {
        Ok((content_type, bytes)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => handlers::Failure::from(e).into_response(),
    }
}

/// Samples the core's resolution counts into the per-minute ring (the dashboard's chart)
/// every two seconds until `shutdown`.
pub async fn sample_resolutions(
    core: Arc<Core>,
    telemetry: Arc<Telemetry>,
    shutdown: CancellationToken,
) {
    loop {
        let counts: Vec<(&'static str, u64)> = Interface::ALL
            .iter()
            .map(|via| {
                let (local, forwarded) = core.resolutions().get(*via);
                (via.name(), local + forwarded)
            })
            .collect();
        telemetry.sample_resolutions(crate::auth::now().div_euclid(60), &counts);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_keep_the_identifier_readable_and_escape_the_rest() {
        let core = Arc::new(Core::in_memory("88.101"));
        let console = Console {
            core,
            telemetry: Arc::new(Telemetry::new()),
            reporter: Arc::new(NoReporter),
            public_url: "https://id.example.cn".into(),
            max_body_bytes: 1 << 20,
        };
        for (text, link) in [
            (
                "88.101.5/BAT-2024-000001",
                "https://id.example.cn/88.101.5/BAT-2024-000001",
            ),
            ("88.101.5/a/b c", "https://id.example.cn/88.101.5/a/b%20c"),
            (
                "88.101.5/批次?#1",
                "https://id.example.cn/88.101.5/%E6%89%B9%E6%AC%A1%3F%231",
            ),
        ] {
            let id = crate::identifier::Identifier::parse(text).unwrap();
            assert_eq!(console.link(&id), link);
        }
    }

    struct NoReporter;

    #[async_trait::async_trait]
    impl Reporter for NoReporter {
        async fn heartbeat(
            &self,
            _: &str,
            _: &crate::toplevel::Endpoints,
        ) -> crate::error::Result<Vec<crate::toplevel::ServerStatus>> {
            Ok(Vec::new())
        }
        async fn report(&self, _: &crate::toplevel::Report) -> crate::error::Result<()> {
            Ok(())
        }
        async fn federation(&self) -> crate::error::Result<crate::upstream::Federation> {
            Ok(Default::default())
        }
        fn describe(&self) -> String {
            "none".into()
        }
    }
}
