//! The one test seam: what the integration tests and benchmarks use of the launcher's
//! and the companion's internals, named here so that the modules themselves stay
//! private to the crate and can be moved without breaking anything outside it. Not an
//! API: nothing here is promised to anyone but this crate's own tests and benches.

pub use crate::companion::encrypted_columns::declared;
pub use crate::companion::lint::rules::RULES;
pub use crate::companion::lint::{Judged, MigrationSource, lint};
pub use crate::companion::migrations::{Catalog, lock_key};
pub use crate::companion::reencrypt::{DEFAULT_BATCH_SIZE, LOCK_KEY};
pub use crate::companion::schema::expected::{ExpectedSchema, REGENERATE};
pub use crate::companion::schema::objects::read as read_schema_objects;

#[cfg(feature = "launcher")]
pub use crate::launcher::{
    aws_api::clients::{Clients, shared_config},
    aws_api::policies::{GRANTS, Policy},
    checks::Status,
    checks::aws::{SecretRef, secret},
    commands::launch_of,
    commands::shell::{ShellArgs, session},
    config::{DEFAULT_CONTAINER, DEFAULT_FAMILY, LaunchConfig},
    config_file::ConfigFile,
    context::Context,
    ecs_exec::{ExecTiming, find_plugin},
    flags::{GlobalOptions, OutputFormat},
    identity::Operator,
    job::follow::{Ending, FollowSettings, Followed, LogSource, Target, follow},
    job::launch::{Job, RunTaskPlan, rejected},
    job::outcome::TaskOutcome,
    job::report::TaskReport,
    job::shards::FLAGS,
    job::watch::{Poll, PollTiming, TaskWatcher},
    key_secrets::{Slots, generate, slot_status, write_rotation},
    log_follower::{LogFollower, LogTiming, Page, TaskPhase},
    output::Renderer,
    output::github::outputs,
    service::ServiceSettings,
    task_definition::fetch::{Purpose, TaskDefinitionInfo},
};
