# The service. Reachable from the internet (Pub/Sub and Cloud Scheduler call
# it there) but invokable only by the push and scheduler accounts (iam.tf);
# the service checks the same tokens itself (SNAPSWEEP_AUTH_*).
resource "google_cloud_run_v2_service" "snapsweep" {
  project             = var.project_id
  name                = var.service_name
  location            = var.region
  labels              = local.labels
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = var.deletion_protection
  custom_audiences    = var.auth_audience == null ? [] : [var.auth_audience]

  template {
    labels                           = local.labels
    service_account                  = google_service_account.service.email
    timeout                          = "${var.request_timeout_seconds}s"
    max_instance_request_concurrency = var.max_concurrency

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    containers {
      image = var.image

      # Cloud Run sets PORT to this.
      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        # Request-based billing: the service does no work between requests.
        cpu_idle          = true
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = local.service_env
        content {
          name  = env.key
          value = env.value
        }
      }

      # /health answers while the process serves, without calling
      # dependencies: a Firestore hiccup must not restart instances.
      startup_probe {
        http_get {
          path = "/health"
        }
        period_seconds    = 2
        timeout_seconds   = 1
        failure_threshold = 30
      }

      liveness_probe {
        http_get {
          path = "/health"
        }
        period_seconds    = 30
        timeout_seconds   = 5
        failure_threshold = 3
      }
    }
  }

  traffic {
    type    = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
    percent = 100
  }

  depends_on = [
    google_project_service.apis,
    google_project_iam_member.service_datastore,
    google_project_iam_member.cleaner,
    google_pubsub_topic_iam_member.service_publishes_cleanup,
  ]
}
