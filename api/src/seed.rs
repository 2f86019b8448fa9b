//! Seeds a demo authority on first start: institutions in four districts, a first-grade
//! campaign whose stage 1 is open now, clinic slots, a few hundred applications with some
//! privileges confirmed, and kindergarten seats for their intake year.
//!
//! Seeding is resumable: a server killed part-way leaves a prefix of the seed in the log, and
//! the next start carries on where it stopped ([`demo_needs_seeding`]). Every step is sent
//! under its own Idempotency-Key (`demo-seed:N`) and skipped when the rules already refuse it
//! (the institution exists, the child has an application, ...), so running the seed over a
//! finished demo writes nothing.

use chrono::{Datelike, Duration, NaiveDate, Utc};
use ochered_core::command::Command;
use ochered_core::domain::{ApplicationNumber, PersonKey};
use ochered_writer::demo::{self, DemoShape, SeededRng};
use ochered_writer::{Engine, Outcome, RequestMeta, Writer, WriterError};

/// Applications the demo starts with.
pub const DEMO_KINDERGARTEN_APPLICATIONS: u64 = 300;
pub const DEMO_SCHOOL_APPLICATIONS: u64 = 80;

/// The demo's shape for today: a campaign for the coming school year whose stage 1 opened two
/// weeks ago and whose stage 2 opens in a month.
pub fn demo_shape(today: NaiveDate) -> DemoShape {
    let campaign_year = if today < NaiveDate::from_ymd_opt(today.year(), 8, 1).expect("valid") {
        today.year()
    } else {
        today.year() + 1
    };
    DemoShape {
        campaign_year,
        stage1_opens: today - Duration::days(14),
        stage2_opens: today + Duration::days(30),
        ..DemoShape::default()
    }
}

/// Whether a start should seed (or finish seeding) the demo authority: the log holds no
/// authority at all, or holds the demo authority (which a kill may have left half-made).
pub fn demo_needs_seeding(authorities: &[String], demo: &str) -> bool {
    authorities.is_empty() || authorities.iter().any(|a| a == demo)
}

/// Sends one step of the seed under its key, unless the rules already refuse it. A step
/// recorded before under this key gets its first answer back; one recorded on another day
/// (a different request under the same key) is skipped. Returns whether it was accepted.
async fn step(
    writer: &Writer,
    n: usize,
    command: Command,
    meta: RequestMeta,
) -> anyhow::Result<bool> {
    if let Some(Err(rejection)) = writer.check([&command]).pop() {
        tracing::debug!(%rejection, "demo step already done or refused");
        return Ok(false);
    }
    let meta = RequestMeta {
        idempotency_key: Some(format!("demo-seed:{n}")),
        ..meta
    };
    match writer.submit(command, meta).await {
        Ok(reply) => match reply.outcome {
            Outcome::Accepted { .. } => Ok(true),
            Outcome::Rejected { rejection } => {
                tracing::debug!(%rejection, "demo command refused");
                Ok(false)
            }
        },
        Err(WriterError::KeyReused) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

pub async fn seed_demo(
    engine: &Engine,
    authority: &str,
    person_secret: &[u8],
) -> anyhow::Result<()> {
    let (writer, _) = engine.writer_or_start(authority).await?;
    let now = Utc::now();
    let today = now.date_naive();
    let shape = demo_shape(today);
    let meta = || RequestMeta {
        actor: Some("admin:demo-seed".into()),
        channel: Some("api".into()),
        ..RequestMeta::default()
    };
    let mut commands = demo::setup_commands(authority, &shape, now);
    let mut rng = SeededRng::new(2015);
    let key = |n: u64| PersonKey::derive(person_secret, &demo::demo_document(n));
    for n in 1..=DEMO_KINDERGARTEN_APPLICATIONS {
        let mut command = demo::kindergarten_application(&mut rng, n, &shape, today);
        if let Command::SubmitKindergartenApplication { form } = &mut command {
            form.child = key(n);
        }
        commands.push(command);
    }
    for n in DEMO_KINDERGARTEN_APPLICATIONS + 1
        ..=DEMO_KINDERGARTEN_APPLICATIONS + DEMO_SCHOOL_APPLICATIONS
    {
        let mut form = demo::school_form(&mut rng, n, &shape, true);
        form.child = key(n);
        commands.push(Command::SubmitSchoolApplication { form });
    }
    let mut rejected = 0;
    let mut n = 0;
    for command in commands {
        n += 1;
        if !step(&writer, n, command, meta()).await? {
            rejected += 1;
        }
    }
    // An officer confirms the privileges claimed on every third application.
    let claims: Vec<(ApplicationNumber, ochered_core::ordering::Privilege)> = writer.read(|s| {
        s.applications()
            .iter()
            .filter(|a| a.number.0 % 3 == 0)
            .flat_map(|a| {
                a.privileges
                    .iter()
                    .map(move |c| (a.number, c.privilege.clone()))
            })
            .collect()
    });
    for (application, privilege) in claims {
        n += 1;
        let command = Command::ConfirmPrivilege {
            application,
            privilege,
        };
        step(&writer, n, command, meta()).await?;
    }
    // Seats for the applications' intake year, so that the officer's demand report
    // (docs/RULES.md#kindergarten-demand) compares them: the demo's districts
    // (`demo::DEMO_DISTRICTS`) come out short of seats in the centre, where the popular
    // kindergartens are, and with seats to spare elsewhere. Last, so that the steps before
    // keep their keys.
    for command in demo::kindergarten_seat_commands(&shape, demo::kindergarten_intake_year(today)) {
        n += 1;
        step(&writer, n, command, meta()).await?;
    }
    if rejected > 0 {
        tracing::info!(
            rejected,
            "some demo steps were skipped: refused by the rules or already done"
        );
    }
    Ok(())
}
