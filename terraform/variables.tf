# Inputs of the snapsweep module. The SNAPSWEEP_* settings of the service
# (docs: the configuration table of the contract) each have a variable here;
# run.tf passes them to the container.

variable "project_id" {
  type        = string
  description = "Host project: runs the Cloud Run service, Firestore, Pub/Sub, Cloud Scheduler and Artifact Registry."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a GCP project id: 6-30 characters, lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "region" {
  type        = string
  description = "Region of the Cloud Run service, the Artifact Registry repository and (unless set otherwise) Firestore and Cloud Scheduler, e.g. us-central1."
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a GCP region such as us-central1 or europe-west4."
  }
}

variable "service_name" {
  type        = string
  description = "Name of the Cloud Run service; also the prefix of the service accounts, the scheduler job and the build bucket."
  default     = "snapsweep"

  validation {
    # Service account ids are NAME-scheduler etc. and may have at most 30 characters.
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.service_name))
    error_message = "service_name must be 3-20 characters: lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "image" {
  type        = string
  description = "Container image the service runs, e.g. us-central1-docker.pkg.dev/PROJECT/snapsweep/snapsweep:TAG (deploy/deploy.sh builds it and passes it here)."

  validation {
    condition     = can(regex("^[a-z0-9.-]+(:[0-9]+)?/[^\\s]+$", var.image))
    error_message = "image must be a full image reference: REGISTRY/PATH[:TAG|@DIGEST]."
  }
}

variable "managed_projects" {
  type        = list(string)
  description = "Projects whose snapshots snapsweep may delete (SNAPSWEEP_PROJECTS). The service account gets the snapshot-only custom role in each. Empty means the host project only."
  default     = []

  validation {
    condition     = alltrue([for p in var.managed_projects : can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", p))])
    error_message = "Every entry of managed_projects must be a GCP project id."
  }
}

variable "labels" {
  type        = map(string)
  description = "Labels added to every resource that takes labels."
  default     = {}

  validation {
    condition     = alltrue([for k, v in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", k)) && can(regex("^[a-z0-9_-]{0,63}$", v))])
    error_message = "Label keys must match ^[a-z][a-z0-9_-]{0,62}$ and values ^[a-z0-9_-]{0,63}$."
  }
}

variable "enable_apis" {
  type        = bool
  description = "Enable the APIs the service needs in the host project. Turn off where project services are managed elsewhere."
  default     = true
}

variable "firestore_database" {
  type        = string
  description = "Firestore database id (SNAPSWEEP_FIRESTORE_DATABASE)."
  default     = "(default)"

  validation {
    condition     = var.firestore_database == "(default)" || can(regex("^[a-z][a-z0-9-]{2,61}[a-z0-9]$", var.firestore_database))
    error_message = "firestore_database must be (default) or 4-63 characters: lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "create_firestore_database" {
  type        = bool
  description = "Create the Firestore database (native mode). Set false when it exists already; indexes and TTL policies are declared either way."
  default     = true
}

variable "firestore_location" {
  type        = string
  description = "Location of a Firestore database this module creates (a region or a multi-region such as nam5). Null means var.region."
  default     = null

  validation {
    condition     = var.firestore_location == null || can(regex("^[a-z0-9-]+$", var.firestore_location))
    error_message = "firestore_location must be a Firestore location id such as us-central1 or nam5."
  }
}

variable "firestore_delete_protection" {
  type        = bool
  description = "Turn on delete protection for a Firestore database this module creates."
  default     = true
}

variable "events_topic_name" {
  type        = string
  description = "Topic migration jobs publish their events to (SNAPSWEEP_EVENTS_TOPIC)."
  default     = "migration-events"

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9._~+%-]{2,200}$", var.events_topic_name)) && !startswith(var.events_topic_name, "goog")
    error_message = "events_topic_name must be a Pub/Sub topic id: 3-201 characters, starting with a letter, not with goog."
  }
}

variable "cleanup_topic_name" {
  type        = string
  description = "Topic snapsweep publishes cleanup messages to (SNAPSWEEP_CLEANUP_TOPIC)."
  default     = "snapshot-cleanup"

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9._~+%-]{2,200}$", var.cleanup_topic_name)) && !startswith(var.cleanup_topic_name, "goog")
    error_message = "cleanup_topic_name must be a Pub/Sub topic id: 3-201 characters, starting with a letter, not with goog."
  }
}

variable "event_publishers" {
  type        = list(string)
  description = "IAM members allowed to publish to the events topic: the migration jobs' identities, e.g. serviceAccount:migrator@PROJECT.iam.gserviceaccount.com."
  default     = []

  validation {
    condition     = alltrue([for m in var.event_publishers : can(regex("^(serviceAccount|user|group|domain|principal|principalSet):.+$", m))])
    error_message = "Every entry of event_publishers must be an IAM member such as serviceAccount:EMAIL."
  }
}

variable "session_label" {
  type        = string
  description = "Label a snapshot must carry, with its session id as value, to be deleted (SNAPSWEEP_SESSION_LABEL)."
  default     = "migration-session"

  validation {
    condition     = can(regex("^[a-z][a-z0-9_-]{0,62}$", var.session_label))
    error_message = "session_label must be a GCE label key: ^[a-z][a-z0-9_-]{0,62}$."
  }
}

variable "snapshot_ttl" {
  type        = string
  description = "Go duration after which an unfinished task's snapshot counts as expired (SNAPSWEEP_SNAPSHOT_TTL)."
  default     = "72h"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$", var.snapshot_ttl))
    error_message = "snapshot_ttl must be a Go duration such as 72h or 90m."
  }
}

