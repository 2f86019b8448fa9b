//! The API by service. Each module's router registers its routes together with their OpenAPI
//! descriptions (`OpenApiRouter::routes(routes!(handler))`), so an endpoint lives in one
//! place: its handler, its `#[utoipa::path]`, and its request and response types, which are
//! also its schema. Services import the leaves (`crate::http`, `crate::wire`), never one
//! another.

mod applications;
mod authorities;
mod clinic;
mod files;
mod kindergarten;
mod operations;
mod registrar;
mod rounds;
mod school;
mod school_order;
mod transparency;

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// Every service's routes and their descriptions: the REST API under `/api/v1`, the officers'
/// files, and `/health`, `/ready` and `/metrics`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(authorities::router())
        .merge(applications::router())
        .merge(kindergarten::router())
        .merge(school::router())
        .merge(clinic::router())
        .merge(rounds::router())
        .merge(files::router())
        .merge(transparency::router())
        .merge(operations::router())
        .merge(registrar::router())
        .merge(school_order::router())
}
