//! The web dashboard served at `/` by every peer.
//!
//! Plain HTML, vanilla JavaScript and CSS, embedded in the binary with
//! `include_str!`: no CDN, no build step, nothing fetched from outside. The
//! page reads the same client API as the CLI (`/api/v1/...`) from whichever
//! peer served it, so it works on any peer, leader or not. The cluster token
//! is typed into a field or passed in the URL fragment (`#token=...`, never
//! sent to the server), kept in `sessionStorage`, and sent as
//! `Authorization: Bearer` on writes only.

use warp::http::{header, HeaderValue};
use warp::Filter;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

fn asset(body: &'static str, content_type: &'static str) -> warp::reply::Response {
    let mut response = warp::reply::Response::new(body.into());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // The page only talks to the peer that served it.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; style-src 'self'; script-src 'self'"),
    );
    response
}

/// `GET /`, `GET /ui/app.js`, `GET /ui/style.css`.
pub fn routes() -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let index = warp::path::end().and(warp::get()).map(|| asset(INDEX_HTML, "text/html; charset=utf-8"));
    let js =
        warp::path!("ui" / "app.js").and(warp::get()).map(|| asset(APP_JS, "text/javascript; charset=utf-8"));
    let css =
        warp::path!("ui" / "style.css").and(warp::get()).map(|| asset(STYLE_CSS, "text/css; charset=utf-8"));
    index.or(js).unify().or(css).unify()
}