variable "failed_retention" {
  type        = string
  description = "Go duration a failed task's snapshots are kept for (SNAPSWEEP_FAILED_RETENTION)."
  default     = "168h"

  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$", var.failed_retention))
    error_message = "failed_retention must be a Go duration such as 168h."
  }
}

variable "max_live_snapshots" {
  type        = number
  description = "Above this many live snapshots the sweep starts emergency cleanup (SNAPSWEEP_MAX_LIVE_SNAPSHOTS)."
  default     = 1000

  validation {
    condition     = var.max_live_snapshots > 0 && floor(var.max_live_snapshots) == var.max_live_snapshots
    error_message = "max_live_snapshots must be a whole number > 0."
  }
}

variable "max_deletes_per_sweep" {
  type        = number
  description = "Most snapshots one sweep deletes (SNAPSWEEP_MAX_DELETES_PER_SWEEP)."
  default     = 500

  validation {
    condition     = var.max_deletes_per_sweep > 0 && floor(var.max_deletes_per_sweep) == var.max_deletes_per_sweep
    error_message = "max_deletes_per_sweep must be a whole number > 0."
  }
}

variable "session_failure_tolerance" {
  type        = number
  description = "Share of a session's deletions that may fail before the session counts as failed (SNAPSWEEP_SESSION_FAILURE_TOLERANCE)."
  default     = 0.05

  validation {
    condition     = var.session_failure_tolerance >= 0 && var.session_failure_tolerance <= 1
    error_message = "session_failure_tolerance must be in [0, 1]."
  }
}

variable "delete_rate" {
  type        = number
  description = "Compute delete calls per second per project per instance (SNAPSWEEP_DELETE_RATE). Compute counts delete quota per project and minute: keep delete_rate x max_instances x 60 below each project's quota."
  default     = 10

  validation {
    condition     = var.delete_rate > 0
    error_message = "delete_rate must be > 0."
  }
}

