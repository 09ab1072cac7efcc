# One service account per caller, additive *_iam_member grants, least
# privilege: the service may only read, list and delete snapshots.

# The service's runtime identity.
resource "google_service_account" "service" {
  project      = var.project_id
  account_id   = "${var.service_name}-run"
  display_name = "snapsweep service"
  description  = "Runtime identity of the ${var.service_name} Cloud Run service."

  depends_on = [google_project_service.apis]
}

# Pub/Sub push subscriptions sign their OIDC tokens as this account.
resource "google_service_account" "push" {
  project      = var.project_id
  account_id   = "${var.service_name}-push"
  display_name = "snapsweep Pub/Sub push"
  description  = "Identity of Pub/Sub push requests to ${var.service_name}."

  depends_on = [google_project_service.apis]
}

# Cloud Scheduler signs the sweep's OIDC token as this account.
resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "${var.service_name}-scheduler"
  display_name = "snapsweep scheduler"
  description  = "Identity of the Cloud Scheduler sweep requests to ${var.service_name}."

  depends_on = [google_project_service.apis]
}

locals {
  cleaner_permissions = [
    "compute.snapshots.get",
    "compute.snapshots.list",
    "compute.snapshots.delete",
    "compute.globalOperations.get",
  ]
}

# A project-level custom role can only be granted in its own project, so
# each managed project gets its own copy.
resource "google_project_iam_custom_role" "cleaner" {
  for_each = toset(local.managed_projects)

  project     = each.value
  role_id     = "snapsweepSnapshotCleaner"
  title       = "snapsweep snapshot cleaner"
  description = "Read, list and delete Compute snapshots, and follow the delete operations. Nothing else."
  permissions = local.cleaner_permissions
}

resource "google_project_iam_member" "cleaner" {
  for_each = toset(local.managed_projects)

  project = each.value
  role    = google_project_iam_custom_role.cleaner[each.value].name
  member  = "serviceAccount:${google_service_account.service.email}"
}

resource "google_project_iam_member" "service_datastore" {
  project = var.project_id
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.service.email}"
}

resource "google_project_iam_member" "service_telemetry" {
  for_each = toset(var.service_telemetry_roles)

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.service.email}"
}

# The service publishes cleanup messages, to the cleanup topic only.
resource "google_pubsub_topic_iam_member" "service_publishes_cleanup" {
  project = var.project_id
  topic   = google_pubsub_topic.stream["cleanup"].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.service.email}"
}

# The migration jobs publish their events.
resource "google_pubsub_topic_iam_member" "event_publishers" {
  for_each = toset(var.event_publishers)

  project = var.project_id
  topic   = google_pubsub_topic.stream["events"].name
  role    = "roles/pubsub.publisher"
  member  = each.value
}

# Only the push and scheduler accounts may call the service: no allUsers.
resource "google_cloud_run_v2_service_iam_member" "push_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.snapsweep.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.push.email}"
}

resource "google_cloud_run_v2_service_iam_member" "scheduler_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.snapsweep.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

# The Pub/Sub service agent mints the push account's OIDC tokens.
resource "google_service_account_iam_member" "pubsub_agent_mints_push_tokens" {
  service_account_id = google_service_account.push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${local.pubsub_service_agent}"

  depends_on = [google_project_service_identity.pubsub]
}
