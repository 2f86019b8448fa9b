//! OpenAPI schemas (cargo feature `openapi`): the API's document describes the core's types
//! from the types themselves. The structs and enums derive `utoipa::ToSchema` where they are
//! defined; the identifiers are written here by hand because they all share one schema,
//! `Code`, whatever the thing they name.

use std::borrow::Cow;

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

use crate::domain::{AuthorityId, CampaignId, DoctorId, InstitutionId, RoundId, SlotId, Specialty};

/// The schema of every identifier an authority chooses: what `parse_code` accepts. Its example
/// is written under OpenAPI's `example` key, as the derive writes every other example.
#[allow(deprecated)]
fn code() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "An identifier chosen by the authority (institution, campaign, slot, specialty, doctor,\nround): 1-64 ASCII letters, digits, `-`, `_` or `.`.",
        ))
        .pattern(Some("^[A-Za-z0-9._-]{1,64}$"))
        .example(Some(serde_json::Value::from("K001")))
        .into()
}

macro_rules! code_schema {
    ($($id:ty),*) => {$(
        impl utoipa::PartialSchema for $id {
            fn schema() -> RefOr<Schema> {
                code()
            }
        }
        impl utoipa::ToSchema for $id {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed("Code")
            }
        }
    )*};
}

code_schema!(
    InstitutionId,
    AuthorityId,
    CampaignId,
    SlotId,
    Specialty,
    DoctorId,
    RoundId
);
