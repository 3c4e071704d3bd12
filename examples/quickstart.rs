//! Quickstart: writes issues as version 1, then reads them as version 2, upgraded on read, and shows
//! that every write appended a revision.
//!
//! ```sh
//! cargo run --release --example quickstart            # in a fresh temporary directory
//! cargo run --release --example quickstart -- ./data  # or in a directory of your choice
//! ```

use std::error::Error;
use std::process::ExitCode;

use revolve::{Schema, StepError, Store};
use serde::{Deserialize, Serialize};

/// The first version of an issue, as the application stored it last year.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "issues", version = 1)]
struct IssueV1 {
    title: String,
    description: Option<String>,
    status: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, schemars::JsonSchema)]
enum Priority {
    Low,
    High,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, schemars::JsonSchema)]
enum Status {
    Open,
    Closed,
}

/// The second version: a priority, and a status that is an enum rather than free text.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema, Schema)]
#[schema(collection = "issues", version = 2, from = IssueV1, step = issue_v1_to_v2)]
struct IssueV2 {
    title: String,
    priority: Priority,
    description: Option<String>,
    status: Status,
}

type Issue = IssueV2;

fn issue_v1_to_v2(old: IssueV1) -> Result<IssueV2, StepError> {
    let status = match old.status.as_str() {
        "open" => Status::Open,
        "closed" | "done" => Status::Closed,
        other => return Err(StepError::new(format!("unknown status `{other}`"))),
    };
    let priority = if old.title.to_lowercase().contains("crash") {
        Priority::High
    } else {
        Priority::Low
    };
    Ok(IssueV2 {
        title: old.title,
        priority,
        description: old.description,
        status,
    })
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let scratch = tempfile::tempdir()?;
    let path = std::env::args_os().nth(1).map_or_else(
        || scratch.path().join("quickstart.revolve"),
        std::path::PathBuf::from,
    );
    println!("store: {}", path.display());

    // Last year's program knew only version 1.
    let first_id = {
        let store = Store::open(&path)?;
        let issues = store.collection::<IssueV1>()?;
        let first = issues.insert(&IssueV1 {
            title: "Crash when saving".into(),
            description: Some("Happens on every second save".into()),
            status: "open".into(),
        })?;
        issues.insert(&IssueV1 {
            title: "Typo on the login page".into(),
            description: None,
            status: "done".into(),
        })?;
        issues.update(
            &first,
            &IssueV1 {
                title: "Crash when saving a draft".into(),
                description: Some("Happens on every second save".into()),
                status: "open".into(),
            },
        )?;
        println!("v1 program wrote {} issues", issues.len().unwrap());
        first
    }; // the store closes here, as the old program exits

    // Today's program knows version 2 and reads the old data without a migration.
    let store = Store::open(&path)?;
    let issues = store.collection::<Issue>()?;
    println!(
        "documents per stored version: {:?}",
        issues.count_by_version()?
    );
    for doc in &issues {
        let doc = doc?;
        println!(
            "{} (rev {}, stored at v{}): {:?}",
            doc.id, doc.revision, doc.stored_version, doc.data
        );
    }

    let doc = issues.get(&first_id)?.ok_or("the first issue is gone")?;
    issues.update(
        &first_id,
        &Issue {
            status: Status::Closed,
            ..doc.data
        },
    )?;
    println!("history of {first_id}:");
    for revision in issues.history(&first_id)? {
        println!(
            "  revision {} (parent {:?}) at v{} by {:?}",
            revision.revision,
            revision.parent.map(revolve::Revision::get),
            revision.version.unwrap_or(0),
            revision.origin
        );
    }
    let first = issues
        .raw_revision(&first_id, revolve::Revision::FIRST)?
        .ok_or("revision 1 is gone")?;
    println!(
        "revision 1 is still stored as written: v{} {}",
        first.info.version.unwrap_or(0),
        first.payload.unwrap_or_default()
    );
    println!(
        "documents per stored version: {:?}",
        issues.count_by_version()?
    );
    drop(scratch);
    Ok(())
}
