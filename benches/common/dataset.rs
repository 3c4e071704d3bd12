//! The benchmarks' dataset: an issue of about 350 bytes at version 1, and version 2 with a step;
//! and the fixed-seed generator of version 1 issues both benches load.

use revolve::{Schema, StepError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues", version = 1)]
pub(crate) struct IssueV1 {
    pub(crate) title: String,
    pub(crate) description: Option<String>,
    pub(crate) status: String,
    pub(crate) tags: Vec<String>,
    pub(crate) created_at: u64,
    pub(crate) updated_at: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    Open,
    InProgress,
    Closed,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Schema)]
#[schema(collection = "issues", version = 2, from = IssueV1, step = issue_v1_to_v2)]
pub(crate) struct IssueV2 {
    pub(crate) title: String,
    pub(crate) description: Option<String>,
    pub(crate) status: Status,
    pub(crate) priority: u8,
    pub(crate) tags: Vec<String>,
    pub(crate) created_at: u64,
    pub(crate) updated_at: u64,
}

pub(crate) fn issue_v1_to_v2(old: IssueV1) -> Result<IssueV2, StepError> {
    let status = match old.status.as_str() {
        "open" => Status::Open,
        "in_progress" => Status::InProgress,
        "closed" => Status::Closed,
        other => return Err(StepError::new(format!("status `{other}` is not known"))),
    };
    let priority = if old.tags.iter().any(|tag| tag == "urgent") {
        0
    } else if old.tags.iter().any(|tag| tag == "bug") {
        1
    } else {
        2
    };
    Ok(IssueV2 {
        title: old.title,
        description: old.description,
        status,
        priority,
        tags: old.tags,
        created_at: old.created_at,
        updated_at: old.updated_at,
    })
}

/// xorshift64: a fixed-seed source of document content and of the ids to read.
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next() % bound as u64).expect("below a usize bound")
    }

    pub(crate) fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const WORDS: &[&str] = &[
    "store",
    "crash",
    "index",
    "upgrade",
    "schema",
    "panic",
    "timeout",
    "cache",
    "flush",
    "reader",
    "writer",
    "batch",
    "version",
    "history",
    "revert",
    "migration",
    "lock",
    "tree",
    "page",
    "disk",
];
const STATUSES: &[&str] = &["open", "in_progress", "closed"];
const TAGS: &[&str] = &[
    "bug", "feature", "urgent", "docs", "storage", "api", "cli", "http", "perf", "ux",
];

fn sentence(rng: &mut XorShift, words: usize) -> String {
    let mut out = String::new();
    for i in 0..words {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(rng.pick(WORDS));
    }
    out
}

/// One version 1 issue of about 350 bytes once encoded.
pub(crate) fn issue(rng: &mut XorShift) -> IssueV1 {
    let created_at = 1_700_000_000 + rng.next() % 10_000_000;
    IssueV1 {
        title: sentence(rng, 7),
        description: Some(sentence(rng, 30)),
        status: rng.pick(STATUSES).to_owned(),
        tags: (0..3).map(|_| rng.pick(TAGS).to_owned()).collect(),
        created_at,
        updated_at: created_at + rng.next() % 1_000_000,
    }
}