variable "delete_rate_by_project" {
  type        = map(number)
  description = "Per-project overrides of delete_rate, delete calls per second per instance by project id (SNAPSWEEP_DELETE_RATE_BY_PROJECT); every key must be one of managed_projects (the service refuses to start otherwise)."
  default     = {}

  validation {
    condition     = alltrue([for p, r in var.delete_rate_by_project : can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", p)) && r > 0])
    error_message = "Every key of delete_rate_by_project must be a GCP project id and every rate > 0."
  }
}

variable "delete_concurrency" {
  type        = number
  description = "Concurrent Compute calls per instance (SNAPSWEEP_DELETE_CONCURRENCY); each managed project has an equal share of them (at least one)."
  default     = 16

  validation {
    condition     = var.delete_concurrency > 0 && floor(var.delete_concurrency) == var.delete_concurrency
    error_message = "delete_concurrency must be a whole number > 0."
  }
}

variable "dry_run" {
  type        = bool
  description = "Do everything but the delete call (SNAPSWEEP_DRY_RUN). Useful for a first deployment."
  default     = false
}

variable "adopt_orphans" {
  type        = bool
  description = "Register labelled snapshots the sweep finds that the registry does not know (SNAPSWEEP_ADOPT_ORPHANS); false only reports them."
  default     = true
}

variable "log_level" {
  type        = string
  description = "Lowest severity logged (SNAPSWEEP_LOG_LEVEL)."
  default     = "info"

  validation {
    condition     = contains(["debug", "info", "warn", "error"], var.log_level)
    error_message = "log_level must be one of debug, info, warn, error."
  }
}

variable "auth_audience" {
  type        = string
  description = "Audience of the OIDC tokens Pub/Sub and Cloud Scheduler send (SNAPSWEEP_AUTH_AUDIENCE). Null means the service URL https://SERVICE-PROJECT_NUMBER.REGION.run.app; any other value is also set as a custom audience of the Cloud Run service."
  default     = null

  validation {
    condition     = try(length(var.auth_audience) > 0, true) # null: the service URL
    error_message = "auth_audience must not be empty; use null for the service URL."
  }
}

variable "min_instances" {
  type        = number
  description = "Minimum Cloud Run instances (0 scales to zero between pushes)."
  default     = 0

  validation {
    condition     = var.min_instances >= 0 && floor(var.min_instances) == var.min_instances
    error_message = "min_instances must be a whole number >= 0."
  }
}

variable "max_instances" {
  type        = number
  description = "Maximum Cloud Run instances. With delete_rate it bounds the Compute delete calls per second of the whole service in each project."
  default     = 10

  validation {
    condition     = var.max_instances >= 1 && floor(var.max_instances) == var.max_instances
    error_message = "max_instances must be a whole number >= 1."
  }
}

variable "max_concurrency" {
  type        = number
  description = "Maximum concurrent requests per Cloud Run instance."
  default     = 80

  validation {
    condition     = var.max_concurrency >= 1 && var.max_concurrency <= 1000 && floor(var.max_concurrency) == var.max_concurrency
    error_message = "max_concurrency must be a whole number in [1, 1000]."
  }
}

variable "request_timeout_seconds" {
  type        = number
  description = "Cloud Run request timeout in seconds; a sweep must finish within it."
  default     = 600

  validation {
    condition     = var.request_timeout_seconds >= 1 && var.request_timeout_seconds <= 3600 && floor(var.request_timeout_seconds) == var.request_timeout_seconds
    error_message = "request_timeout_seconds must be a whole number in [1, 3600]."
  }
}

variable "cpu" {
  type        = string
  description = "CPU limit of the container (Cloud Run syntax: 1, 2, 1000m)."
  default     = "1"

  validation {
    condition     = can(regex("^([0-9]+|[0-9]+m)$", var.cpu))
    error_message = "cpu must be a whole number of CPUs or millicores such as 1000m."
  }
}

variable "memory" {
  type        = string
  description = "Memory limit of the container (Kubernetes quantity: 512Mi, 1Gi)."
  default     = "512Mi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.memory))
    error_message = "memory must be a quantity such as 512Mi or 1Gi."
  }
}

variable "deletion_protection" {
  type        = bool
  description = "Refuse to destroy the Cloud Run service through Terraform."
  default     = true
}

variable "service_telemetry_roles" {
  type        = list(string)
  description = "Project roles the service account gets for logs, metrics and traces."
  default     = ["roles/logging.logWriter", "roles/monitoring.metricWriter", "roles/cloudtrace.agent"]

  validation {
    condition     = alltrue([for r in var.service_telemetry_roles : startswith(r, "roles/")])
    error_message = "service_telemetry_roles must be predefined roles (roles/...)."
  }
}

variable "ack_deadline_seconds" {
  type        = number
  description = "Ack deadline of the push subscriptions: Pub/Sub's HTTP timeout for one push."
  default     = 120

  validation {
    condition     = var.ack_deadline_seconds >= 10 && var.ack_deadline_seconds <= 600
    error_message = "ack_deadline_seconds must be in [10, 600]."
  }
}

variable "retry_minimum_backoff_seconds" {
  type        = number
  description = "Shortest wait before Pub/Sub redelivers a nacked push."
  default     = 10

  validation {
    condition     = var.retry_minimum_backoff_seconds >= 0 && var.retry_minimum_backoff_seconds <= 600
    error_message = "retry_minimum_backoff_seconds must be in [0, 600]."
  }
}

variable "retry_maximum_backoff_seconds" {
  type        = number
  description = "Longest wait before Pub/Sub redelivers a nacked push."
  default     = 600

  validation {
    condition     = var.retry_maximum_backoff_seconds > 0 && var.retry_maximum_backoff_seconds <= 600
    error_message = "retry_maximum_backoff_seconds must be in (0, 600]."
  }
}

variable "max_delivery_attempts" {
  type        = number
  description = "Deliveries of one message before it goes to the dead-letter topic."
  default     = 10

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100 && floor(var.max_delivery_attempts) == var.max_delivery_attempts
    error_message = "max_delivery_attempts must be a whole number in [5, 100]."
  }
}

