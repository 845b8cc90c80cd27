//! Backups: a PostgreSQL `pg_dump` CronJob and a Velero `Schedule`
//! (`velero.io/v1`, typed from the upstream CRD).

use deploy_core::model::Namespace as ModelNamespace;
use std::collections::BTreeMap;

use deploy_core::model::Namespace;
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, SecretKeySelector,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::manifest::custom::custom_kind;

/// Where and how a PostgreSQL database is dumped.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PgDumpOptions {
    /// The CronJob's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// A cron schedule, such as `0 2 * * *` (02:00 every day).
    pub schedule: String,
    /// The image with `pg_dump`, such as `postgres:16`.
    pub image: String,
    /// The database host (a Service name).
    pub host: String,
    /// The database.
    pub database: String,
    /// The Secret and key holding the password (`PGPASSWORD`); the user is in `user`.
    pub password_secret: (String, String),
    /// The database user.
    pub user: String,
    /// The PersistentVolumeClaim the dumps are written to.
    pub claim: String,
    /// Dumps older than this many days are deleted after each run.
    pub keep_days: u32,
}

impl PgDumpOptions {
    /// Dumps `database` on `host` in `namespace` every day at 02:00 UTC as user
    /// `postgres` with the password in Secret `{database}-db` key `password`, into
    /// claim `{database}-backups`, with `postgres:16`, keeping 7 days. Change any of
    /// it with the setters.
    pub fn new(namespace: Namespace, host: impl Into<String>, database: impl Into<String>) -> Self {
        let database = database.into();
        Self {
            name: format!("{database}-backup"),
            namespace: namespace.into_string(),
            schedule: "0 2 * * *".to_owned(),
            image: "postgres:16".to_owned(),
            host: host.into(),
            password_secret: (format!("{database}-db"), "password".to_owned()),
            user: "postgres".to_owned(),
            claim: format!("{database}-backups"),
            keep_days: 7,
            database,
        }
    }

    /// Sets the cron schedule.
    #[must_use]
    pub fn schedule(mut self, cron: impl Into<String>) -> Self {
        self.schedule = cron.into();
        self
    }

    /// Sets the image with `pg_dump`.
    #[must_use]
    pub fn image(mut self, image: impl Into<String>) -> Self {
        self.image = image.into();
        self
    }

    /// Sets the user and the Secret key holding its password.
    #[must_use]
    pub fn credentials(mut self, user: impl Into<String>, secret: impl Into<String>, key: impl Into<String>) -> Self {
        self.user = user.into();
        self.password_secret = (secret.into(), key.into());
        self
    }

    /// Sets the claim the dumps go to.
    #[must_use]
    pub fn claim(mut self, claim: impl Into<String>) -> Self {
        self.claim = claim.into();
        self
    }

    /// Keeps dumps this many days.
    #[must_use]
    pub fn keep_days(mut self, days: u32) -> Self {
        self.keep_days = days;
        self
    }
}

/// A CronJob that runs `pg_dump` in custom format into the claim, one file per
/// run named by its start time, then deletes dumps older than `keep_days`. It
/// never runs twice at once (`concurrencyPolicy: Forbid`) and keeps the last 3
/// successful and 3 failed runs for inspection.
pub fn pg_dump_cron_job(options: &PgDumpOptions) -> CronJob {
    let script = format!(
        "set -eu; f=/backups/{db}-$(date -u +%Y%m%dT%H%M%SZ).dump; \
         pg_dump --format=custom --no-owner --file=\"$f\" \"$PGDATABASE\"; \
         find /backups -name '{db}-*.dump' -mtime +{keep} -delete",
        db = options.database,
        keep = options.keep_days
    );
    let env =
        |name: &str, value: &str| EnvVar { name: name.to_owned(), value: Some(value.to_owned()), value_from: None };
    let labels = BTreeMap::from([("app.kubernetes.io/name".to_owned(), options.name.clone())]);
    CronJob {
        metadata: ObjectMeta {
            name: Some(options.name.clone()),
            namespace: Some(options.namespace.clone()),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        spec: CronJobSpec {
            schedule: options.schedule.clone(),
            concurrency_policy: Some("Forbid".to_owned()),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: None,
                spec: Some(JobSpec {
                    backoff_limit: Some(2),
                    template: PodTemplateSpec {
                        metadata: Some(ObjectMeta { labels: Some(labels), ..ObjectMeta::default() }),
                        spec: Some(PodSpec {
                            restart_policy: Some("OnFailure".to_owned()),
                            containers: vec![Container {
                                name: "pg-dump".to_owned(),
                                image: Some(options.image.clone()),
                                command: Some(vec!["/bin/sh".to_owned(), "-c".to_owned(), script]),
                                env: Some(vec![
                                    env("PGHOST", &options.host),
                                    env("PGDATABASE", &options.database),
                                    env("PGUSER", &options.user),
                                    EnvVar {
                                        name: "PGPASSWORD".to_owned(),
                                        value: None,
                                        value_from: Some(EnvVarSource {
                                            secret_key_ref: Some(SecretKeySelector {
                                                name: options.password_secret.0.clone(),
                                                key: options.password_secret.1.clone(),
                                                optional: None,
                                            }),
                                            ..EnvVarSource::default()
                                        }),
                                    },
                                ]),
                                volume_mounts: Some(vec![VolumeMount {
                                    name: "backups".to_owned(),
                                    mount_path: "/backups".to_owned(),
                                    ..VolumeMount::default()
                                }]),
                                ..Container::default()
                            }],
                            volumes: Some(vec![Volume {
                                name: "backups".to_owned(),
                                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                                    claim_name: options.claim.clone(),
                                    read_only: None,
                                }),
                                ..Volume::default()
                            }]),
                            ..PodSpec::default()
                        }),
                    },
                    ..JobSpec::default()
                }),
            },
            ..CronJobSpec::default()
        },
        status: None,
    }
}

custom_kind!(
    /// `velero.io/v1` Schedule: a recurring Velero backup.
    Schedule, ScheduleSpec, "velero.io", "v1", "schedules"
);

/// Velero Schedule `spec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ScheduleSpec {
    /// A cron schedule.
    pub schedule: String,
    /// What each backup takes.
    pub template: BackupTemplate,
}

/// What a Velero backup takes and keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct BackupTemplate {
    /// The namespaces backed up.
    pub included_namespaces: Vec<String>,
    /// Take volume snapshots too.
    pub snapshot_volumes: bool,
    /// How long a backup is kept, such as `720h0m0s`.
    pub ttl: String,
    /// The backup storage location; `None` uses Velero's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_location: Option<String>,
}

/// A Velero Schedule `name` in Velero's namespace `velero_namespace` that backs up
/// `namespaces` (with volume snapshots) on `cron`, keeping each backup `ttl_hours`.
pub fn velero_schedule(
    velero_namespace: &ModelNamespace,
    name: &str,
    cron: &str,
    namespaces: Vec<String>,
    ttl_hours: u32,
) -> Schedule {
    Schedule::new(
        velero_namespace,
        name,
        ScheduleSpec {
            schedule: cron.to_owned(),
            template: BackupTemplate {
                included_namespaces: namespaces,
                snapshot_volumes: true,
                ttl: format!("{ttl_hours}h0m0s"),
                storage_location: None,
            },
        },
    )
}
