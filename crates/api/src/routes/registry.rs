//! Registry routes: pull (`POST /images/create?fromImage=`), push, `POST /auth`,
//! `GET /images/search`, `GET /distribution/{name}/json`. Pull and push stream Docker's JSON
//! progress; an error before the first line is a plain HTTP error, later ones are in-band.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use berth_engine::registry::{PullRequest, parse_auth};
use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::params::Params;
use crate::stream::{self, Item, error_line, json_line};

fn auth_header(req: &Request) -> Option<String> {
    req.headers()
        .get("x-registry-auth")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// dockerd adds the rendered bar (`progress`) next to `progressDetail`.
fn with_bar(mut v: Value) -> Bytes {
    if let Some(cur) = v["progressDetail"]["current"].as_u64() {
        let total = v["progressDetail"]["total"].as_u64();
        v["progress"] = stream::progress_bar(cur, total).into();
    }
    json_line(&v)
}

/// Run `work` with a progress channel and stream its lines as they come.
async fn progress_stream<F>(work: F) -> Response
where
    F: FnOnce(
            mpsc::UnboundedSender<Value>,
        ) -> futures_util::future::BoxFuture<'static, berth_engine::Result<()>>
        + Send
        + 'static,
{
    let (tx, rx) = mpsc::channel::<Item>(64);
    let (ptx, mut prx) = mpsc::unbounded_channel::<Value>();
    let fut = work(ptx);
    tokio::spawn(async move {
        let job = tokio::spawn(fut);
        while let Some(v) = prx.recv().await {
            if tx.send(Ok(with_bar(v))).await.is_err() {
                // The client went away: dockerd cancels the pull with the request.
                job.abort();
                return;
            }
        }
        let res = match job.await {
            Ok(r) => r,
            Err(e) => Err(berth_engine::Error::internal(format!("task failed: {e}"))),
        };
        if let Err(e) = res {
            let _ = tx.send(Err(e)).await;
        }
    });
    stream::first_or_error(rx, "application/json", Some(error_line)).await
}

/// `POST /images/create?fromImage=&tag=&platform=`
pub async fn pull(s: AppState, req: Request) -> Response {
    let p = Params::from_uri(req.uri());
    let auth = match parse_auth(auth_header(&req).as_deref()) {
        Ok(a) => a,
        Err(e) => return ApiError(e).into_response(),
    };
    let preq = PullRequest {
        from_image: p.get("fromImage").unwrap_or("").to_owned(),
        tag: p.get("tag").unwrap_or("").to_owned(),
        platform: p.get("platform").unwrap_or("").to_owned(),
        auth,
    };
    progress_stream(move |tx| Box::pin(async move { s.engine.images.pull(preq, tx).await })).await
}

/// `POST /images/{name}/push?tag=`
pub async fn push(s: AppState, name: String, req: Request) -> Response {
    let p = Params::from_uri(req.uri());
    let auth = match parse_auth(auth_header(&req).as_deref()) {
        Ok(a) => a,
        Err(e) => return ApiError(e).into_response(),
    };
    let tag = p.get("tag").unwrap_or("").to_owned();
    progress_stream(move |tx| {
        Box::pin(async move { s.engine.images.push(&name, &tag, auth, tx).await })
    })
    .await
}

/// `POST /auth`
pub async fn auth(State(s): State<AppState>, req: Request) -> ApiResult<Response> {
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::invalid(format!("reading body: {e}")))?
        .to_bytes();
    let (status, token) = s.engine.images.login(&body).await?;
    Ok(Json(json!({"Status": status, "IdentityToken": token})).into_response())
}

/// `GET /images/search?term=&limit=&filters=`
pub async fn search(State(s): State<AppState>, req: Request) -> ApiResult<Response> {
    let p = Params::from_uri(req.uri());
    let auth = parse_auth(auth_header(&req).as_deref())?;
    let term = p.get("term").unwrap_or("").to_owned();
    let filters = p.filters()?;
    let results = s
        .engine
        .images
        .search(&term, p.get("limit"), &filters, auth)
        .await?;
    Ok(Json(results).into_response())
}

/// `GET /distribution/{name}/json`
pub async fn distribution(
    State(s): State<AppState>,
    Path(rest): Path<String>,
    req: Request,
) -> ApiResult<Response> {
    let Some(name) = rest.strip_suffix("/json") else {
        return Ok(super::not_found().await);
    };
    let auth = parse_auth(auth_header(&req).as_deref())?;
    let v = s.engine.images.distribution_inspect(name, auth).await?;
    Ok(Json(v).into_response())
}