variable "dead_letter_retention_seconds" {
  type        = number
  description = "How long dead-lettered messages are kept on the dead-letter topics and their pull subscriptions (default 7 days, at most 31)."
  default     = 604800

  validation {
    condition     = var.dead_letter_retention_seconds >= 600 && var.dead_letter_retention_seconds <= 2678400
    error_message = "dead_letter_retention_seconds must be in [600, 2678400] (10 minutes to 31 days)."
  }
}

variable "sweep_interval_minutes" {
  type        = number
  description = "Minutes between two scheduled sweeps (a divisor of 60, so that runs are evenly spaced)."
  default     = 15

  validation {
    condition     = contains([1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60], var.sweep_interval_minutes)
    error_message = "sweep_interval_minutes must divide 60: 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30 or 60."
  }
}

variable "scheduler_region" {
  type        = string
  description = "Region of the Cloud Scheduler job. Null means var.region."
  default     = null

  validation {
    condition     = var.scheduler_region == null || can(regex("^[a-z]+-[a-z]+[0-9]+$", var.scheduler_region))
    error_message = "scheduler_region must be a GCP region such as us-central1."
  }
}

variable "scheduler_attempt_deadline_seconds" {
  type        = number
  description = "How long Cloud Scheduler waits for one sweep request."
  default     = 600

  validation {
    condition     = var.scheduler_attempt_deadline_seconds >= 15 && var.scheduler_attempt_deadline_seconds <= 1800
    error_message = "scheduler_attempt_deadline_seconds must be in [15, 1800]."
  }
}

variable "scheduler_retry_count" {
  type        = number
  description = "Retries of a failed sweep request (the next scheduled run comes anyway)."
  default     = 1

  validation {
    condition     = var.scheduler_retry_count >= 0 && var.scheduler_retry_count <= 5 && floor(var.scheduler_retry_count) == var.scheduler_retry_count
    error_message = "scheduler_retry_count must be a whole number in [0, 5]."
  }
}

