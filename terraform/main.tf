# snapsweep on Cloud Run: one service that registers Compute snapshots in
# Firestore and deletes them, fed by Pub/Sub push (migration events, cleanup
# messages) and a Cloud Scheduler sweep. See docs/deploy.md.

data "google_project" "host" {
  project_id = var.project_id
}

locals {
  managed_projects = distinct(length(var.managed_projects) > 0 ? var.managed_projects : [var.project_id])

  labels = merge({ app = var.service_name, "managed-by" = "terraform" }, var.labels)

  # Cloud Run's deterministic URL, known before the service exists: push
  # endpoints, the scheduler target and the token audience all use it, and
  # the service itself gets it as its expected audience without a cycle.
  service_url   = "https://${var.service_name}-${data.google_project.host.number}.${var.region}.run.app"
  auth_audience = coalesce(var.auth_audience, local.service_url)

  pubsub_service_agent = "service-${data.google_project.host.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  scheduler_region   = coalesce(var.scheduler_region, var.region)
  firestore_location = coalesce(var.firestore_location, var.region)

  # The two push streams: topic, and the path of the service it pushes to.
  streams = {
    events = {
      topic = var.events_topic_name
      path  = "/pubsub/migration-events"
    }
    cleanup = {
      topic = var.cleanup_topic_name
      path  = "/pubsub/snapshot-cleanup"
    }
  }

  # The configuration of the service (the contract's table). PORT comes from
  # Cloud Run; the emulator variables and SNAPSWEEP_COMPUTE_ENDPOINT are for
  # tests and local runs only.
  service_env = {
    GOOGLE_CLOUD_PROJECT                = var.project_id
    SNAPSWEEP_FIRESTORE_DATABASE        = var.firestore_database
    SNAPSWEEP_CLEANUP_TOPIC             = var.cleanup_topic_name
    SNAPSWEEP_EVENTS_TOPIC              = var.events_topic_name
    SNAPSWEEP_PROJECTS                  = join(",", local.managed_projects)
    SNAPSWEEP_SESSION_LABEL             = var.session_label
    SNAPSWEEP_SNAPSHOT_TTL              = var.snapshot_ttl
    SNAPSWEEP_FAILED_RETENTION          = var.failed_retention
    SNAPSWEEP_MAX_LIVE_SNAPSHOTS        = tostring(var.max_live_snapshots)
    SNAPSWEEP_MAX_DELETES_PER_SWEEP     = tostring(var.max_deletes_per_sweep)
    SNAPSWEEP_SESSION_FAILURE_TOLERANCE = tostring(var.session_failure_tolerance)
    SNAPSWEEP_DELETE_RATE               = tostring(var.delete_rate)
    SNAPSWEEP_DELETE_RATE_BY_PROJECT    = join(",", [for p, r in var.delete_rate_by_project : "${p}=${r}"])
    SNAPSWEEP_DELETE_CONCURRENCY        = tostring(var.delete_concurrency)
    SNAPSWEEP_DRY_RUN                   = tostring(var.dry_run)
    SNAPSWEEP_ADOPT_ORPHANS             = tostring(var.adopt_orphans)
    SNAPSWEEP_LOG_LEVEL                 = var.log_level
    SNAPSWEEP_TELEMETRY                 = var.telemetry
    SNAPSWEEP_DELETE_LEASE              = var.delete_lease
    SNAPSWEEP_SWEEP_STUCK_AFTER         = var.sweep_stuck_after
    SNAPSWEEP_MAX_CLOCK_SKEW            = var.max_clock_skew
    SNAPSWEEP_ORPHAN_GRACE              = var.orphan_grace
    SNAPSWEEP_MAX_REDRIVES              = tostring(var.max_redrives)
    SNAPSWEEP_PRICE_FILE                = var.price_file
    SNAPSWEEP_AUTH_AUDIENCE             = local.auth_audience
    SNAPSWEEP_AUTH_SERVICE_ACCOUNTS     = join(",", [google_service_account.push.email, google_service_account.scheduler.email])
  }

  apis = toset([
    "run.googleapis.com",
    "pubsub.googleapis.com",
    "firestore.googleapis.com",
    "cloudscheduler.googleapis.com",
    "compute.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "monitoring.googleapis.com",
    "logging.googleapis.com",
    "cloudtrace.googleapis.com",
    "iam.googleapis.com",
    # The build bucket; on in most projects already.
    "storage.googleapis.com",
  ])
}

resource "google_project_service" "apis" {
  for_each = var.enable_apis ? local.apis : toset([])

  project = var.project_id
  service = each.value
  # Other things in the project may use them too.
  disable_on_destroy = false
}

# The Pub/Sub service agent is created lazily; it must exist before it can be
# granted anything.
resource "google_project_service_identity" "pubsub" {
  provider = google-beta

  project = var.project_id
  service = "pubsub.googleapis.com"

  depends_on = [google_project_service.apis]
}
