# Where images live and how they get there: a Docker repository, and a build
# identity for Cloud Build (deploy/cloudbuild.yaml) that may push images,
# read its source and roll the service to a new image, nothing more.

resource "google_artifact_registry_repository" "images" {
  project       = var.project_id
  location      = var.region
  repository_id = var.artifact_registry_repository_id
  format        = "DOCKER"
  description   = "Images of the ${var.service_name} service."
  labels        = local.labels

  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = var.image_keep_count
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s" # 30 days
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "builder" {
  project      = var.project_id
  account_id   = "${var.service_name}-builder"
  display_name = "snapsweep builder"
  description  = "Cloud Build identity that builds, pushes and deploys ${var.service_name} images."

  depends_on = [google_project_service.apis]
}

# Source archives that `gcloud builds submit` uploads; kept a week.
resource "google_storage_bucket" "build_source" {
  project                     = var.project_id
  name                        = "${var.project_id}-${var.service_name}-build"
  location                    = var.region
  labels                      = local.labels
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  lifecycle_rule {
    condition {
      age = 7
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_iam_member" "builder_reads_source" {
  bucket = google_storage_bucket.build_source.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.builder.email}"
}

resource "google_artifact_registry_repository_iam_member" "builder_pushes_images" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.builder.email}"
}

resource "google_project_iam_member" "builder_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.builder.email}"
}

# `gcloud run services update --image` from deploy/cloudbuild.yaml: update
# this one service, running as the service's own account.
resource "google_cloud_run_v2_service_iam_member" "builder_deploys" {
  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.snapsweep.name
  role     = "roles/run.developer"
  member   = "serviceAccount:${google_service_account.builder.email}"
}

resource "google_service_account_iam_member" "builder_acts_as_service" {
  service_account_id = google_service_account.service.name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.builder.email}"
}