variable "artifact_registry_repository_id" {
  type        = string
  description = "Id of the Docker repository in Artifact Registry that holds the service's images."
  default     = "snapsweep"

  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$", var.artifact_registry_repository_id))
    error_message = "artifact_registry_repository_id must be lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "image_keep_count" {
  type        = number
  description = "Most recent image versions the Artifact Registry cleanup policy always keeps; older ones are deleted after 30 days."
  default     = 10

  validation {
    condition     = var.image_keep_count >= 1 && floor(var.image_keep_count) == var.image_keep_count
    error_message = "image_keep_count must be a whole number >= 1."
  }
}

variable "telemetry" {
  type        = string
  description = "SNAPSWEEP_TELEMETRY: telemetry exporter (auto picks Google Cloud on Cloud Run, OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set)."
  default     = "auto"
  validation {
    condition     = contains(["auto", "gcp", "otlp", "stdout", "none"], var.telemetry)
    error_message = "telemetry must be one of auto, gcp, otlp, stdout, none."
  }
}

variable "delete_lease" {
  type        = string
  description = "SNAPSWEEP_DELETE_LEASE: how long a cleanup claim holds a snapshot before another delivery may take over (Go duration, at least 1m)."
  default     = "2m"
  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$", var.delete_lease))
    error_message = "delete_lease must be a Go duration such as 2m."
  }
}

variable "sweep_stuck_after" {
  type        = string
  description = "SNAPSWEEP_SWEEP_STUCK_AFTER: age after which the sweep re-drives cleanup_pending and deleting records (Go duration, at least the delete lease)."
  default     = "10m"
  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$", var.sweep_stuck_after))
    error_message = "sweep_stuck_after must be a Go duration such as 10m."
  }
}

variable "max_clock_skew" {
  type        = string
  description = "SNAPSWEEP_MAX_CLOCK_SKEW: events stamped further than this in the future are rejected as future_time (Go duration)."
  default     = "10m"
  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$", var.max_clock_skew))
    error_message = "max_clock_skew must be a Go duration such as 10m."
  }
}

variable "orphan_grace" {
  type        = string
  description = "SNAPSWEEP_ORPHAN_GRACE: how old a labelled, unreported snapshot of a known session must be before the sweep adopts it (Go duration)."
  default     = "1h"
  validation {
    condition     = can(regex("^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$", var.orphan_grace))
    error_message = "orphan_grace must be a Go duration such as 1h."
  }
}

variable "max_redrives" {
  type        = number
  description = "SNAPSWEEP_MAX_REDRIVES: how often the sweep re-drives a stuck cleanup before the record is failed for an operator."
  default     = 5
  validation {
    condition     = var.max_redrives >= 1
    error_message = "max_redrives must be at least 1."
  }
}

variable "notification_channels" {
  type        = list(string)
  description = "Cloud Monitoring notification channel ids (projects/P/notificationChannels/N) that the alert policies notify."
  default     = []
}

variable "runbook_base_url" {
  type        = string
  description = "Base URL of this repository as browsed by operators; alert documentation links to <base>/docs/operations.md#<alert>."
  default     = "https://github.com/snapsweep/snapsweep/blob/main"
  validation {
    condition     = can(regex("^https://", var.runbook_base_url))
    error_message = "runbook_base_url must be an https URL."
  }
}

variable "price_file" {
  type        = string
  description = "SNAPSWEEP_PRICE_FILE: path, inside the container, of a YAML or JSON snapshot price table (per GiB-month by snapshot type and location) replacing the built-in list prices; empty keeps them (docs/operations.md)."
  default     = ""
  validation {
    condition     = var.price_file == "" || startswith(var.price_file, "/")
    error_message = "price_file must be an absolute path inside the container, or empty."
  }
}
